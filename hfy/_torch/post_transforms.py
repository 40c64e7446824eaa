"""Post-transformations Ψ (torch fast path).

The twins of :mod:`hfy.reference.post_transforms`: Ψ, Ψ*, ŷ_Ψ = ∇Ψ* and the
loss L_Ψ(z; q) = Ψ*(z) + Ψ(q) − ⟨z, q⟩, along the last axis
(eq-post_transforms-map).  Indicator Ψ return +inf outside their set; pre-transform
memories and initial states with :meth:`PostTransform.predict` so that the
energy stays finite along a trajectory.
"""

from __future__ import annotations

import math

import torch

#: Relative slack for membership in the set of an indicator Ψ.
SET_TOL = 1e-6


def _inf_unless(ok: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    zero = torch.zeros((), dtype=like.dtype, device=like.device)
    return torch.where(ok, zero, torch.full((), math.inf, dtype=like.dtype, device=like.device))


def _set_tol(dtype: torch.dtype) -> float:
    return max(SET_TOL, 64 * torch.finfo(dtype).eps)


class PostTransform:
    """Base class of the state-side regularisers Ψ (torch)."""

    idempotent: bool = True

    #: True when ŷ_Ψ(c z) = ŷ_Ψ(z) for every c > 0 (sign, ℓ2 and layer normalisation).
    scale_invariant: bool = False

    def psi(self, q: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Ψ(q) along the last axis (+inf outside the domain)."""
        raise NotImplementedError

    def conjugate(self, z: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Ψ*(z) along the last axis."""
        raise NotImplementedError

    def predict(self, z: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """ŷ_Ψ(z) = ∇Ψ*(z)."""
        raise NotImplementedError

    def loss(self, z: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """L_Ψ(z; q) = Ψ*(z) + Ψ(q) − ⟨z, q⟩."""
        return self.conjugate(z) + self.psi(q) - (z * q).sum(-1)

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({params})"


class Identity(PostTransform):
    """Ψ = ½‖q‖², ŷ_Ψ = identity."""

    def psi(self, q):
        return 0.5 * (q * q).sum(-1)

    def conjugate(self, z):
        return 0.5 * (z * z).sum(-1)

    def predict(self, z):
        return z


class L2Normalize(PostTransform):
    """Ψ = indicator of the ball of radius ``radius``; ŷ_Ψ(z) = radius · z/‖z‖ (0 when ‖z‖ <= eps)."""

    scale_invariant = True

    def __init__(self, radius: float = 1.0, eps: float = 1e-12):
        if not radius > 0:
            raise ValueError(f"`radius` must be > 0; got {radius}")
        self.radius, self.eps = float(radius), float(eps)

    def psi(self, q):
        ok = torch.linalg.vector_norm(q, dim=-1) <= self.radius * (1 + _set_tol(q.dtype))
        return _inf_unless(ok, q)

    def conjugate(self, z):
        return self.radius * torch.linalg.vector_norm(z, dim=-1)

    def predict(self, z):
        # ŷ is invariant to positive scaling: divide by max |z| first so that huge scores cannot overflow the norm
        top = z.detach().abs().amax(-1, keepdim=True)
        z = z / torch.where((top > 1.0) & torch.isfinite(top), top, torch.ones_like(top))
        norm = torch.linalg.vector_norm(z, dim=-1, keepdim=True)
        big = norm > self.eps
        return torch.where(big, self.radius * z / torch.where(big, norm, torch.ones_like(norm)), torch.zeros_like(z))


class LayerNorm(PostTransform):
    """Layer normalisation without affine parameters: ŷ_Ψ(z) = (z − z̄)/std(z) (biased std).

    It is the argmax of ⟨z, q⟩ over {1ᵀq = 0, ‖q‖ <= √D}.  ``eps`` > 0 adds the
    usual stabiliser inside the square root (then the map is no longer that
    argmax, nor idempotent); ``unbiased=True`` uses the unbiased std (radius
    √(D − 1)), for parity with code that does.  At z − z̄ = 0 the map returns 0.
    """

    scale_invariant = True

    def __init__(self, eps: float = 0.0, unbiased: bool = False):
        if eps < 0:
            raise ValueError(f"`eps` must be >= 0; got {eps}")
        self.eps, self.unbiased = float(eps), bool(unbiased)

    @property
    def idempotent(self) -> bool:  # type: ignore[override]
        return self.eps == 0.0

    def radius(self, d: int) -> float:
        return math.sqrt(d - 1 if self.unbiased else d)

    def psi(self, q):
        d = q.shape[-1]
        tol = _set_tol(q.dtype)
        scale = q.detach().abs().amax(-1).clamp_min(1.0)
        centred = q.sum(-1).abs() <= tol * scale * d
        inside = torch.linalg.vector_norm(q, dim=-1) <= self.radius(d) * (1 + tol)
        return _inf_unless(centred & inside, q)

    def conjugate(self, z):
        pz = z - z.mean(-1, keepdim=True)
        return self.radius(z.shape[-1]) * torch.linalg.vector_norm(pz, dim=-1)

    def predict(self, z):
        d = z.shape[-1]
        if self.eps == 0.0:  # scale invariant: divide by max |z| first so that the variance cannot overflow
            top = z.detach().abs().amax(-1, keepdim=True)
            z = z / torch.where((top > 1.0) & torch.isfinite(top), top, torch.ones_like(top))
        pz = z - z.mean(-1, keepdim=True)
        var = (pz * pz).sum(-1, keepdim=True) / (d - 1 if self.unbiased else d)
        # z constant up to rounding (the computed mean leaves Pz of order ulp·|z|): return 0, not ±1
        floor = (64 * torch.finfo(z.dtype).eps * z.detach().abs().amax(-1, keepdim=True)) ** 2
        ok = (var > floor) | (self.eps > 0)
        denom = torch.sqrt(torch.where(ok, var, torch.ones_like(var)) + self.eps)  # no sqrt(0) in the graph
        return torch.where(ok, pz / denom, torch.zeros_like(z))


class Sign(PostTransform):
    """Ψ = indicator of [−1, 1]^D; ŷ_Ψ = sign with sign(0) = 0 (classical Hopfield)."""

    scale_invariant = True

    def psi(self, q):
        return _inf_unless((q.abs() <= 1 + _set_tol(q.dtype)).all(-1), q)

    def conjugate(self, z):
        return z.abs().sum(-1)

    def predict(self, z):
        return torch.sign(z)


class Tanh(PostTransform):
    """Ψ = β⁻¹ Σ φ(q_d) on [−1, 1]^D (φ: negative binary entropy); ŷ_Ψ = tanh(β z). Not idempotent."""

    idempotent = False

    def __init__(self, beta: float = 1.0):
        if not beta > 0:
            raise ValueError(f"`beta` must be > 0; got {beta}")
        self.beta = float(beta)

    def psi(self, q):
        from .fenchel_young import xlogx

        inside = (q.abs() <= 1 + _set_tol(q.dtype)).all(-1)
        qc = q.clamp(-1.0, 1.0)
        value = (xlogx((1 + qc) / 2) + xlogx((1 - qc) / 2)).sum(-1) / self.beta
        return value + _inf_unless(inside, q)

    def conjugate(self, z):
        bz = (self.beta * z).abs()
        return (bz + torch.log1p(torch.exp(-2 * bz))).sum(-1) / self.beta

    def predict(self, z):
        return torch.tanh(self.beta * z)
