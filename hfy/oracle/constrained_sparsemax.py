"""Constrained sparsemax as a quadratic program (cvxpy oracle)."""

from __future__ import annotations

import numpy as np

from ..reference._core import as_scores
from ..reference.fenchel_young import masked_dot
from .fenchel_young import Regularizer
from .ksubsets import DOMAIN_TOL, project_capped


def constrained_sparsemax(z, upper, dim: int = -1) -> np.ndarray:
    """argmin_p ‖p − z‖² s.t. p in the simplex and p <= u, solved by CLARABEL.

    See Also
    --------
    hfy.constrained_sparsemax, hfy.reference.constrained_sparsemax
    """
    z = as_scores(z)
    upper = np.broadcast_to(np.asarray(upper, dtype=np.float64), z.shape)
    zm, um = np.moveaxis(z, dim, -1), np.moveaxis(upper, dim, -1)
    flat = zip(zm.reshape(-1, zm.shape[-1]), um.reshape(-1, um.shape[-1]))
    out = np.stack([project_capped(a, b, 1.0, True) for a, b in flat])
    return np.moveaxis(out.reshape(zm.shape), -1, dim)


class ConstrainedSparsemax(Regularizer):
    """Ω(p) = ½‖p‖² on {p in the simplex, p <= upper} (caps fixed per position), as a quadratic program.

    See Also
    --------
    hfy.ConstrainedSparsemax, hfy.reference.ConstrainedSparsemax
    """

    margin = 1.0
    simplex = False

    def __init__(self, upper):
        self.upper = np.asarray(upper, dtype=np.float64)

    def _caps(self, n: int) -> np.ndarray:
        return np.broadcast_to(self.upper, (n,))

    def solve(self, theta: np.ndarray):
        theta = np.asarray(theta, dtype=np.float64)
        p = project_capped(theta, np.array(self._caps(theta.size)), 1.0, True)
        return p, masked_dot(theta, p) - 0.5 * float(p @ p)

    def omega_value(self, p: np.ndarray) -> float:
        return 0.5 * float(p @ p)

    def in_domain(self, p: np.ndarray) -> bool:
        return bool(np.all(p >= -DOMAIN_TOL) and np.all(p <= self._caps(p.size) + DOMAIN_TOL)
                    and abs(p.sum() - 1.0) <= DOMAIN_TOL)

    def reference_point(self, n: int) -> np.ndarray:
        """The point of the domain closest to uniform: constrained sparsemax of zero scores."""
        return project_capped(np.zeros(n), np.array(self._caps(n)), 1.0, True)
