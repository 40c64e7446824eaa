"""Constrained sparsemax as a quadratic program (cvxpy oracle)."""

from __future__ import annotations

import numpy as np

from ..reference._core import as_scores
from ..reference.fenchel_young import masked_dot
from .fenchel_young import Regularizer
from .ksubsets import DOMAIN_TOL, project_capped


def constrained_sparsemax(z, upper, dim: int = -1, lower=None) -> np.ndarray:
    """argmin_p ‖p − z‖² s.t. p in the simplex and l <= p <= u (l = 0 unless given), solved by CLARABEL.

    See Also
    --------
    hfy.constrained_sparsemax, hfy.reference.constrained_sparsemax
    """
    z = as_scores(z)
    upper = np.broadcast_to(np.asarray(upper, dtype=np.float64), z.shape)
    lower = np.zeros(z.shape) if lower is None else np.broadcast_to(np.asarray(lower, dtype=np.float64), z.shape)
    zm, um, lm = (np.moveaxis(a, dim, -1) for a in (z, upper, lower))
    flat = zip(*(a.reshape(-1, zm.shape[-1]) for a in (zm, um, lm)))
    out = np.stack([project_capped(a, b, 1.0, True, c) for a, b, c in flat])
    return np.moveaxis(out.reshape(zm.shape), -1, dim)


class ConstrainedSparsemax(Regularizer):
    """Ω(p) = ½‖p‖² on {p in the simplex, lower <= p <= upper} (bounds fixed per position), as a quadratic
    program.

    See Also
    --------
    hfy.ConstrainedSparsemax, hfy.reference.ConstrainedSparsemax
    """

    margin = 1.0
    simplex = False

    def __init__(self, upper, lower=None):
        self.upper = np.asarray(upper, dtype=np.float64)
        self.lower = np.zeros(()) if lower is None else np.asarray(lower, dtype=np.float64)

    def _caps(self, n: int):
        return np.array(np.broadcast_to(self.upper, (n,))), np.array(np.broadcast_to(self.lower, (n,)))

    def solve(self, theta: np.ndarray):
        theta = np.asarray(theta, dtype=np.float64)
        upper, lower = self._caps(theta.size)
        p = project_capped(theta, upper, 1.0, True, lower)
        return p, masked_dot(theta, p) - 0.5 * float(p @ p)

    def omega_value(self, p: np.ndarray) -> float:
        return 0.5 * float(p @ p)

    def in_domain(self, p: np.ndarray) -> bool:
        upper, lower = self._caps(p.size)
        return bool(np.all(p >= lower - DOMAIN_TOL) and np.all(p <= upper + DOMAIN_TOL)
                    and abs(p.sum() - 1.0) <= DOMAIN_TOL)

    def reference_point(self, n: int) -> np.ndarray:
        """The point of the domain closest to uniform: constrained sparsemax of zero scores."""
        upper, lower = self._caps(n)
        return project_capped(np.zeros(n), upper, 1.0, True, lower)
