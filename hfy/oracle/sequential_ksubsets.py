"""Sequential k-subsets SparseMAP over enumerated structures (cvxpy oracle, tiny N).

Every structure is listed explicitly, so the marginal polytope is the convex
hull of the list and SparseMAP is the quadratic program
max_{π ∈ simplex} Σ_s π_s (θᵀa_s + w b_s) − ½‖Aπ‖², μ = Aπ.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from .._structures import barycentre, viterbi_lattice
from .._validate import check_transition
from ..reference._core import as_scores
from ..reference.ksubsets import positive_k
from ._core import cvxpy, solve_quietly
from .fenchel_young import Regularizer

#: Enumeration is exponential: refuse inputs longer than this.
MAX_N = 12


def enumerate_structures(n: int, k: int, transition: float, exactly_k: bool = True):
    """All structures (A: (S, N) 0/1 rows, b: (S,) adjacent-pair counts) of sequential k-subsets."""
    if math.isinf(transition):
        rows = [np.r_[np.zeros(i), np.ones(k), np.zeros(n - k - i)] for i in range(n - k + 1)]
    else:
        sizes = [k] if exactly_k else range(0, k + 1)
        rows = []
        for c in sizes:
            for S in itertools.combinations(range(n), c):
                y = np.zeros(n)
                y[list(S)] = 1.0
                rows.append(y)
    A = np.array(rows)
    b = np.sum(A[:, :-1] * A[:, 1:], axis=1)
    return A, b


def sparsemap_enumerated(theta: np.ndarray, A: np.ndarray, b: np.ndarray, w: float) -> np.ndarray:
    """μ = Aπ for the SparseMAP QP over the listed structures."""
    return _enumerated(theta, A, b, w)[0]


def _enumerated(theta: np.ndarray, A: np.ndarray, b: np.ndarray, w: float):
    """(μ, optimal value Ω*(θ)) of the SparseMAP QP over the listed structures."""
    cp = cvxpy()
    c = A @ theta + w * b
    pi = cp.Variable(A.shape[0], nonneg=True)
    problem = cp.Problem(cp.Maximize(c @ pi - 0.5 * cp.sum_squares(A.T @ pi)), [cp.sum(pi) == 1])
    solve_quietly(problem)
    if pi.value is None:
        raise RuntimeError(f"cvxpy failed: status {problem.status}")
    weights = np.clip(pi.value, 0.0, None)
    return A.T @ (weights / weights.sum()), float(problem.value)


def sequential_ksubsets_flow(theta: np.ndarray, k: int, transition: float = 0.0, exactly_k: bool = True) -> np.ndarray:
    """μ of SparseMAP over sequential k-subsets by the flow QP (see :func:`_flow`)."""
    return _flow(theta, k, transition, exactly_k)[0]


def _flow(theta: np.ndarray, k: int, transition: float = 0.0, exactly_k: bool = True):
    """SparseMAP over sequential k-subsets as a QP over the flows of the Viterbi lattice (any N).

    The budgeted Viterbi recursion is a directed acyclic graph on the nodes
    (position i, count c, state s); its source-to-sink paths are exactly the
    structures, and because network matrices are totally unimodular the unit
    flows form the convex hull of the paths.  With μ_i the flow into the nodes
    (i, ·, 1) and the bonus counted on the edges (i−1, ·, 1) → (i, ·, 1), SparseMAP
    is max θᵀμ + w·(bonus flow) − ½‖μ‖² over unit flows: polynomial in N and k.
    """
    cp = cvxpy()
    n = theta.size
    if math.isinf(transition):
        A, b = enumerate_structures(n, k, transition, exactly_k)
        return _enumerated(theta, A, b, 0.0)
    lat = viterbi_lattice(n, k, bool(exactly_k))
    f = cp.Variable(lat.bonus.size, nonneg=True)
    mu = lat.unary @ f
    problem = cp.Problem(cp.Maximize(theta @ mu + float(transition) * (lat.bonus @ f) - 0.5 * cp.sum_squares(mu)),
                         [lat.flow @ f == lat.rhs])
    solve_quietly(problem)
    if f.value is None:
        raise RuntimeError(f"cvxpy failed: status {problem.status}")
    return np.clip(lat.unary @ f.value, 0.0, 1.0), float(problem.value)


def sequential_ksubsets(z, k: int, transition: float = 0.0, dim: int = -1, exactly_k: bool = True,
                        method: str = "flow") -> np.ndarray:
    """SparseMAP over sequential k-subsets, solved by CLARABEL.

    ``method='flow'`` (default) solves the QP over the flow polytope of the
    Viterbi lattice (any N); ``method='enumerate'`` lists every structure
    (N <= MAX_N) and solves over their convex hull.

    See Also
    --------
    hfy.sequential_ksubsets, hfy.reference.sequential_ksubsets
    """
    check_transition(transition)
    z = np.moveaxis(as_scores(z), dim, -1)
    n = z.shape[-1]
    flat = z.reshape(-1, n)
    if method == "flow":
        out = np.stack([sequential_ksubsets_flow(row, k, transition, exactly_k) for row in flat])
    elif method == "enumerate":
        if n > MAX_N:
            raise ValueError(f"the enumeration oracle handles N <= {MAX_N}; got N = {n}")
        A, b = enumerate_structures(n, k, transition, exactly_k)
        w = 0.0 if math.isinf(transition) else float(transition)
        out = np.stack([sparsemap_enumerated(row, A, b, w) for row in flat])
    else:
        raise ValueError(f"`method` must be 'flow' or 'enumerate'; got {method!r}")
    return np.moveaxis(out.reshape(z.shape), -1, dim)


class SequentialKSubsets(Regularizer):
    """SparseMAP over sequential k-subsets as a regulariser: μ and Ω*(θ) = max θᵀμ + w·(expected pairs) − ½‖μ‖²
    are the solution and optimal value of the flow QP (windows, w = inf: the enumerated windows).  With a
    finite bonus Ω(μ) = ½‖μ‖² − V_w(μ), V_w(μ) the largest w·(expected pairs) of a mixture of structures with
    marginals μ: a linear program over the listed structures (N <= MAX_N) or over the flows of the lattice.
    The reference point is the average of the listed structures (the closed forms for N > MAX_N).

    See Also
    --------
    hfy.SequentialKSubsets, hfy.reference.SequentialKSubsets
    """

    margin = float("inf")
    simplex = False

    def __init__(self, k: int, transition: float = 0.0, exactly_k: bool = True):
        self.k, self.transition, self.exactly_k = positive_k(k), check_transition(transition), bool(exactly_k)

    def solve(self, theta: np.ndarray):
        theta = np.asarray(theta, dtype=np.float64)
        if not np.all(np.isfinite(theta)):
            raise ValueError("`theta` must be finite for sequential k-subsets")
        return _flow(theta, self.k, self.transition, self.exactly_k)

    def omega_value(self, p: np.ndarray) -> float:
        quadratic = 0.5 * float(p @ p)
        if self.transition == 0.0 or math.isinf(self.transition):
            return quadratic
        return quadratic - mixture_bonus(p, self.k, self.transition, self.exactly_k)

    def in_domain(self, p: np.ndarray) -> bool:
        return True  # (as in the other layers: ½‖μ‖² is evaluated wherever it is asked for, V_w checks μ)

    def reference_point(self, n: int) -> np.ndarray:
        if n <= MAX_N:
            return enumerate_structures(n, self.k, self.transition, self.exactly_k)[0].mean(0)
        return barycentre(n, self.k, self.transition, self.exactly_k)


def mixture_bonus(mu, k: int, transition: float, exactly_k: bool = True) -> float:
    """V_w(μ) = max { w Σ_s π_s b_s : π a mixture of structures with marginals μ } for one row ``mu`` (cvxpy).

    Over the listed structures for N <= MAX_N (the convex hull of the list), over the unit flows of the
    Viterbi lattice otherwise.  A clear error when no mixture has marginals μ.
    """
    mu = np.asarray(mu, dtype=np.float64)
    w = float(transition)
    if mu.size <= MAX_N:
        return mixture_bonus_enumerated(mu, *enumerate_structures(mu.size, k, w, exactly_k), w)
    cp = cvxpy()
    lat = viterbi_lattice(mu.size, k, bool(exactly_k))
    f = cp.Variable(lat.bonus.size, nonneg=True)
    problem = cp.Problem(cp.Maximize(w * (lat.bonus @ f)), [lat.flow @ f == lat.rhs, lat.unary @ f == mu])
    return _bonus_value(problem)


def mixture_bonus_enumerated(mu, A: np.ndarray, b: np.ndarray, w: float) -> float:
    """V_w(μ) = max { w bᵀπ : Aᵀπ = μ, π in the simplex } over the listed structures (rows of ``A``, features
    ``b``), for one row ``mu`` (cvxpy): the oracle of the bonus for any structures small enough to list.  A
    clear error when no mixture has marginals μ."""
    cp = cvxpy()
    pi = cp.Variable(A.shape[0], nonneg=True)
    problem = cp.Problem(cp.Maximize(float(w) * (b @ pi)), [A.T @ pi == np.asarray(mu, dtype=np.float64),
                                                             cp.sum(pi) == 1])
    return _bonus_value(problem)


def _bonus_value(problem) -> float:
    """The optimal value of a bonus program, or a clear error when μ is not a mixture of the structures."""
    solve_quietly(problem)
    if problem.status not in ("optimal", "optimal_inaccurate"):
        raise ValueError(f"`mu` is not a mixture of structures (the linear program is {problem.status})")
    return float(problem.value)
