"""α-entmax: the prediction map of the Tsallis α-negentropy (numpy reference).

We write the map in the *softmax-scale* parametrisation.  With ε = α − 1 and
scores shifted so that max θ = 0,

    p_i(t) = [1 + ε (θ_i − t)]_+^(1/ε),       Σ_i p_i(t) = 1          (eq-entmax-t)

which tends to exp(θ_i − t) as ε → 0: at α = 1 the same formula *is* softmax
with t = log Σ exp θ.  The usual threshold on the (α − 1)θ scale is
τ = ε t − 1.  The root t lies in [0, (1 − N^(−ε))/ε] (the right end is log N
at ε = 0).
"""

from __future__ import annotations

import numpy as np

from .._validate import check_alpha
from ._core import apply_along, as_scores, bisect_decreasing, shift_by_max
from .fenchel_young import Regularizer
from .softmax import _softmax_1d
from .sparsemax import _sparsemax_1d


def entmax(z, alpha: float = 1.5, dim: int = -1) -> np.ndarray:
    """α-entmax along ``dim`` for any α >= 1 (eq-entmax-map).

    α = 1 is softmax, α = 2 is sparsemax (both dispatched to their own exact
    algorithm), α = 1.5 uses the exact sort-based algorithm, and every other α
    bisects the threshold to the last bit of float64.

    Parameters
    ----------
    z : array_like, shape (..., N, ...)
        Scores; ``-inf`` masks an entry.  An all-masked row maps to zeros.
    alpha : float
        The Tsallis exponent, ``alpha >= 1``.
    dim : int
        The axis of the N scores.

    See Also
    --------
    hfy.entmax : the torch fast path (α may be a per-row tensor there).
    hfy.oracle.entmax : the convex program.
    """
    alpha = check_alpha(alpha)
    return apply_along(lambda row: _entmax_1d(row, alpha), as_scores(z), dim)


def entmax15(z, dim: int = -1) -> np.ndarray:
    """1.5-entmax along ``dim`` (the exact sort-based algorithm)."""
    return entmax(z, 1.5, dim)


def _entmax_1d(theta: np.ndarray, alpha: float) -> np.ndarray:
    if alpha == 1.0:
        return _softmax_1d(theta)
    if alpha == 2.0:
        return _sparsemax_1d(theta)
    if not np.isfinite(theta).any():
        return np.zeros_like(theta)
    if alpha == 1.5:
        return _entmax15_sort_1d(theta)
    if np.isinf(alpha):
        raise ValueError("`alpha` must be finite for entmax")
    return _entmax_bisect_1d(theta, alpha)


def entmax15_threshold(z: np.ndarray) -> float:
    """τ with Σ [z − τ]_+² = 1 for finite ``z`` (z = θ/2), by sorting (eq-entmax-15-sort).

    For each candidate support size k (top-k of the sorted z), the threshold
    solves the quadratic Σ_{j<=k} (z_(j) − τ)² = 1:
    τ_k = mean_k − sqrt((1 − k var_k) / k).  The answer is the largest k whose
    τ_k lies below z_(k).
    """
    zs = np.sort(z)[::-1]
    k = np.arange(1, zs.size + 1)
    mean = np.cumsum(zs) / k
    mean_sq = np.cumsum(zs**2) / k
    delta = (1.0 - k * (mean_sq - mean**2)) / k
    tau = mean - np.sqrt(np.maximum(delta, 0.0))
    # strict, with a few ulps to spare: an entry at τ gets no mass, and rounding could give it some
    support = k[tau < zs - 4 * np.spacing(np.abs(zs))][-1]
    return float(tau[support - 1])


def _entmax15_sort_1d(theta: np.ndarray) -> np.ndarray:
    z = shift_by_max(theta) / 2.0
    tau = entmax15_threshold(z[np.isfinite(z)])
    return np.maximum(z - tau, 0.0) ** 2


