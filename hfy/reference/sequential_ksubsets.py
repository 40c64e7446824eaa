"""SparseMAP over sequential k-subsets (numpy reference).

The structures are k-hot vectors y scored θᵀy + w·b(y), where
b(y) = Σ_i y_i y_{i+1} counts adjacent selected positions, so w > 0 rewards
contiguity.  MAP is a budgeted Viterbi recursion over (position, count, last
state) (eq-sequential_ksubsets-viterbi); w = inf restricts the structures to
the N − k + 1 contiguous windows (a hard constraint, never a huge number).
SparseMAP itself is the active-set method of :mod:`hfy.reference.sparsemap`.
"""

from __future__ import annotations

import math

import numpy as np

from .._structures import barycentre, mixture_bonus_value, polytope_point
from .._validate import check_transition
from ._core import apply_along, as_scores
from .fenchel_young import _reduce_along
from .ksubsets import _check_k, positive_k
from .sparsemap import ActiveSet, sparsemap_active_set


def budgeted_viterbi(theta: np.ndarray, k: int, w: float, exactly_k: bool = True):
    """argmax_y θᵀy + w b(y) over y ∈ {0,1}^N with Σy = k (or <= k); returns (y, b(y)).

    V[c, s] is the best score of the prefix with c selections ending in state s;
    selecting position i from state s adds θ_i (+ w if s = 1).
    """
    n = theta.size
    if math.isinf(w):
        return best_window(theta, k)
    neg = -np.inf
    V = np.full((k + 1, 2), neg)
    V[0, 0] = 0.0
    back = np.zeros((n, k + 1, 2), dtype=np.int8)  # previous state
    for i in range(n):
        new = np.full((k + 1, 2), neg)
        # y_i = 0: from either state, same count
        take0 = V[:, 1] > V[:, 0]
        new[:, 0] = np.where(take0, V[:, 1], V[:, 0])
        back[i, :, 0] = take0
        # y_i = 1: count goes up by one
        from0 = V[:-1, 0] + theta[i]
        from1 = V[:-1, 1] + theta[i] + w
        take1 = from1 > from0
        new[1:, 1] = np.where(take1, from1, from0)
        back[i, 1:, 1] = take1
        V = new
    if exactly_k:
        c = k
    else:
        c = int(np.argmax(V.max(axis=1)))
    s = int(np.argmax(V[c]))
    y = np.zeros(n)
    for i in range(n - 1, -1, -1):
        prev = int(back[i, c, s])
        if s == 1:
            y[i] = 1.0
            c -= 1
        s = prev
    return y, float(np.sum(y[:-1] * y[1:]))


def best_window(theta: np.ndarray, k: int):
    """The contiguous window of k positions with the largest score sum (the w = inf structures)."""
    sums = np.convolve(theta, np.ones(k), mode="valid")
    start = int(np.argmax(sums))
    y = np.zeros(theta.size)
    y[start:start + k] = 1.0
    return y, float(k - 1)


#: Scores above this magnitude are saturated first (:func:`saturate`); windows must stay below
#: ``MAX_SCORE`` (the same limits as the torch path).
SATURATE_ABOVE = 1e4
MAX_SCORE = 1e12


def saturate(theta: np.ndarray, k: int, w: float, exactly_k: bool = True) -> np.ndarray:
    """Scores of moderate range with the same marginals as ``theta`` (one row, w finite).

    With m = 1 + 2|w|: if the top h <= k scores exceed all others by more than m (and m itself, for "at
    most k"), every active structure holds them, since swapping any other entry for one of them raises
    a structure's score; so they can be lowered to (largest other) + m + 1.  If the bottom N − p <= N − k
    scores are below all others by more than m, no active structure holds them, and they can be raised to
    (smallest other) − m − 1.  With exactly k the row is also shifted.  See the torch twin for the proof.
    """
    m = 1.0 + 2.0 * abs(w)
    n = theta.size
    s = np.sort(theta)[::-1]
    with np.errstate(invalid="ignore"):  # (−inf − −inf between masked entries: NaN, no gap)
        gaps = np.append(s[:-1] - s[1:], np.inf)  # gaps[p − 1]: between the first p scores and the rest
    cuts = [p for p in range(1, k + 1) if gaps[p - 1] > m and (exactly_k or s[p - 1] > m)]
    h = max(cuts, default=0)
    low = min((p for p in range(k, n) if gaps[p - 1] > m), default=n)
    if h == low:  # exactly the top k stand out: their indicator
        out = np.zeros(n)
        out[np.argsort(-theta, kind="stable")[:k]] = m + 2.0
        return out
    hi = s[h] + m + 1.0 if exactly_k else max(s[h] + m + 1.0, m + 1.0)
    out = np.clip(theta, s[low - 1] - m - 1.0, hi)
    return out - s[h] if exactly_k else out


