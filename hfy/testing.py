"""Tolerances and problem generators shared by the tests and the chapters.

Every tolerance used to compare two layers lives here, with the reason for
its size, so that a reader can see what "agrees" means.
"""

from __future__ import annotations

from typing import Callable, Dict, Iterator, List, Sequence, Tuple

import numpy as np

#: oracle (cvxpy/CLARABEL, see ``hfy.oracle``) vs reference, for the maximisers of
#: the quadratic and linear programs (sparsemax, ∞-normmax, the post-transformation
#: projections) and of the Shannon exponential-cone program.  Observed: below 1e-9
#: for the QPs and below 3e-7 for Shannon on random problems with N <= 8; the QP
#: at an exact tie of the margin (a degenerate problem) reaches ~5e-7.
ORACLE_ATOL = 1e-6

#: oracle vs reference for the maximisers of power-cone and p-norm programs
#: (α-entmax with α ∉ {1, 2}, γ-normmax with γ < ∞) and of the tanh entropy
#: program.  Interior-point termination leaves an objective gap of ~1e-12,
#: and near the edge of the support the maximiser moves like the gap to the
#: power 1/(α−1) (or 1/(γ−1)), so errors of ~1e-5 are observed on random
#: 7-dimensional problems (α = 4, γ = 2).
ORACLE_POWER_ATOL = 5e-5

#: oracle vs reference for optimal values (conjugates Ω*, energies), which
#: interior-point methods compute far more accurately than maximisers.
ORACLE_VALUE_ATOL = 1e-8

#: reference (numpy float64) vs fast path (torch float64): both solve the same
#: equations to machine precision, so only rounding separates them.
REFERENCE_ATOL = 1e-10

#: fast path in a lower precision vs the same inputs in float64, on outputs
#: that are probabilities (absolute error).
DTYPE_ATOL: Dict[str, float] = {
    "float64": 1e-12,
    "float32": 1e-5,
    "float16": 5e-3,
    "bfloat16": 3e-2,
}

#: torch.autograd.gradcheck settings (float64 central differences).
GRADCHECK = dict(eps=1e-6, atol=1e-6, rtol=1e-4)

#: finite-difference step and tolerance for analytic Jacobians (central differences).
FD_STEP = 1e-6
FD_ATOL = 1e-7

#: property tests: identities that hold up to float64 rounding.
PROPERTY_ATOL = 1e-9


def dtype_atol(dtype) -> float:
    """Tolerance vs float64 for a torch or numpy dtype (by name)."""
    name = str(dtype).replace("torch.", "")
    return DTYPE_ATOL[name]


#: (shape, dim, scale) of the reference-vs-fast-path comparisons of the maps: 1-D to 4-D inputs,
#: every axis as ``dim``, scores from 0.1 to 100.
MAP_LAYOUTS: List[Tuple[Tuple[int, ...], int, float]] = [
    ((64,), -1, 1.0),
    ((64,), 0, 10.0),
    ((5, 64), -1, 0.1),
    ((5, 64), 0, 3.0),
    ((5, 64), 1, 100.0),
    ((3, 4, 17), 0, 1.0),
    ((3, 4, 17), 1, 10.0),
    ((3, 4, 17), -1, 0.3),
    ((2, 3, 4, 5), 2, 1.0),
]

#: the layouts kept for maps compared over a grid of their own parameter (α, γ): one per shape/axis pattern.
MAP_LAYOUTS_SHORT = [layout for layout in MAP_LAYOUTS if layout not in (((5, 64), 0, 3.0), ((2, 3, 4, 5), 2, 1.0))]


def layout_ids(layouts: Sequence[tuple]) -> List[str]:
    """Test ids of (shape, dim, scale) layouts, e.g. ``(5, 64)-dim0-scale3.0``."""
    return [f"{shape}-dim{dim}-scale{scale}" for shape, dim, scale in layouts]


def finite_difference_jacobian(f: Callable[[np.ndarray], np.ndarray], theta: np.ndarray,
                               step: float = FD_STEP) -> np.ndarray:
    """Central-difference Jacobian of a map of a 1-D input: column j is (f(θ + h e_j) − f(θ − h e_j)) / 2h."""
    columns = []
    for j in range(theta.size):
        e = np.zeros_like(theta)
        e[j] = step
        columns.append((f(theta + e) - f(theta - e)) / (2 * step))
    return np.stack(columns, axis=1)


def random_scores(shape: Tuple[int, ...], scale: float = 1.0, seed: int = 0) -> np.ndarray:
    """Gaussian scores of a given shape and scale (float64, seeded)."""
    return scale * np.random.default_rng(seed).standard_normal(shape)


def random_simplex(n: int, seed: int = 0, sparse: bool = False) -> np.ndarray:
    """A random point of the n-simplex; with ``sparse=True`` about half the entries are 0."""
    rng = np.random.default_rng(seed)
    w = rng.exponential(size=n)
    if sparse and n > 1:
        w[rng.random(n) < 0.5] = 0.0
        if not w.any():
            w[rng.integers(n)] = 1.0
    return w / w.sum()


def adversarial_scores() -> Iterator[Tuple[str, np.ndarray]]:
    """Named 1-D score vectors that broke peer libraries (see the book's chapters)."""
    yield "single entry", np.array([0.3])
    yield "all equal", np.zeros(6)
    yield "ties at the top", np.array([2.0, 2.0, 1.0, -1.0])
    yield "huge offset", np.array([0.0, -0.5, -3.0, 1.0]) + 1e4
    yield "negative offset", np.array([0.0, -5.0]) - 1000.0
    yield "huge scale", np.array([1e30, -1e30, 0.0, 5.0])
    yield "tiny scale", 1e-12 * np.array([1.0, -2.0, 0.5])
    yield "one masked", np.array([1.0, -np.inf, 0.5, 0.2])
    yield "all but one masked", np.array([-np.inf, -np.inf, 0.7, -np.inf])
    yield "gap exactly one", np.array([1.0, 0.0, 0.0])
