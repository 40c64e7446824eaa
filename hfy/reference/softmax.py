"""Softmax: the prediction map of the Shannon negentropy (numpy reference)."""

from __future__ import annotations

import numpy as np

from ._core import apply_along, as_scores, shift_by_max
from .fenchel_young import Regularizer


def softmax(z, dim: int = -1) -> np.ndarray:
    """Softmax along ``dim`` (eq-softmax-map).

    Parameters
    ----------
    z : array_like, shape (..., N, ...)
        Scores; ``-inf`` masks an entry (its probability is exactly 0).
    dim : int
        The axis of the N scores.

    Returns
    -------
    p : ndarray, same shape as ``z``
        Probabilities along ``dim``.  A row whose entries are all masked maps to
        the zero vector (there is nothing to attend to).

    See Also
    --------
    hfy.softmax : the torch fast path.
    hfy.oracle.softmax : the convex-program definition.
    """
    return apply_along(_softmax_1d, as_scores(z), dim)


def _softmax_1d(theta: np.ndarray) -> np.ndarray:
    shifted = shift_by_max(theta)
    if shifted is None:
        return np.zeros_like(theta)
    w = np.exp(shifted)  # exp(-inf) = 0 for masked entries
    return w / w.sum()


class Shannon(Regularizer):
    """Shannon negentropy Ω(p) = Σ p log p on the simplex; ŷ_Ω = softmax."""

    margin = float("inf")

    def _omega_1d(self, p: np.ndarray) -> float:
        pos = p > 0
        return float(np.sum(p[pos] * np.log(p[pos])))

    def _predict_1d(self, theta: np.ndarray) -> np.ndarray:
        return _softmax_1d(theta)

    def _jacobian_1d(self, theta: np.ndarray) -> np.ndarray:
        p = _softmax_1d(theta)
        return np.diag(p) - np.outer(p, p)

    def max_entropy(self, n: int) -> float:
        return float(np.log(n))

    def conjugate_closed_form(self, theta) -> np.ndarray:
        """Ω*(θ) = log Σ exp θ (eq-softmax-conjugate), along the last axis."""
        theta = as_scores(theta, "theta")
        m = np.max(theta, axis=-1, keepdims=True)
        m = np.where(np.isfinite(m), m, 0.0)
        with np.errstate(divide="ignore"):
            return np.log(np.sum(np.exp(theta - m), axis=-1)) + m[..., 0]
