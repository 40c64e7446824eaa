"""α-entmax as the Tsallis-regularised program (cvxpy oracle)."""

from __future__ import annotations

import numpy as np

from .._validate import check_alpha
from ._core import cvxpy, map_along
from .fenchel_young import Regularizer
from .softmax import Shannon


class Tsallis(Regularizer):
    """Ω(p) = (Σ p^α − 1)/(α(α − 1)); −Ω uses ``cp.power(p, α)`` with power cones (no rational approximation)."""

    def __init__(self, alpha: float = 1.5):
        self.alpha = check_alpha(alpha)

    @property
    def margin(self) -> float:  # type: ignore[override]
        return float("inf") if self.alpha == 1.0 else 1.0 / (self.alpha - 1.0)

    def omega_value(self, p):
        a = self.alpha
        if a == 1.0:
            return Shannon().omega_value(p)
        pos = p > 0
        return float((np.sum(p[pos] ** a) - 1.0) / (a * (a - 1.0)))

    def neg_omega_expr(self, p):
        cp = cvxpy()
        a = self.alpha
        if a == 1.0:
            return cp.sum(cp.entr(p))
        if a == 2.0:
            return (1.0 - cp.sum_squares(p)) / 2.0
        return (1.0 - cp.sum(cp.power(p, a, approx=False))) / (a * (a - 1.0))


def entmax(z, alpha: float = 1.5, dim: int = -1) -> np.ndarray:
    """argmax_{p ∈ △} ⟨z, p⟩ + H_α(p) with the Tsallis entropy H_α, solved by CLARABEL.

    See Also
    --------
    hfy.entmax, hfy.reference.entmax
    """
    reg = Tsallis(alpha)
    return map_along(lambda row: reg.solve(row)[0], z, dim)
