"""Exact-retrieval certificates from the margin (numpy reference).

For Ψ = ½‖·‖² and a map with margin m (eq-retrieval-margins):

* one step: if β(x_iᵀq − max_{j≠i} x_jᵀq) >= m then q⁺ = x_i exactly;
* fixed point: if Δ_i = x_iᵀx_i − max_{j≠i} x_iᵀx_j >= m/β then x_i is a fixed
  point (and only then, when x_i is outside the convex hull of the others);
* basin: every q with ‖q − x_i‖ <= r_i = (Δ_i − m/β)/(2M), M = max_j ‖x_j‖, is
  sent to x_i in one step (eq-retrieval-basin).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validate import certified_margin
from .energy import as_omega


def separation(X) -> np.ndarray:
    """Δ_i = x_iᵀx_i − max_{j≠i} x_iᵀx_j for every row of ``X`` (+inf when N = 1)."""
    X = np.asarray(X, dtype=np.float64)
    G = X @ X.T
    diag = np.diag(G).copy()
    np.fill_diagonal(G, -np.inf)
    return diag - G.max(axis=1)


def score_gap(q, X, i) -> np.ndarray:
    """x_iᵀq − max_{j≠i} x_jᵀq along the last axis of ``q``."""
    s = np.asarray(q, dtype=np.float64) @ np.asarray(X, dtype=np.float64).T
    others = np.delete(s, i, axis=-1)
    return s[..., i] - others.max(axis=-1)


@dataclass
class Certificate:
    """Which memories are guaranteed fixed points, and their guaranteed one-step basins."""

    margin: float
    beta: float
    separation: np.ndarray
    fixed_point: np.ndarray
    basin_radius: np.ndarray
    max_norm: float


def certify(X, beta: float, omega="sparsemax") -> Certificate:
    """Certify exact fixed points and one-step basin radii of every memory (eq-retrieval-basin).

    ``fixed_point[i]`` is True when Δ_i >= m/β (sufficient; also necessary when
    x_i lies outside the convex hull of the other memories).  The test is exact arithmetic on the
    computed separations: a memory within a few rounding units of Δ_i = m/β can be certified with
    radius ~0 while the floating-point update misses x_i by an ulp.  ``basin_radius[i]``
    is (Δ_i − m/β)/(2M) where positive and 0 otherwise.  Maps without a margin
    (softmax) certify nothing.
    """
    X = np.asarray(X, dtype=np.float64)
    m = certified_margin(as_omega(omega))
    delta = separation(X)
    big_m = float(np.sqrt(np.max(np.sum(X * X, axis=1))))
    need = m / beta
    fixed = delta >= need if np.isfinite(m) else np.zeros(X.shape[0], dtype=bool)
    radius = np.where(fixed, (delta - need) / (2 * big_m) if big_m > 0 else np.inf, 0.0)
    return Certificate(m, float(beta), delta, fixed, radius, big_m)
