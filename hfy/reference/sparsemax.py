"""Sparsemax: the Euclidean projection onto the simplex (numpy reference)."""

from __future__ import annotations

import numpy as np

from ._core import apply_along, as_scores, shift_by_max


def sparsemax_threshold(theta: np.ndarray) -> float:
    """τ with Σ [θ − τ]_+ = 1, by sorting (eq-sparsemax-threshold).

    Sort the finite scores in decreasing order; the support size is the
    largest k with 1 + k θ_(k) > Σ_{j<=k} θ_(j), and τ = (Σ_{j<=k} θ_(j) − 1) / k.
    """
    z = np.sort(theta[np.isfinite(theta)])[::-1]
    k = np.arange(1, z.size + 1)
    cumsum = np.cumsum(z)
    support = k[1 + k * z > cumsum][-1]
    return float((cumsum[support - 1] - 1.0) / support)


def sparsemax(z, dim: int = -1) -> np.ndarray:
    """Sparsemax along ``dim``: p = [θ − τ]_+ with τ from sorting (eq-sparsemax-map).

    Parameters
    ----------
    z : array_like, shape (..., N, ...)
        Scores; ``-inf`` masks an entry.  An all-masked row maps to zeros.
    dim : int
        The axis of the N scores.

    See Also
    --------
    hfy.sparsemax : the torch fast path.
    hfy.oracle.sparsemax : the quadratic program.
    """
    return apply_along(_sparsemax_1d, as_scores(z), dim)


def _sparsemax_1d(theta: np.ndarray) -> np.ndarray:
    shifted = shift_by_max(theta)  # the test 1 + k θ_(k) > Σ θ_(j) needs scores of moderate size
    if shifted is None:
        return np.zeros_like(theta)
    tau = sparsemax_threshold(shifted)
    return np.maximum(shifted - tau, 0.0)
