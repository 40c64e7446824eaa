"""Post-transformations Ψ: the state-side regularisers of an HFY network (numpy reference).

A post-transformation is a convex Ψ on states q ∈ R^D with conjugate Ψ* and
map ŷ_Ψ(z) = argmax_q ⟨z, q⟩ − Ψ(q) = ∇Ψ*(z) (eq-post_transforms-map).

| class | Ψ(q) | Ψ*(z) | ŷ_Ψ(z) |
|---|---|---|---|
| Identity | ½‖q‖² | ½‖z‖² | z |
| L2Normalize(r) | indicator of ‖q‖ <= r | r‖z‖ | r z/‖z‖ |
| LayerNorm | indicator of {1ᵀq = 0, ‖q‖ <= √D} | √D ‖Pz‖ | √D Pz/‖Pz‖ |
| Sign | indicator of [−1, 1]^D | ‖z‖₁ | sign(z) |
| Tanh(β) | β⁻¹ Σ φ(q_d) on [−1, 1]^D | β⁻¹ Σ log(2 cosh β z_d) | tanh(β z) |

with P = I − 11ᵀ/D and φ(t) = (1+t)/2 log((1+t)/2) + (1−t)/2 log((1−t)/2).
Every method works along the last axis.
"""

from __future__ import annotations

import math

import numpy as np

#: A point farther than this (relative) from the set of an indicator Ψ is outside dom Ψ.
SET_TOL = 1e-9


def _xlogx(v: np.ndarray) -> np.ndarray:
    out = np.zeros_like(v)
    pos = v > 0
    out[pos] = v[pos] * np.log(v[pos])
    return out


class PostTransform:
    """Base class: Ψ, Ψ*, ŷ_Ψ and the Fenchel-Young loss L_Ψ(z; q) = Ψ*(z) + Ψ(q) − ⟨z, q⟩."""

    #: ŷ_Ψ ∘ ŷ_Ψ = ŷ_Ψ (the hypothesis of exact retrieval with post-transformations).
    idempotent: bool = True

    def psi(self, q) -> np.ndarray:  # pragma: no cover - abstract
        """Ψ(q) along the last axis (+inf outside the domain)."""
        raise NotImplementedError

    def conjugate(self, z) -> np.ndarray:  # pragma: no cover - abstract
        """Ψ*(z) along the last axis."""
        raise NotImplementedError

    def predict(self, z) -> np.ndarray:  # pragma: no cover - abstract
        """ŷ_Ψ(z) = ∇Ψ*(z)."""
        raise NotImplementedError

    def loss(self, z, q) -> np.ndarray:
        z, q = np.asarray(z, dtype=np.float64), np.asarray(q, dtype=np.float64)
        return self.conjugate(z) + self.psi(q) - np.sum(z * q, axis=-1)

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({params})"


class Identity(PostTransform):
    """Ψ = ½‖q‖²: no post-transformation (the default of sparse HFY networks)."""

    def psi(self, q):
        q = np.asarray(q, dtype=np.float64)
        return 0.5 * np.sum(q * q, axis=-1)

    def conjugate(self, z):
        return self.psi(z)

    def predict(self, z):
        return np.array(z, dtype=np.float64)


class L2Normalize(PostTransform):
    """Ψ = indicator of the ball of radius ``radius``; ŷ_Ψ(z) = radius · z/‖z‖.

    At ‖z‖ <= ``eps`` every point of the ball maximises ⟨z, q⟩; we return 0.
    """

    def __init__(self, radius: float = 1.0, eps: float = 1e-12):
        if not radius > 0:
            raise ValueError(f"`radius` must be > 0; got {radius}")
        self.radius, self.eps = float(radius), float(eps)

    def psi(self, q):
        norm = np.linalg.norm(np.asarray(q, dtype=np.float64), axis=-1)
        return np.where(norm <= self.radius * (1 + SET_TOL), 0.0, np.inf)

    def conjugate(self, z):
        return self.radius * np.linalg.norm(np.asarray(z, dtype=np.float64), axis=-1)

    def predict(self, z):
        z = np.asarray(z, dtype=np.float64)
        top = np.max(np.abs(z), axis=-1, keepdims=True)  # scale invariance: avoid overflow in the norm
        z = z / np.where((top > 1.0) & np.isfinite(top), top, 1.0)
        norm = np.linalg.norm(z, axis=-1, keepdims=True)
        safe = np.where(norm > self.eps, norm, 1.0)
        return np.where(norm > self.eps, self.radius * z / safe, 0.0)


