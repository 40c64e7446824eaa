"""Sequential k-subsets SparseMAP over enumerated structures (cvxpy oracle, tiny N).

Every structure is listed explicitly, so the marginal polytope is the convex
hull of the list and SparseMAP is the quadratic program
max_{π ∈ simplex} Σ_s π_s (θᵀa_s + w b_s) − ½‖Aπ‖², μ = Aπ.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from scipy import sparse

from ..reference._core import as_scores
from ._core import cvxpy, solve_quietly

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
    cp = cvxpy()
    c = A @ theta + w * b
    pi = cp.Variable(A.shape[0], nonneg=True)
    problem = cp.Problem(cp.Maximize(c @ pi - 0.5 * cp.sum_squares(A.T @ pi)), [cp.sum(pi) == 1])
    solve_quietly(problem)
    if pi.value is None:
        raise RuntimeError(f"cvxpy failed: status {problem.status}")
    weights = np.clip(pi.value, 0.0, None)
    return A.T @ (weights / weights.sum())


def sequential_ksubsets_flow(theta: np.ndarray, k: int, transition: float = 0.0, exactly_k: bool = True) -> np.ndarray:
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
        return sparsemap_enumerated(theta, A, b, 0.0)
    w = float(transition)
    node = {}
    for i in range(n):
        for c in range(k + 1):
            for s in (0, 1):
                if (s == 1 and c == 0) or c > i + 1:
                    continue
                node[(i, c, s)] = len(node)
    edges = []  # (tail or -1 for the source, head, bonus flag)
    edges.append((-1, node[(0, 0, 0)], 0.0))
    edges.append((-1, node[(0, 1, 1)], 0.0))
    for (i, c, s), v in node.items():
        if i == n - 1:
            continue
        for s2 in (0, 1):
            c2 = c + s2
            if (i + 1, c2, s2) in node:
                edges.append((v, node[(i + 1, c2, s2)], 1.0 if (s == 1 and s2 == 1) else 0.0))
    sinks = [v for (i, c, s), v in node.items() if i == n - 1 and (c == k if exactly_k else c <= k)]
    m, nv = len(edges), len(node)
    # incidence matrices, sparse: dense ones of this size make cvxpy's canonicalisation dominate the solve
    def ones_at(rows, cols, shape):
        return sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=shape)

    tails = np.array([t for (t, _, _) in edges])
    heads = np.array([h for (_, h, _) in edges])
    cols = np.arange(m)
    internal = tails >= 0
    inc_in = ones_at(heads, cols, (nv, m))
    inc_out = ones_at(tails[internal], cols[internal], (nv, m))
    f = cp.Variable(m, nonneg=True)
    t = cp.Variable(len(sinks), nonneg=True)  # flow leaving each admissible last node
    out_extra = ones_at(sinks, np.arange(len(sinks)), (nv, len(sinks)))
    keys = {val: key for key, val in node.items()}
    selects = np.array([keys[h][2] == 1 for h in heads])  # edges into a "selected" node
    unary = ones_at([keys[h][0] for h in heads[selects]], cols[selects], (n, m))
    bonus = np.array([flag for (_, _, flag) in edges])
    mu = unary @ f
    constraints = [inc_in @ f == inc_out @ f + out_extra @ t, cp.sum(f[:2]) == 1]
    problem = cp.Problem(cp.Maximize(theta @ mu + w * (bonus @ f) - 0.5 * cp.sum_squares(mu)), constraints)
    solve_quietly(problem)
    if f.value is None:
        raise RuntimeError(f"cvxpy failed: status {problem.status}")
    return np.clip(unary @ f.value, 0.0, 1.0)


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
    if math.isnan(float(transition)) or float(transition) == -math.inf:
        raise ValueError(f"`transition` must be a number or +inf (windows); got {transition}")
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
