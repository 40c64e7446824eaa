"""Constrained sparsemax as a quadratic program (cvxpy oracle)."""

from __future__ import annotations

import numpy as np

from ..reference._core import as_scores
from .ksubsets import project_capped


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
