"""Shared plumbing of the numpy reference: input checks and row-wise application.

The reference favours readability over speed: every map is written for one
1-D score vector and applied along ``dim`` with :func:`apply_along`.
"""

from __future__ import annotations

from typing import Callable

import numpy as np


def as_scores(z, name: str = "z") -> np.ndarray:
    """Return ``z`` as a float64 array, rejecting non-floating, NaN and +inf input."""
    arr = np.asarray(z)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(f"`{name}` must be a floating-point array; got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if np.isnan(arr).any():
        raise ValueError(f"`{name}` contains NaN")
    if np.isposinf(arr).any():
        raise ValueError(f"`{name}` contains +inf; use -inf to mask an entry")
    return arr


def apply_along(fn: Callable[[np.ndarray], np.ndarray], z: np.ndarray, dim: int, name: str = "z") -> np.ndarray:
    """Apply a 1-D map ``fn`` to every slice of ``z`` along ``dim``."""
    if z.ndim == 0:
        raise ValueError(f"`{name}` must have at least one dimension")
    if not -z.ndim <= dim < z.ndim:
        raise ValueError(f"`dim`={dim} is out of range for `{name}` with {z.ndim} dimension(s)")
    if z.shape[dim] == 0:
        raise ValueError(f"`{name}` has an empty dimension {dim}: a map needs at least one score")
    moved = np.moveaxis(z, dim, -1)
    flat = moved.reshape(-1, moved.shape[-1])
    out = np.stack([fn(row) for row in flat]) if flat.shape[0] else np.empty_like(flat)
    return np.moveaxis(out.reshape(moved.shape), -1, dim)


def shift_by_max(theta: np.ndarray) -> np.ndarray | None:
    """``theta - max(theta)`` over finite entries (-inf stays -inf); None if all are masked."""
    finite = np.isfinite(theta)
    if not finite.any():
        return None
    return theta - theta[finite].max()


def bisect_decreasing(f: Callable[[float], float], lo: float, hi: float) -> float:
    """Largest ``t`` in ``[lo, hi]`` with ``f(t) >= 0`` for a non-increasing ``f``.

    Bisection until the bracket stops shrinking in float64 (about 60 halvings),
    so the result is the root to the last bit: slow, but easy to trust.
    """
    while True:
        mid = 0.5 * (lo + hi)
        if mid <= lo or mid >= hi:
            return lo
        if f(mid) >= 0:
            lo = mid
        else:
            hi = mid


def common_offset(theta: np.ndarray) -> float:
    """The shift a capped projection of the finite scores ``theta`` is solved with: their largest where all lie
    within |largest|/2 of it (a common offset, e.g. 1e16 + scores of order 1, whose rounding would swallow the
    scores), else 0 (an outlier such as ±1e30 among scores of order 1: shifting would round away the rest)."""
    top, low = float(theta.max()), float(theta.min())
    return top if top - low <= 0.5 * abs(top) else 0.0


def capped_threshold(theta: np.ndarray, upper: np.ndarray, total: float) -> float:
    """τ with Σ_i clip(θ_i − τ, 0, u_i) = total, by sorting the breakpoints (eq-ksubsets-breakpoints).

    ``theta`` and ``upper`` are 1-D and finite, ``0 < total <= Σ u``.
    g(τ) = Σ clip(θ_i − τ, 0, u_i) is continuous, piecewise linear and
    non-increasing, with breakpoints {θ_i − u_i} ∪ {θ_i}.  We locate the segment
    on which g crosses ``total`` (evaluating g directly at each breakpoint) and
    solve the linear equation on it exactly: with U = {θ_i − τ >= u_i} (capped)
    and A = {0 < θ_i − τ < u_i} (free), τ = (Σ_A θ_i + Σ_U u_i − total) / |A|.
    When A is empty, g is flat there and we return the midpoint of the segment,
    so that every output is exactly 0 or u_i.
    """
    if total >= upper.sum():
        return -np.inf  # every entry at its cap (k = N for k-subsets)
    points = np.unique(np.concatenate([theta - upper, theta]))
    g = np.array([np.minimum(np.maximum(theta - p, 0.0), upper).sum() for p in points])
    j = np.flatnonzero(g >= total)[-1]  # g(points[0]) = Σu >= total, so j exists
    if j > 0 and g[j - 1] == total:
        return float(0.5 * (points[j - 1] + points[j]))  # a flat crossing: its midpoint gives exact 0/1
    if j == points.size - 1:
        return float(points[j])
    mid = 0.5 * (points[j] + points[j + 1])
    capped = theta - mid >= upper
    free = (theta - mid > 0) & ~capped
    if not free.any():
        return float(mid)
    return float((theta[free].sum() + upper[capped].sum() - total) / free.sum())