class LayerNorm(PostTransform):
    """Layer normalisation without affine parameters, as a post-transformation.

    With the biased standard deviation (default) ŷ_Ψ(z) = (z − z̄)/std(z) = √D Pz/‖Pz‖,
    the argmax of ⟨z, q⟩ over {1ᵀq = 0, ‖q‖ <= √D}.  ``eps`` > 0 gives the usual
    (z − z̄)/sqrt(var + eps), which is no longer exactly that argmax; ``unbiased=True``
    divides by D − 1 (radius √(D − 1)), a different Ψ kept for parity with code
    that uses the unbiased std.  At Pz = 0 the map returns 0.
    """

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
        q = np.asarray(q, dtype=np.float64)
        d = q.shape[-1]
        scale = max(1.0, float(np.max(np.abs(q)))) if q.size else 1.0
        centred = np.abs(q.sum(axis=-1)) <= SET_TOL * scale * d
        inside = np.linalg.norm(q, axis=-1) <= self.radius(d) * (1 + SET_TOL)
        return np.where(centred & inside, 0.0, np.inf)

    def conjugate(self, z):
        z = np.asarray(z, dtype=np.float64)
        pz = z - z.mean(axis=-1, keepdims=True)
        return self.radius(z.shape[-1]) * np.linalg.norm(pz, axis=-1)

    def predict(self, z):
        z = np.asarray(z, dtype=np.float64)
        d = z.shape[-1]
        if self.eps == 0.0:  # scale invariance: avoid overflow in the variance
            top = np.max(np.abs(z), axis=-1, keepdims=True)
            z = z / np.where((top > 1.0) & np.isfinite(top), top, 1.0)
        pz = z - z.mean(axis=-1, keepdims=True)
        var = np.sum(pz * pz, axis=-1, keepdims=True) / (d - 1 if self.unbiased else d)
        # z constant up to rounding (the computed mean leaves Pz of order ulp·|z|): return 0, not ±1
        floor = (64 * np.finfo(np.float64).eps * np.max(np.abs(z), axis=-1, keepdims=True)) ** 2
        ok = (var > floor) | (self.eps > 0)
        denom = np.sqrt(np.where(ok, var, 1.0) + self.eps)
        return np.where(ok, pz / denom, 0.0)


class Sign(PostTransform):
    """Ψ = indicator of the cube [−1, 1]^D; ŷ_Ψ = sign, with sign(0) = 0 (the classical Hopfield state map)."""

    def psi(self, q):
        q = np.asarray(q, dtype=np.float64)
        return np.where(np.all(np.abs(q) <= 1 + SET_TOL, axis=-1), 0.0, np.inf)

    def conjugate(self, z):
        return np.sum(np.abs(np.asarray(z, dtype=np.float64)), axis=-1)

    def predict(self, z):
        return np.sign(np.asarray(z, dtype=np.float64))


class Tanh(PostTransform):
    """Ψ = β⁻¹ Σ φ(q_d) on [−1, 1]^D with φ the negative binary entropy; ŷ_Ψ = tanh(β z).

    ``beta`` is the state-side temperature (β_Ψ), separate from the score-side β.
    tanh is not idempotent, so exact retrieval results do not cover it.
    """

    idempotent = False

    def __init__(self, beta: float = 1.0):
        if not beta > 0:
            raise ValueError(f"`beta` must be > 0; got {beta}")
        self.beta = float(beta)

    def psi(self, q):
        q = np.asarray(q, dtype=np.float64)
        if np.any(np.abs(q) > 1 + SET_TOL):
            out = np.full(q.shape[:-1], np.inf)
            ok = np.all(np.abs(q) <= 1 + SET_TOL, axis=-1)
            out[ok] = self.psi(q[ok]) if np.any(ok) else out[ok]
            return out
        qc = np.clip(q, -1.0, 1.0)
        a, b = (1 + qc) / 2, (1 - qc) / 2
        return np.sum(_xlogx(a) + _xlogx(b), axis=-1) / self.beta

    def conjugate(self, z):
        bz = self.beta * np.asarray(z, dtype=np.float64)
        # log(2 cosh x) = |x| + log(1 + exp(−2|x|)), stable for large |x|
        return np.sum(np.abs(bz) + np.log1p(np.exp(-2 * np.abs(bz))), axis=-1) / self.beta

    def predict(self, z):
        return np.tanh(self.beta * np.asarray(z, dtype=np.float64))