def sequential_ksubsets_solve(theta: np.ndarray, k: int, transition: float = 0.0,
                              exactly_k: bool = True) -> ActiveSet:
    """Active-set SparseMAP over sequential k-subsets for one finite score vector (saturated first where
    some scores are large, :func:`saturate`)."""
    k = _check_k(k, theta.size)
    w = check_transition(transition)
    finite = np.isfinite(theta)
    if not finite.all():  # −inf masks an entry
        if math.isinf(w):
            if np.convolve(finite, np.ones(k), mode="valid").max() < k:
                raise ValueError("`k`: with transition = inf the row has no k consecutive unmasked scores")
            lo, hi = theta[finite].min(), theta[finite].max()
            # a window holding a masked entry then scores below every unmasked window (see the torch twin)
            theta = np.where(finite, theta, k * (lo - 1.0) - (k - 1) * hi - 2.0)
        elif exactly_k:
            _check_k(k, int(finite.sum()))
    largest = float(np.max(np.abs(theta))) if theta.size else 0.0
    solved = theta if math.isinf(w) or largest <= SATURATE_ABOVE else saturate(theta, k, w, exactly_k)
    if not exactly_k and not finite.all():  # (−inf below −(1 + 2|w|): never selected with at most k)
        solved = np.maximum(solved, -(1.0 + 2.0 * abs(w)))
    if largest > SATURATE_ABOVE and float(np.max(np.abs(solved))) > MAX_SCORE:
        raise ValueError(f"`z` holds scores the solver cannot set aside (windows, or many huge scores with "
                         f"exactly_k=False); they must stay below {MAX_SCORE:g}: rescale `z`")
    oracle = lambda v: budgeted_viterbi(v, k, w, exactly_k)  # noqa: E731
    # with w = inf every window carries the same bonus, which cannot change μ: drop it
    return sparsemap_active_set(solved, oracle, 0.0 if math.isinf(w) else w)


def sequential_ksubsets(z, k: int, transition: float = 0.0, dim: int = -1, exactly_k: bool = True) -> np.ndarray:
    """SparseMAP marginals over sequential k-subsets along ``dim`` (eq-sequential_ksubsets-map).

    Parameters
    ----------
    z : array_like, shape (..., N, ...)
        Unary scores; −inf masks an entry (a row needs k unmasked scores, k consecutive ones for windows).
    k : int
        Number of selected positions.
    transition : float
        Bonus w per pair of adjacent selected positions; ``float('inf')``
        restricts to contiguous windows.
    exactly_k : bool
        Σ μ = k (True) or Σ μ <= k (False).

    See Also
    --------
    hfy.sequential_ksubsets, hfy.oracle.sequential_ksubsets
    """
    z = as_scores(z)  # (−inf masks an entry)
    return apply_along(lambda row: sequential_ksubsets_solve(row, k, transition, exactly_k).mu, z, dim)


class SequentialKSubsets:
    """SparseMAP over sequential k-subsets as a regulariser; its reference point is the barycentre of the
    structures (:func:`~hfy._structures.barycentre`).

    Ω*(θ) = Σ_s π_s (θᵀa_s + w b_s) − ½‖μ‖², computed from the active set, and with a finite bonus
    Ω(μ) = ½‖μ‖² − V_w(μ), V_w the bonus of the best mixture with marginals μ (a linear program on the
    Viterbi lattice, :func:`~hfy._structures.mixture_bonus`).  With w = inf every window has the same
    bonus, which the map drops, and Ω(μ) = ½‖μ‖².
    """

    margin = float("inf")
    simplex = False

    def __init__(self, k: int, transition: float = 0.0, exactly_k: bool = True):
        self.k, self.transition, self.exactly_k = positive_k(k), float(transition), bool(exactly_k)

    def solve(self, theta) -> ActiveSet:
        return sequential_ksubsets_solve(np.asarray(theta, dtype=np.float64), self.k, self.transition, self.exactly_k)

    def predict(self, theta, dim: int = -1) -> np.ndarray:
        return sequential_ksubsets(theta, self.k, self.transition, dim, self.exactly_k)

    def omega(self, mu, dim: int = -1) -> np.ndarray:
        mu = np.asarray(mu, dtype=np.float64)
        quadratic = 0.5 * np.sum(mu * mu, axis=dim)
        if self.transition == 0.0 or math.isinf(self.transition):
            return quadratic
        return quadratic - _reduce_along(lambda row: mixture_bonus_value(row, self.k, self.transition, self.exactly_k),
                                         mu, dim, "mu")

    def conjugate(self, theta, dim: int = -1) -> np.ndarray:
        theta = np.moveaxis(as_scores(theta, "theta"), dim, -1)
        w = 0.0 if math.isinf(self.transition) else self.transition
        out = []
        for row in theta.reshape(-1, theta.shape[-1]):
            act = self.solve(row)
            out.append(float(act.weights @ (act.structures @ row + w * act.features) - 0.5 * act.mu @ act.mu))
        return np.array(out).reshape(theta.shape[:-1])

    def loss(self, theta, y, dim: int = -1) -> np.ndarray:
        """L(θ; y) = Ω*(θ) + Ω(y) − ⟨θ, y⟩ for a target y in the polytope (a structure: Ω(y) = ½‖y‖² − w·b(y))."""
        theta, y = as_scores(theta, "theta"), np.asarray(y, dtype=np.float64)
        if y.shape != theta.shape:
            raise ValueError(f"`y` must have the shape of `theta` {theta.shape}; got {y.shape}")
        if not math.isinf(self.transition):  # (a clear error naming `y`; Ω checks its argument as `mu`)
            for row in np.moveaxis(y, dim, -1).reshape(-1, y.shape[dim]):
                polytope_point(row, self.k, self.exactly_k, "y")
        dot = np.sum(np.where(y != 0, theta, 0.0) * y, axis=dim)  # (masked scores meet y = 0)
        return self.conjugate(theta, dim) + self.omega(y, dim) - dot

    def reference_point(self, n: int) -> np.ndarray:
        return barycentre(n, self.k, self.transition, self.exactly_k)

    def __repr__(self) -> str:
        return f"SequentialKSubsets(k={self.k}, transition={self.transition}, exactly_k={self.exactly_k})"