def entmax_t_weights(shifted: np.ndarray, t: float, eps: float) -> np.ndarray:
    """p_i(t) = [1 + ε(θ_i − t)]_+^(1/ε) of (eq-entmax-t), computed in the log domain."""
    step = eps * (shifted - t)  # log1p keeps log(1 + step) accurate when ε is tiny (α → 1)
    out = np.zeros_like(shifted)
    pos = step > -1.0
    out[pos] = np.exp(np.log1p(step[pos]) / eps)
    return out


def _entmax_bisect_1d(theta: np.ndarray, alpha: float) -> np.ndarray:
    eps = alpha - 1.0
    shifted = shift_by_max(theta)
    n = int(np.isfinite(theta).sum())
    hi = -np.expm1(-eps * np.log(n)) / eps
    t = bisect_decreasing(lambda t: entmax_t_weights(shifted, t, eps).sum() - 1.0, 0.0, hi)
    if eps > 1.0:
        return anchored_entmax(shifted, eps, t)
    p = entmax_t_weights(shifted, t, eps)
    return p / p.sum()


def anchored_entmax(shifted: np.ndarray, eps: float, t: float) -> np.ndarray:
    """α-entmax for α > 2, anchored at the smallest support entry (eq-entmax-anchored).

    For α > 2 the exponent r = 1/ε is below 1, so an entry at the edge of the
    support has p_s = b_s^r with a base b_s = 1 + ε(x_s − t) that can be far below
    the rounding error of 1 + ε(x − t) (at α = 100, p_s = 0.007 needs b_s ≈ 1e-212).
    Writing every base relative to the smallest support entry s,
    b_i = b_s + ε(x_i − x_s), keeps them accurate, and p_s = u solves the increasing
    equation u + Σ_{i≠s} (u^ε + ε(x_i − x_s))^r = 1 on [0, 1].  The support is
    the longest prefix (in decreasing x) whose smallest entry can carry
    non-negative mass; candidates come from the threshold ``t``, widened by
    the rounding of the bases.
    """
    r = 1.0 / eps
    base = 1.0 + eps * (shifted - t)
    band = 1e3 * np.finfo(np.float64).eps * (1.0 + eps * abs(t))
    cand = np.flatnonzero(base > -band)
    cand = cand[np.argsort(-shifted[cand], kind="stable")]
    xs = shifted[cand]
    # the support ends at the last j whose entry can be the smallest: Σ_{i<j} (ε(x_i − x_j))^r <= 1
    s = 0
    for j in range(1, xs.size):
        if np.sum((eps * (xs[:j] - xs[j])) ** r) <= 1.0:
            s = j
        else:
            break
    gaps = eps * (xs[:s] - xs[s])
    tied = gaps == 0  # entries tied with s carry mass u each: sum them apart, or 1 + tiny rounds to 1

    def masses(u):  # a tied entry has exactly the mass u ((u^ε)^r may underflow)
        return np.where(tied, u, (u**eps + gaps) ** r)

    def slack(u):
        terms = masses(u)
        return (1.0 - terms[~tied].sum()) - (u + terms[tied].sum())

    u = bisect_decreasing(slack, 0.0, 1.0)
    out = np.zeros_like(shifted)
    out[cand[:s]] = masses(u)
    out[cand[s]] = u
    return out / out.sum()


