"""γ-normmax as the norm-regularised program (cvxpy oracle)."""

from __future__ import annotations

import numpy as np

from .._validate import check_gamma
from ._core import cvxpy, map_along
from .fenchel_young import Regularizer


class NormEntropy(Regularizer):
    """Ω(p) = ‖p‖_γ − 1; −Ω is ``1 − cp.pnorm(p, γ)`` (``cp.norm_inf`` for γ = inf)."""

    margin = 1.0

    def __init__(self, gamma: float = 2.0):
        self.gamma = check_gamma(gamma, name="gamma")

    def omega_value(self, p):
        return float(np.linalg.norm(p, ord=self.gamma)) - 1.0

    def neg_omega_expr(self, p):
        cp = cvxpy()
        if np.isinf(self.gamma):
            return 1.0 - cp.norm_inf(p)
        return 1.0 - cp.pnorm(p, self.gamma)


def normmax(z, alpha: float = 2.0, dim: int = -1) -> np.ndarray:
    """argmax_{p ∈ △} ⟨z, p⟩ − ‖p‖_γ with γ = ``alpha``, solved by CLARABEL.

    For γ = inf the program is a linear program whose solution set can
    contain more than one point at ties; the oracle returns the solver's.

    See Also
    --------
    hfy.normmax, hfy.reference.normmax
    """
    reg = NormEntropy(alpha)
    return map_along(lambda row: reg.solve(row)[0], z, dim)
