"""Sparsemax as the Euclidean projection onto the simplex (cvxpy oracle)."""

from __future__ import annotations

import numpy as np

from ._core import map_along
from .entmax import Tsallis


def sparsemax(z, dim: int = -1) -> np.ndarray:
    """argmax_{p ∈ △} ⟨z, p⟩ − ½‖p‖², i.e. argmin_{p ∈ △} ‖p − z‖², solved by CLARABEL.

    See Also
    --------
    hfy.sparsemax, hfy.reference.sparsemax
    """
    return map_along(lambda row: Tsallis(2.0).solve(row)[0], z, dim)
