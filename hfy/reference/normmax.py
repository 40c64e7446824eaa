"""γ-normmax: the prediction map of the norm entropy H(p) = 1 − ‖p‖_γ (numpy reference).

On the support, the KKT conditions read (p_i / ‖p‖_γ)^(γ−1) = θ_i − τ, so

    p ∝ [θ − τ]_+^(1/(γ−1)),      Σ_i [θ_i − τ]_+^(γ/(γ−1)) = 1,     Ω*(θ) = 1 + τ   (eq-normmax-map)

For max θ = 0 the threshold lies in [−1, −N^(1/γ − 1)].
"""

from __future__ import annotations

import numpy as np

from .._validate import check_gamma
from ._core import apply_along, as_scores, bisect_decreasing, shift_by_max
from .fenchel_young import Regularizer
from .sparsemax import _sparsemax_1d


def normmax(z, alpha: float = 2.0, dim: int = -1) -> np.ndarray:
    """γ-normmax along ``dim`` for any norm order γ = ``alpha`` > 1 (eq-normmax-map).

    γ = 2 uses the exact sort-based algorithm, γ = inf is uniform on the
    sparsemax support, and any other γ bisects the threshold to the last bit.
    The argument is called ``alpha`` for compatibility with
    ``entmax.normmax_bisect``; it is the order of the norm.

    Parameters
    ----------
    z : array_like, shape (..., N, ...)
        Scores; ``-inf`` masks an entry.  An all-masked row maps to zeros.
    alpha : float
        The norm order γ > 1 (``float('inf')`` allowed).
    dim : int
        The axis of the N scores.

    See Also
    --------
    hfy.normmax : the torch fast path.
    hfy.oracle.normmax : the convex program.
    """
    gamma = check_gamma(alpha)
    return apply_along(lambda row: _normmax_1d(row, gamma), as_scores(z), dim)


def normmax_threshold(theta: np.ndarray, gamma: float) -> float:
    """τ of γ-normmax for a finite, max-shifted ``theta`` (max 0)."""
    if np.isinf(gamma):
        return float("nan")  # γ = inf has no power equation; see _normmax_1d
    if gamma == 2.0:
        return _normmax2_threshold(theta)
    r = gamma / (gamma - 1.0)
    n = theta.size
    lo, hi = -1.0, -(n ** (1.0 / gamma - 1.0))
    return bisect_decreasing(lambda t: np.sum(np.maximum(theta - t, 0.0) ** r) - 1.0, lo, hi)


def _normmax2_threshold(theta: np.ndarray) -> float:
    """γ = 2 by sorting (eq-normmax-2-sort).

    On a support of the top k scores, Σ (θ_(j) − τ)² = 1 is a quadratic whose
    smaller root is τ_k = (S1 − sqrt(S1² − k (S2 − 1))) / k; accept the first
    k with θ_(k) > τ_k >= θ_(k+1).
    """
    z = np.sort(theta)[::-1]
    n = z.size
    s1 = np.cumsum(z)
    s2 = np.cumsum(z**2)
    for k in range(1, n + 1):
        disc = s1[k - 1] ** 2 - k * (s2[k - 1] - 1.0)
        if disc < 0:
            continue
        tau = (s1[k - 1] - np.sqrt(disc)) / k
        nxt = z[k] if k < n else -np.inf
        if z[k - 1] > tau >= nxt:
            return float(tau)
    raise RuntimeError("no support size satisfied the 2-normmax conditions")  # pragma: no cover


def _normmax_1d(theta: np.ndarray, gamma: float) -> np.ndarray:
    if not np.isfinite(theta).any():
        return np.zeros_like(theta)
    if np.isinf(gamma):
        support = _sparsemax_1d(theta) > 0
        return support / support.sum()
    shifted = shift_by_max(theta)
    finite = np.isfinite(shifted)
    tau = normmax_threshold(shifted[finite], gamma)
    gap = np.maximum(shifted - tau, 0.0)
    # p ∝ gap^(1/(γ−1)), normalised in the log domain (γ near 1 has huge exponents)
    logw = np.full_like(shifted, -np.inf)
    pos = gap > 0
    logw[pos] = np.log(gap[pos]) / (gamma - 1.0)
    w = np.exp(logw - logw[pos].max())
    return w / w.sum()


class NormEntropy(Regularizer):
    """Norm negentropy Ω(p) = ‖p‖_γ − 1 on the simplex (eq-normmax-omega); ŷ_Ω = γ-normmax.

    The margin is 1 for every γ > 1, including γ = inf.
    """

    margin = 1.0

    def __init__(self, gamma: float = 2.0):
        self.gamma = check_gamma(gamma, name="gamma")

    def _omega_1d(self, p: np.ndarray) -> float:
        return float(np.linalg.norm(p, ord=self.gamma)) - 1.0

    def _predict_1d(self, theta: np.ndarray) -> np.ndarray:
        return _normmax_1d(theta, self.gamma)

    def _jacobian_1d(self, theta: np.ndarray) -> np.ndarray:
        """J = c [diag(b) − b pᵀ − p bᵀ + (Σ b) p pᵀ], b = p^(2−γ) on S, c = ‖p‖_γ^(γ−1)/(γ−1)."""
        g = self.gamma
        p = _normmax_1d(theta, g)
        if np.isinf(g):
            return np.zeros((p.size, p.size))  # piecewise constant
        b = np.zeros_like(p)
        pos = p > 0
        b[pos] = p[pos] ** (2.0 - g)
        c = np.linalg.norm(p, ord=g) ** (g - 1.0) / (g - 1.0)
        return c * (np.diag(b) - np.outer(b, p) - np.outer(p, b) + b.sum() * np.outer(p, p))

    def conjugate_closed_form(self, theta) -> np.ndarray:
        """Ω*(θ) = max θ + 1 + τ (eq-normmax-conjugate), along the last axis."""
        theta = as_scores(theta, "theta")

        def one(row):
            shifted = shift_by_max(row)
            finite = np.isfinite(shifted)
            top = row[finite].max()
            if np.isinf(self.gamma):
                tau = _sparsemax_tau(shifted[finite])
            else:
                tau = normmax_threshold(shifted[finite], self.gamma)
            return top + 1.0 + tau

        flat = theta.reshape(-1, theta.shape[-1])
        return np.array([one(r) for r in flat]).reshape(theta.shape[:-1])

    def max_entropy(self, n: int) -> float:
        if np.isinf(self.gamma):
            return 1.0 - 1.0 / n
        return float(1.0 - n ** (1.0 / self.gamma - 1.0))


def _sparsemax_tau(theta: np.ndarray) -> float:
    from .sparsemax import sparsemax_threshold

    return sparsemax_threshold(theta)
