"""Constrained sparsemax: the projection onto {p ∈ simplex, p <= u} (numpy reference).

p = clip(z − τ, 0, u) with Σ p = 1 (eq-constrained_sparsemax-map); feasible
iff Σ u >= 1 over the unmasked entries.  With u = 1 it is sparsemax.
"""

from __future__ import annotations

import numpy as np

from ._core import as_scores, capped_threshold, common_offset


def constrained_sparsemax_1d(z: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """One row; −inf scores are masked (output 0), as are entries with u_i = 0."""
    finite = np.isfinite(z)
    if np.any(upper < 0) or np.any(~np.isfinite(upper)):
        raise ValueError("`upper` must be finite and >= 0")
    if upper[finite].sum() < 1.0:
        raise ValueError(f"infeasible: the unmasked upper bounds sum to {upper[finite].sum():.6g} < 1 (`upper`)")
    out = np.zeros_like(z)
    zz, uu = z[finite], upper[finite]
    zz = zz - common_offset(zz)  # (the result is shift-invariant)
    tau = capped_threshold(zz, uu, 1.0)
    out[finite] = np.clip(zz - tau, 0.0, uu)
    return out


def constrained_sparsemax(z, upper, dim: int = -1) -> np.ndarray:
    """Constrained sparsemax along ``dim`` (eq-constrained_sparsemax-map).

    Parameters
    ----------
    z : array_like, shape (..., N, ...)
        Scores; −inf masks an entry.
    upper : array_like, broadcastable to ``z``
        Upper bounds u >= 0 with Σ u >= 1 along ``dim`` (else ``ValueError``).

    See Also
    --------
    hfy.constrained_sparsemax, hfy.oracle.constrained_sparsemax
    """
    z = as_scores(z)
    upper = np.broadcast_to(np.asarray(upper, dtype=np.float64), z.shape)
    zm, um = np.moveaxis(z, dim, -1), np.moveaxis(upper, dim, -1)
    flat_z, flat_u = zm.reshape(-1, zm.shape[-1]), um.reshape(-1, um.shape[-1])
    out = np.stack([constrained_sparsemax_1d(a, b) for a, b in zip(flat_z, flat_u)])
    return np.moveaxis(out.reshape(zm.shape), -1, dim)


def constrained_sparsemax_vjp(z, upper, g):
    """(∂L/∂z, ∂L/∂u) for one row given ∂L/∂p = g (eq-constrained_sparsemax-vjp).

    With R1 = {0 < p_i < u_i} (free), R2 = {p_i = u_i > 0} (capped) and
    ḡ = mean of g over R1: ∂L/∂z = 1_{R1} ⊙ (g − ḡ), ∂L/∂u = 1_{R2} ⊙ (g − ḡ).
    When R1 is empty the threshold is not unique and both are 0 by convention.
    """
    z, upper, g = (np.asarray(a, dtype=np.float64) for a in (z, upper, g))
    p = constrained_sparsemax_1d(z, upper)
    free = (p > 0) & (p < upper)
    capped = (p >= upper) & (upper > 0) & np.isfinite(z)
    if not free.any():
        return np.zeros_like(z), np.zeros_like(z)
    gbar = g[free].mean()
    return np.where(free, g - gbar, 0.0), np.where(capped, g - gbar, 0.0)


class ConstrainedSparsemax:
    """Ω(p) = ½‖p‖² on {p in the simplex, p <= upper}; ŷ_Ω = :func:`constrained_sparsemax`."""

    margin = 1.0
    simplex = False

    def __init__(self, upper):
        self.upper = np.asarray(upper, dtype=np.float64)

    def predict(self, theta, dim: int = -1) -> np.ndarray:
        return constrained_sparsemax(theta, self.upper, dim)

    def omega(self, p, dim: int = -1) -> np.ndarray:
        p = np.asarray(p, dtype=np.float64)
        return 0.5 * np.sum(p * p, axis=dim)

    def conjugate(self, theta, dim: int = -1) -> np.ndarray:
        theta = as_scores(theta, "theta")
        p = self.predict(theta, dim)
        used = p != 0
        return np.sum(np.where(used, theta * np.where(used, p, 0.0), 0.0), axis=dim) - self.omega(p, dim)

    def reference_point(self, n: int) -> np.ndarray:
        return constrained_sparsemax(np.zeros(n), np.broadcast_to(self.upper, (n,)))

    def __repr__(self) -> str:
        return f"ConstrainedSparsemax(upper={self.upper!r})"
