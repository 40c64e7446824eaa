"""Constrained sparsemax: the projection onto {p ∈ simplex, l <= p <= u} (numpy reference).

p = clip(z − τ, l, u) with Σ p = 1 (eq-constrained_sparsemax-map); feasible
iff Σ l <= 1 <= Σ u over the unmasked entries (l = 0 unless given).  With
u = 1 and l = 0 it is sparsemax.
"""

from __future__ import annotations

import numpy as np

from ._core import as_scores, capped_threshold, common_offset


def constrained_sparsemax_1d(z: np.ndarray, upper: np.ndarray, lower=None) -> np.ndarray:
    """One row; −inf scores are masked (output 0), as are entries with u_i = 0.

    With lower bounds l the projection is l + clip((z − l) − τ, 0, u − l) with a total of 1 − Σ l."""
    low, inner, _ = _above_floors(z, upper, lower)
    return low + inner


def _above_floors(z: np.ndarray, upper: np.ndarray, lower=None):
    """(l, q, u − l) for one row with p = l + q, q = clip((z − l) − τ, 0, u − l): the mass above the floors, whose
    zeros and caps are exact (p = l + q may round away from u where q reached its cap).  Masked entries: 0."""
    finite = np.isfinite(z)
    lower = np.zeros_like(z) if lower is None else np.asarray(lower, dtype=np.float64)
    if np.any(upper < 0) or np.any(~np.isfinite(upper)):
        raise ValueError("`upper` must be finite and >= 0")
    if np.any(lower < 0) or np.any(~np.isfinite(lower)) or np.any(lower > upper):
        raise ValueError("`lower` must be finite, >= 0 and at most `upper`")
    if upper[finite].sum() < 1.0:
        raise ValueError(f"infeasible: the unmasked upper bounds sum to {upper[finite].sum():.6g} < 1 (`upper`)")
    if lower[finite].sum() > 1.0:
        raise ValueError(f"infeasible: the unmasked lower bounds sum to {lower[finite].sum():.6g} > 1 (`lower`)")
    low, inner, room = np.zeros_like(z), np.zeros_like(z), np.zeros_like(z)
    ll = lower[finite]
    zz, caps = z[finite] - ll, upper[finite] - ll
    zz = zz - common_offset(zz)  # (the result is shift-invariant)
    tau = capped_threshold(zz, caps, 1.0 - ll.sum())
    low[finite], inner[finite], room[finite] = ll, np.clip(zz - tau, 0.0, caps), caps
    return low, inner, room


def constrained_sparsemax(z, upper, dim: int = -1, lower=None) -> np.ndarray:
    """Constrained sparsemax along ``dim`` (eq-constrained_sparsemax-map); with ``lower``, the double-constrained
    version {p in the simplex, l <= p <= u}.

    Parameters
    ----------
    z : array_like, shape (..., N, ...)
        Scores; −inf masks an entry.
    upper : array_like, broadcastable to ``z``
        Upper bounds u >= 0 with Σ u >= 1 along ``dim`` (else ``ValueError``).
    lower : array_like, broadcastable to ``z``, optional
        Lower bounds 0 <= l <= u with Σ l <= 1 along ``dim`` over the unmasked entries.

    See Also
    --------
    hfy.constrained_sparsemax, hfy.oracle.constrained_sparsemax
    """
    z = as_scores(z)
    upper = np.broadcast_to(np.asarray(upper, dtype=np.float64), z.shape)
    lower = np.zeros(z.shape) if lower is None else np.broadcast_to(np.asarray(lower, dtype=np.float64), z.shape)
    zm, um, lm = (np.moveaxis(a, dim, -1) for a in (z, upper, lower))
    rows = zip(*(a.reshape(-1, zm.shape[-1]) for a in (zm, um, lm)))
    out = np.stack([constrained_sparsemax_1d(a, b, c) for a, b, c in rows])
    return np.moveaxis(out.reshape(zm.shape), -1, dim)


def constrained_sparsemax_vjp(z, upper, g, lower=None):
    """(∂L/∂z, ∂L/∂u) for one row given ∂L/∂p = g (eq-constrained_sparsemax-vjp), and ∂L/∂l when ``lower``
    is given.

    With R0 = {p_i = l_i} (floored), R1 = {l_i < p_i < u_i} (free), R2 = {p_i = u_i > l_i} (capped) and
    ḡ = mean of g over R1: ∂L/∂z = 1_{R1} ⊙ (g − ḡ), ∂L/∂u = 1_{R2} ⊙ (g − ḡ), ∂L/∂l = 1_{R0} ⊙ (g − ḡ).
    When R1 is empty the threshold is not unique and all are 0 by convention.
    """
    z, upper, g = (np.asarray(a, dtype=np.float64) for a in (z, upper, g))
    _, q, room = _above_floors(z, upper, lower)
    finite = np.isfinite(z)
    free = (q > 0) & (q < room)
    capped = (q >= room) & (room > 0) & finite
    floored = (q <= 0) & (room > 0) & finite
    if not free.any():
        zero = np.zeros_like(z)
        return (zero, zero) if lower is None else (zero, zero, zero)
    gbar = g[free].mean()
    gz, gu = np.where(free, g - gbar, 0.0), np.where(capped, g - gbar, 0.0)
    return (gz, gu) if lower is None else (gz, gu, np.where(floored, g - gbar, 0.0))


class ConstrainedSparsemax:
    """Ω(p) = ½‖p‖² on {p in the simplex, lower <= p <= upper}; ŷ_Ω = :func:`constrained_sparsemax`."""

    margin = 1.0
    simplex = False

    def __init__(self, upper, lower=None):
        self.upper = np.asarray(upper, dtype=np.float64)
        self.lower = None if lower is None else np.asarray(lower, dtype=np.float64)

    def predict(self, theta, dim: int = -1) -> np.ndarray:
        return constrained_sparsemax(theta, self.upper, dim, self.lower)

    def omega(self, p, dim: int = -1) -> np.ndarray:
        p = np.asarray(p, dtype=np.float64)
        return 0.5 * np.sum(p * p, axis=dim)

    def conjugate(self, theta, dim: int = -1) -> np.ndarray:
        theta = as_scores(theta, "theta")
        p = self.predict(theta, dim)
        used = p != 0
        return np.sum(np.where(used, theta * np.where(used, p, 0.0), 0.0), axis=dim) - self.omega(p, dim)

    def reference_point(self, n: int) -> np.ndarray:
        lower = None if self.lower is None else np.broadcast_to(self.lower, (n,))
        return constrained_sparsemax(np.zeros(n), np.broadcast_to(self.upper, (n,)), -1, lower)

    def __repr__(self) -> str:
        return f"ConstrainedSparsemax(upper={self.upper!r}, lower={self.lower!r})"
