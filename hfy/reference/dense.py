"""Dense associative memories as HFY networks (numpy reference).

A separable regulariser given through its conjugate, Ω*(θ) = Σ_i F(θ_i) with F
convex, has ŷ_Ω(θ) = F'(θ) (elementwise) and Ω(y) = Σ_i F*(y_i) (eq-dense-omega).

* ``PolynomialDAM(n)``: F(t) = t^n / n with n even (or ``rectified``: [t]_+^n / n),
  ŷ = t^(n−1); F*(y) = (n−1)/n |y|^(n/(n−1)).  (Krotov & Hopfield's
  polynomial energy.)
* ``ExponentialDAM()``: F = exp, ŷ = exp, F*(y) = y log y − y on y >= 0.
  (Demircigil et al.'s exponential energy.)

With Ψ = the indicator of the cube (``Sign``) the HFY energy on the cube is
−β⁻¹ Σ_i F(β x_iᵀq) and the update is q ← sign(Xᵀ F'(βXq)).
"""

from __future__ import annotations

import numpy as np

from ._core import as_scores


class SeparableDAM:
    """Base class: Ω* = Σ F(θ_i) on R^N."""

    margin = float("inf")

    def F(self, t):  # pragma: no cover - abstract
        raise NotImplementedError

    def F_prime(self, t):  # pragma: no cover - abstract
        raise NotImplementedError

    def F_star(self, y):  # pragma: no cover - abstract
        raise NotImplementedError

    def predict(self, theta, dim: int = -1) -> np.ndarray:
        return self.F_prime(as_scores(theta, "theta"))

    def conjugate(self, theta, dim: int = -1) -> np.ndarray:
        return np.sum(self.F(as_scores(theta, "theta")), axis=dim)

    def omega(self, y, dim: int = -1) -> np.ndarray:
        return np.sum(self.F_star(np.asarray(y, dtype=np.float64)), axis=dim)

    def loss(self, theta, y, dim: int = -1) -> np.ndarray:
        theta, y = as_scores(theta, "theta"), np.asarray(y, dtype=np.float64)
        return self.conjugate(theta, dim) + self.omega(y, dim) - np.sum(theta * y, axis=dim)

    def reference_point(self, n: int) -> np.ndarray:
        return np.zeros(n)

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({params})"


class PolynomialDAM(SeparableDAM):
    """F(t) = t^n / n (n even), or [t]_+^n / n with ``rectified=True`` (any n >= 2).

    ``convex=False`` admits odd n without rectification (F non-convex, outside
    the HFY guarantees): the "n-Poly DAM" of the paper scripts, whose weights
    (Xq)^(n−1) are those of ``PolynomialDAM(n, convex=False)``.
    """

    def __init__(self, n: int = 2, rectified: bool = False, convex: bool = True):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
            raise ValueError(f"`n` must be an int >= 2; got {n!r}")
        self.convex = bool(convex)
        if convex and not rectified and n % 2:
            raise ValueError(f"`n` must be even for a convex F(t) = t^n/n (got {n}); use rectified=True for odd n")
        self.n, self.rectified = int(n), bool(rectified)

    def _base(self, t):
        return np.maximum(t, 0.0) if self.rectified else t

    def F(self, t):
        return self._base(t) ** self.n / self.n

    def F_prime(self, t):
        return self._base(t) ** (self.n - 1)

    def F_star(self, y):
        n = self.n
        val = (n - 1) / n * np.abs(y) ** (n / (n - 1))
        if self.rectified:
            val = np.where(y >= 0, val, np.inf)
        return val


class ExponentialDAM(SeparableDAM):
    """F = exp: Ω(y) = Σ y log y − y on y >= 0, ŷ = exp(θ)."""

    def F(self, t):
        return np.exp(t)

    def F_prime(self, t):
        return np.exp(t)

    def F_star(self, y):
        y = np.asarray(y, dtype=np.float64)
        out = np.where(y > 0, y * np.log(np.where(y > 0, y, 1.0)) - y, 0.0)
        return np.where(y >= 0, out, np.inf)


def dam_energy(q, X, F) -> np.ndarray:
    """The textbook dense-memory energy −Σ_i F(x_iᵀq) along the last axis of ``q``."""
    return -np.sum(F(np.asarray(q, dtype=np.float64) @ np.asarray(X, dtype=np.float64).T), axis=-1)
