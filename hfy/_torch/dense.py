"""Dense associative memories: separable regularisers Ω* = Σ F(θ_i) (torch fast path).

Twins of :mod:`hfy.reference.dense` (eq-dense-omega).  ŷ_Ω = F'(θ) elementwise.
"""

from __future__ import annotations

import math

import torch

from .fenchel_young import Regularizer


class SeparableDAM(Regularizer):
    """Base class: Ω*(θ) = Σ_i F(θ_i) on R^N."""

    margin = math.inf
    simplex = False

    def F(self, t):  # pragma: no cover - abstract
        raise NotImplementedError

    def F_prime(self, t):  # pragma: no cover - abstract
        raise NotImplementedError

    def F_star(self, y):  # pragma: no cover - abstract
        raise NotImplementedError

    def predict(self, theta: torch.Tensor, dim: int = -1) -> torch.Tensor:
        return self.F_prime(theta)

    def conjugate(self, theta: torch.Tensor, dim: int = -1) -> torch.Tensor:
        return self.F(theta).sum(dim)

    def omega(self, y: torch.Tensor, dim: int = -1) -> torch.Tensor:
        return self.F_star(y).sum(dim)

    def reference_point(self, n: int, like: torch.Tensor) -> torch.Tensor:
        return torch.zeros(n, dtype=like.dtype, device=like.device)

    def max_entropy(self, n: int) -> float:
        raise ValueError(f"{type(self).__name__} has no entropy: its domain is not the simplex")


class PolynomialDAM(SeparableDAM):
    """F(t) = t^n/n with n even, or [t]_+^n/n with ``rectified=True`` (Krotov and Hopfield's polynomial memory).

    ``convex=False`` admits odd n without rectification (F non-convex, outside
    the HFY guarantees): the "n-Poly DAM" of the paper scripts, whose weights
    (Xq)^(n−1) are those of ``PolynomialDAM(n, convex=False)``.
    """

    def __init__(self, n: int = 2, rectified: bool = False, convex: bool = True):
        if isinstance(n, bool) or not isinstance(n, int) or n < 2:
            raise ValueError(f"`n` must be an int >= 2; got {n!r}")
        self.convex = bool(convex)
        if convex and not rectified and n % 2:
            raise ValueError(f"`n` must be even for a convex F(t) = t^n/n (got {n}); use rectified=True for odd n")
        self.n, self.rectified = n, bool(rectified)

    def _base(self, t):
        return t.clamp_min(0.0) if self.rectified else t

    def F(self, t):
        return self._base(t) ** self.n / self.n

    def F_prime(self, t):
        return self._base(t) ** (self.n - 1)

    def F_star(self, y):
        n = self.n
        val = (n - 1) / n * y.abs() ** (n / (n - 1))
        if self.rectified:
            val = torch.where(y >= 0, val, torch.full_like(val, math.inf))
        return val


class ExponentialDAM(SeparableDAM):
    """F = exp (Demircigil et al.'s exponential memory): ŷ_Ω = exp(θ).

    ``shift=True`` makes :meth:`predict` return exp(θ − max θ), a positive
    rescaling of each row that cannot overflow; it leaves the sign, ℓ2 and
    layer-norm post-transformations unchanged (they are invariant to positive
    scaling) but not tanh or the identity, which :func:`hfy.update` refuses.
    """

    def __init__(self, shift: bool = False):
        self.shift = bool(shift)
        self.rescaled = self.shift

    def F(self, t):
        return torch.exp(t)

    def F_prime(self, t):
        if self.shift:
            return torch.exp(t - t.detach().amax(-1, keepdim=True))
        return torch.exp(t)

    def F_star(self, y):
        pos = y > 0
        val = torch.where(pos, y * torch.log(torch.where(pos, y, torch.ones_like(y))) - y, torch.zeros_like(y))
        return torch.where(y >= 0, val, torch.full_like(val, math.inf))
