"""Softmax as the Shannon-regularised program (cvxpy oracle)."""

from __future__ import annotations

import numpy as np

from ._core import cvxpy, map_along
from .fenchel_young import Regularizer


class Shannon(Regularizer):
    """Ω(p) = Σ p log p; −Ω is ``cp.sum(cp.entr(p))`` (exponential cone)."""

    def omega_value(self, p):
        pos = p > 0
        return float(np.sum(p[pos] * np.log(p[pos])))

    def neg_omega_expr(self, p):
        return cvxpy().sum(cvxpy().entr(p))


def softmax(z, dim: int = -1) -> np.ndarray:
    """argmax_{p ∈ △} ⟨z, p⟩ + H(p) with H the Shannon entropy, solved by CLARABEL.

    See Also
    --------
    hfy.softmax, hfy.reference.softmax
    """
    return map_along(lambda row: Shannon().solve(row)[0], z, dim)
