"""Facts about the k-subset structures shared by the three layers (numpy and scipy only).

* The **barycentre** of the structures, the reference point of the HFY energy: the average of all
  k-subsets, of all subsets of at most k entries, or of the N − k + 1 contiguous windows.
* The **Viterbi lattice** of sequential k-subsets as a flow network, and on it the linear program
  for the **bonus of the best mixture**: with a transition bonus w the SparseMAP regulariser is

      Ω(μ) = ½‖μ‖² − V_w(μ),   V_w(μ) = max { w Σ_s π_s b_s : π a mixture of structures with marginals μ },

  because the QP max_π Σ_s π_s (θᵀa_s + w b_s) − ½‖Aᵀπ‖² first picks the marginals μ and then, among
  the mixtures with those marginals, the one with the best expected bonus.  V_w is concave and
  piecewise linear in μ (the value of a linear program whose right-hand side is μ), so Ω is convex.
  At a structure y the only mixture is y itself and V_w(y) = w·b(y).
* The same **bonus of the best mixture for any structures** given by their MAP oracle, by column
  generation (:func:`mixture_bonus_by_columns`), for the general SparseMAP regularisers.

The oracle solves the same linear program with cvxpy (over the listed structures for short rows),
so the layers still meet as independent computations.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
from scipy import optimize, sparse


def subset_barycentre(n: int, k: int, exactly_k: bool = True) -> np.ndarray:
    """The average of all k-subsets of N entries ((k/N)·1), or of all subsets of at most k entries.

    A subset of c entries drawn uniformly holds each entry with probability c/N, so the average of the
    subsets of at most k entries is (m/N)·1 with m = Σ_c c·C(N, c) / Σ_c C(N, c), c = 0 … k: the mean
    size, weighted by the number of subsets of each size (computed in log space for large N).
    """
    if n == 0:
        return np.zeros(0)
    if exactly_k:
        return np.full(n, k / n)
    c = np.arange(min(k, n) + 1, dtype=np.float64)
    log_count = np.array([math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) for i in c])
    weight = np.exp(log_count - log_count.max())
    return np.full(n, float(weight @ c / weight.sum()) / n)


def window_barycentre(n: int, k: int) -> np.ndarray:
    """The average of the N − k + 1 windows of k consecutive entries: entry i lies in
    min(i + 1, k, N − i, N − k + 1) of them."""
    i = np.arange(n)
    return np.minimum.reduce([i + 1, np.full(n, k), n - i, np.full(n, n - k + 1)]) / (n - k + 1)


def barycentre(n: int, k: int, transition: float = 0.0, exactly_k: bool = True) -> np.ndarray:
    """The average of the structures of sequential k-subsets (of k-subsets when ``transition`` is finite: the
    bonus scores structures, it does not change which ones there are; of the windows when it is inf)."""
    return window_barycentre(n, k) if math.isinf(transition) else subset_barycentre(n, k, exactly_k)


@dataclass(frozen=True)
class Lattice:
    """The budgeted Viterbi lattice as a flow network with m edges.

    ``flow @ f == rhs`` (f >= 0) are the unit source-to-sink flows, whose vertices are the paths,
    i.e. the structures (the constraint matrix of a network is totally unimodular); ``unary @ f`` is
    μ, the flow into the "selected" nodes of each position, and ``bonus`` marks the edges between two
    selected neighbours, so ``bonus @ f`` is the expected number of adjacent pairs.
    """

    flow: sparse.csr_matrix
    rhs: np.ndarray
    unary: sparse.csr_matrix
    bonus: np.ndarray


@functools.lru_cache(maxsize=32)
def viterbi_lattice(n: int, k: int, exactly_k: bool = True) -> Lattice:
    """The lattice of eq-sequential_ksubsets-viterbi for N positions and budget k.

    Nodes (i, c, s): position i, c selections among positions 0 … i, s = y_i (c <= i + 1, and c >= 1
    when s = 1).  Edges go from the source to the nodes of position 0, from (i, c, s) to
    (i + 1, c + s', s'), and from the nodes of the last position with c = k (or c <= k) to the sink.
    The rows of ``flow`` are the conservation of every node and the unit flow out of the source.
    """
    node = {}
    for i in range(n):
        for c in range(min(k, i + 1) + 1):
            for s in (0, 1):
                if not (s == 1 and c == 0):
                    node[(i, c, s)] = len(node)
    tails, heads, pairs = [-1, -1], [node[(0, 0, 0)], node[(0, 1, 1)]], [0.0, 0.0]  # (-1: the source)
    for (i, c, s), v in node.items():
        if i == n - 1:
            if c == k or (not exactly_k and c < k):
                tails.append(v), heads.append(-1), pairs.append(0.0)  # (-1: the sink)
            continue
        for s2 in (0, 1):
            head = node.get((i + 1, c + s2, s2))
            if head is not None:
                tails.append(v), heads.append(head), pairs.append(float(s == 1 and s2 == 1))
    tails, heads = np.array(tails), np.array(heads)
    m, nv = tails.size, len(node)
    edges = np.arange(m)
    into, out_of = heads >= 0, tails >= 0
    conserve = (sparse.csr_matrix((np.ones(into.sum()), (heads[into], edges[into])), shape=(nv, m))
                - sparse.csr_matrix((np.ones(out_of.sum()), (tails[out_of], edges[out_of])), shape=(nv, m)))
    source = sparse.csr_matrix((np.ones((~out_of).sum()), (np.zeros((~out_of).sum(), dtype=int), edges[~out_of])),
                               shape=(1, m))
    position = np.array([i for (i, _, _) in node])
    selected = np.array([s == 1 for (_, _, s) in node])
    picks = into & selected[np.where(into, heads, 0)]
    unary = sparse.csr_matrix((np.ones(picks.sum()), (position[heads[picks]], edges[picks])), shape=(n, m))
    rhs = np.zeros(nv + 1)
    rhs[-1] = 1.0
    return Lattice(sparse.vstack([conserve, source]).tocsr(), rhs, unary, np.array(pairs))


def polytope_point(mu: np.ndarray, k: int, exactly_k: bool, name: str = "mu", tol: Optional[float] = None) -> np.ndarray:
    """``mu`` (1-D) moved onto the k-subsets polytope (entries in [0, 1] summing to k, or at most k), which it may
    miss by rounding; a clear error naming it if it misses by more than ``tol`` (default √eps·k in float64;
    pass the rounding of the dtype μ was computed in).  Every k-subset is a sequential k-subset, so this is
    also their polytope.  The excess or deficit of the sum is spread over the entries in proportion to their
    room, which keeps them in [0, 1]."""
    tol = math.sqrt(np.finfo(np.float64).eps) * max(k, 1) if tol is None else tol
    total = float(mu.sum())
    if (not np.all(np.isfinite(mu)) or np.any(mu < -tol) or np.any(mu > 1.0 + tol) or total > k + tol
            or (exactly_k and abs(total - k) > tol)):
        raise ValueError(f"`{name}` must lie in the marginal polytope: entries in [0, 1] summing to "
                         f"{'' if exactly_k else 'at most '}k = {k} (a mixture of structures has such marginals)")
    mu = np.clip(mu, 0.0, 1.0)
    gap = k - float(mu.sum())
    if gap > 0 and exactly_k:
        mu = mu + gap * (1.0 - mu) / (1.0 - mu).sum()
    elif gap < 0:
        mu = mu + gap * mu / mu.sum()
    return mu


def structure_bonus(mu: np.ndarray, k: int, exactly_k: bool):
    """b(y) = Σ y_i y_{i+1} if ``mu`` (1-D) is a structure (0/1 entries, k of them or at most k), else None."""
    if not np.all((mu == 0.0) | (mu == 1.0)):
        return None
    count = int(mu.sum())
    if count > k or (exactly_k and count != k):
        return None
    return float(mu[:-1] @ mu[1:])


def mixture_bonus(mu: np.ndarray, k: int, w: float, exactly_k: bool = True,
                  tol: Optional[float] = None) -> Tuple[float, np.ndarray]:
    """V_w(μ) and a supergradient of V_w at μ, for one row ``mu`` (N,) of the polytope and a finite w.

    V_w(μ) = max { w·bonus·f : f a unit flow of the lattice with unary·f = μ }, solved by HiGHS; the
    supergradient is the dual of the constraints unary·f = μ (unique where V_w is differentiable, up to a
    multiple of 1 along which exactly k has no room).  A clear error when μ is outside the polytope by more
    than ``tol`` (:func:`polytope_point`).
    """
    if not math.isfinite(w):
        raise ValueError(f"`w` must be finite for the bonus of a mixture (windows carry none); got {w}")
    mu = polytope_point(np.asarray(mu, dtype=np.float64), k, exactly_k, tol=tol)
    n = mu.size
    if w == 0.0:
        return 0.0, np.zeros(n)
    lat = viterbi_lattice(n, k, bool(exactly_k))
    res = optimize.linprog(-w * lat.bonus, A_eq=sparse.vstack([lat.flow, lat.unary]).tocsr(),
                           b_eq=np.concatenate([lat.rhs, mu]), bounds=(0, None), method="highs")
    if res.status != 0:
        raise ValueError(f"`mu`: the linear program for the bonus of the best mixture failed ({res.message})")
    # linprog minimises −V; its marginals are the derivatives of that minimum in the right-hand side
    return -float(res.fun), -np.asarray(res.eqlin.marginals[lat.rhs.size:], dtype=np.float64)


@functools.lru_cache(maxsize=64)
def _reference_bonus(data: bytes, k: int, w: float, exactly_k: bool) -> float:
    return mixture_bonus(np.frombuffer(data, dtype=np.float64), k, w, exactly_k)[0]


def mixture_bonus_value(mu: np.ndarray, k: int, w: float, exactly_k: bool = True, tol: Optional[float] = None) -> float:
    """V_w(μ) for one row: w·b(y) in closed form at a structure, the linear program otherwise (memoised for
    rows seen before, such as the reference point of an energy evaluated at every step)."""
    if w == 0.0:
        return 0.0
    mu = np.ascontiguousarray(polytope_point(np.asarray(mu, dtype=np.float64), k, exactly_k, tol=tol))
    b = structure_bonus(mu, k, exactly_k)
    if b is not None:
        return w * b
    return _reference_bonus(mu.tobytes(), k, float(w), bool(exactly_k))


#: Penalty growth and its limit for the slack of the column-generation program (see
#: :func:`mixture_bonus_by_columns`): the penalty starts at PENALTY times the scale of the bonuses and is
#: multiplied by PENALTY_GROWTH until μ is met or PENALTY_ROUNDS increases have been made.
PENALTY, PENALTY_GROWTH, PENALTY_ROUNDS = 1e3, 1e2, 4

#: HiGHS options for the restricted programs: feasibility tolerances tighter than its default 1e-7 (the
#: programs are small and well scaled), and no presolve, which can call a program infeasible whose
#: right-hand side is exactly a mixture of its columns with weights of order 1e-7.
LP_OPTIONS = {"presolve": False, "primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10}


def mixture_bonus_by_columns(mu: np.ndarray, map_oracle, w: float, name: str = "mu", tol: Optional[float] = None,
                             max_iter: Optional[int] = None) -> Tuple[float, np.ndarray]:
    """V_w(μ) and a supergradient of V_w at μ for one row ``mu`` (N,), for any structures given by their MAP.

    V_w(μ) = max { w Σ_s π_s b_s : π a mixture with marginals Σ_s π_s a_s = μ } is a linear program in the
    weights of exponentially many structures; column generation solves it with the MAP oracle alone
    (``map_oracle(v) -> (a, b)``, the argmax of vᵀa + w b).  HiGHS minimises −V over the structures found
    so far and gives prices λ for the constraints Σ_s π_s a_s = μ and ν for Σ_s π_s = 1 (the derivatives
    of −V in the right-hand side); a structure improves the program iff w b + λᵀa + ν > 0, the oracle at
    v = λ returns the one that improves it most, and the program is optimal over all structures when even
    that one does not.  Slack variables s± with a penalty make every restricted program feasible (the
    first holds one structure); the penalty grows until the slack vanishes, which it does for μ in the
    polytope once the penalty exceeds the size of the prices.  The program is then solved again without
    the slack, whose penalty would otherwise set the prices of the coordinates on the polytope's boundary,
    and −λ is the supergradient, as in :func:`mixture_bonus`.  A clear error naming ``name`` when no
    mixture meets μ within ``tol`` (default √eps·max(1, Σμ)).
    """
    if not math.isfinite(w):
        raise ValueError(f"`w` must be finite for the bonus of a mixture; got {w}")
    mu = np.asarray(mu, dtype=np.float64)
    tol = math.sqrt(np.finfo(np.float64).eps) * max(1.0, float(np.abs(mu).sum())) if tol is None else tol
    if mu.ndim != 1 or not np.all(np.isfinite(mu)) or np.any(mu < -tol) or np.any(mu > 1.0 + tol):
        raise ValueError(f"`{name}` must lie in the marginal polytope of the structures (finite, entries in [0, 1]); "
                         f"got {mu!r}")
    mu = np.clip(mu, 0.0, 1.0)
    n = mu.size
    max_iter = 10 * n + 100 if max_iter is None else max_iter
    if w == 0.0:
        return 0.0, np.zeros(n)
    columns, features = [], []

    def best(v):
        a, b = map_oracle(v)
        return np.asarray(a, dtype=np.float64).reshape(n), float(b)

    def add(a, b):
        """Add structure a with feature b to the program; False if it is already there."""
        if any(np.array_equal(known, a) for known in columns):
            return False
        columns.append(a)
        features.append(b)
        return True

    add(*best(mu))
    identity = sparse.identity(n, format="csr")
    rounds, slack_on = 0, True
    for _ in range(max_iter):
        A = np.array(columns)
        b = np.array(features)
        s = A.shape[0]
        scale = 1.0 + abs(w) * float(np.abs(b).max())
        weights_row = sparse.csr_matrix(np.ones((1, s)))
        if slack_on:
            penalty = PENALTY * scale * PENALTY_GROWTH ** rounds
            cost = np.concatenate([-w * b, np.full(2 * n, penalty)])
            constraints = sparse.vstack([sparse.hstack([sparse.csr_matrix(A.T), identity, -identity]),
                                         sparse.hstack([weights_row, sparse.csr_matrix((1, 2 * n))])])
        else:
            cost = -w * b
            constraints = sparse.vstack([sparse.csr_matrix(A.T), weights_row])
        res = optimize.linprog(cost, A_eq=constraints.tocsr(), b_eq=np.concatenate([mu, [1.0]]), bounds=(0, None),
                               method="highs", options=LP_OPTIONS)
        if res.status != 0:  # (with slack every restricted program is feasible; without, μ is a mixture of them)
            raise ValueError(f"`{name}`: the linear program for the bonus of the best mixture failed ({res.message})")
        prices = np.asarray(res.eqlin.marginals, dtype=np.float64)
        lam, nu = prices[:n], prices[n]
        a, bonus = best(lam)
        gain = w * bonus + float(lam @ a) + nu  # −(reduced cost)
        if gain > 1e-9 * scale * (1.0 + abs(float(res.fun))) and add(a, bonus):
            continue
        weights = np.clip(res.x[:s], 0.0, None)
        if not slack_on:  # optimal over all structures, with prices not inflated by the penalty
            return float(w * (b @ weights)), -lam
        slack = float(res.x[s:].sum())
        if slack <= tol:
            # μ is met, up to rounding if it was computed in a lower precision: go on from the marginals of the
            # mixture found, which the structures meet exactly, without the slack (whose penalty would otherwise
            # set the prices of coordinates on the boundary of the polytope)
            mu, slack_on = A.T @ (weights / weights.sum()), False
            continue
        if rounds == PENALTY_ROUNDS:
            raise ValueError(f"`{name}` must lie in the marginal polytope of the structures: no mixture of structures "
                             f"has these marginals (they miss by {slack:.3g} in the 1-norm)")
        rounds += 1
    raise ValueError(f"`{name}`: column generation for the bonus of the best mixture did not converge in {max_iter} "
                     "iterations")