class Tsallis(Regularizer):
    """Tsallis α-negentropy Ω(p) = (Σ p^α − 1) / (α(α − 1)) on the simplex (eq-entmax-omega).

    α = 1 is the Shannon limit Σ p log p, α = 2 is ½‖p‖² − ½ (sparsemax).
    The prediction map is α-entmax and the margin is 1/(α − 1).
    """

    def __init__(self, alpha: float = 1.5):
        self.alpha = check_alpha(alpha)

    @property
    def margin(self) -> float:  # type: ignore[override]
        return float("inf") if self.alpha == 1.0 else 1.0 / (self.alpha - 1.0)

    def _omega_1d(self, p: np.ndarray) -> float:
        a = self.alpha
        pos = p > 0
        if a == 1.0:
            return float(np.sum(p[pos] * np.log(p[pos])))
        # Σ p (p^(α−1) − 1) = Σ p^α − 1 on the simplex, without the cancellation near α = 1
        return float(np.sum(p[pos] * np.expm1((a - 1.0) * np.log(p[pos]))) / (a * (a - 1.0)))

    def _predict_1d(self, theta: np.ndarray) -> np.ndarray:
        return _entmax_1d(theta, self.alpha)

    def _jacobian_1d(self, theta: np.ndarray) -> np.ndarray:
        """J = diag(s) − s sᵀ / Σ s with s_i = p_i^(2−α) on the support (eq-entmax-jacobian)."""
        p = _entmax_1d(theta, self.alpha)
        s = np.zeros_like(p)
        pos = p > 0
        s[pos] = p[pos] ** (2.0 - self.alpha)
        total = s.sum()
        J = np.diag(s) - np.outer(s, s) / total
        # the diagonal s_i (Σs − s_i)/Σs, with Σ_{j≠i} s_j summed directly: for α > 2 one
        # entry of s can dwarf the others, and Σs − s_i would cancel
        rest = np.array([np.sum(np.delete(s, i)) for i in range(s.size)])
        np.fill_diagonal(J, s * rest / total)
        return J

    def alpha_derivative(self, theta) -> np.ndarray:
        """∂ŷ/∂α at a 1-D ``theta`` (eq-entmax-alpha-grad), stable as α → 1⁺.

        With ε = α − 1, ℓ = log p on the support, h = Σ p ℓ and
        c_i = (exp(−ε ℓ_i) − 1 + ε ℓ_i) / ε², the derivative is
        p_i / w̄ · [c̄ − c_i + ε (h c_i − ℓ_i c̄)] with w̄ = Σ p exp(−ε ℓ) and
        c̄ = Σ p c.  At ε = 0 it is the one-sided limit p_i (E_p[ℓ²] − ℓ_i²) / 2.
        """
        theta = as_scores(theta, "theta")
        p = _entmax_1d(theta, self.alpha)
        return entmax_alpha_derivative(p, self.alpha - 1.0)

    def max_entropy(self, n: int) -> float:
        a = self.alpha
        if a == 1.0:
            return float(np.log(n))
        return float((1.0 - n ** (1.0 - a)) / (a * (a - 1.0)))


def _phi2(x: np.ndarray) -> np.ndarray:
    """(exp(x) − 1 − x) / x², accurate near x = 0 (a four-term series below 1e-3)."""
    x = np.asarray(x, dtype=np.float64)
    small = np.abs(x) < 1e-3
    xs = np.where(small, 1.0, x)
    direct = (np.expm1(xs) - xs) / xs**2
    series = 0.5 + x / 6.0 + x**2 / 24.0 + x**3 / 120.0
    return np.where(small, series, direct)


def entmax_alpha_derivative(p: np.ndarray, eps: float) -> np.ndarray:
    """∂p/∂α for an entmax output ``p`` (1-D) at ε = α − 1 >= 0."""
    out = np.zeros_like(p)
    pos = p > 0
    ps = p[pos]
    ell = np.log(ps)
    h = float(np.dot(ps, ell))
    if eps < 0.5:
        c = ell**2 * _phi2(-eps * ell)
        cbar = float(np.dot(ps, c))
        wbar = 1.0 + float(np.dot(ps, np.expm1(-eps * ell)))
        out[pos] = ps / wbar * (cbar - c + eps * (h * c - ell * cbar))
    else:  # the textbook form is well conditioned away from α = 1
        s = ps ** (1.0 - eps)
        ptil = s / s.sum()
        out[pos] = (ps - ptil) / eps**2 - (ps * ell - ptil * h) / eps
    return out
