"""Exact-retrieval certificates from the margin (torch fast path); twins of :mod:`hfy.reference.retrieval`."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .._validate import certified_margin
from .energy import as_omega


def separation(X: torch.Tensor) -> torch.Tensor:
    """Δ_i = x_iᵀx_i − max_{j≠i} x_iᵀx_j for every row of ``X`` (+inf when N = 1)."""
    G = X @ X.transpose(0, 1)
    diag = torch.diagonal(G).clone()
    eye = torch.eye(X.shape[0], dtype=torch.bool, device=X.device)
    return diag - G.masked_fill(eye, -math.inf).amax(1)


def score_gap(q: torch.Tensor, X: torch.Tensor, i: int) -> torch.Tensor:
    """x_iᵀq − max_{j≠i} x_jᵀq along the last axis of ``q``."""
    s = q @ X.transpose(0, 1)
    others = torch.cat([s[..., :i], s[..., i + 1:]], dim=-1)
    return s[..., i] - others.amax(-1)


@dataclass
class Certificate:
    """Which memories are guaranteed fixed points, and their guaranteed one-step basin radii.

    Attributes
    ----------
    margin : float
        m of the map (inf for softmax).
    beta : float
    separation : Tensor, shape (N,)
        Δ_i.
    fixed_point : bool Tensor, shape (N,)
        Δ_i >= m/β.
    basin_radius : Tensor, shape (N,)
        (Δ_i − m/β)/(2M) for certified memories, 0 otherwise.
    max_norm : float
        M = max_i ‖x_i‖.
    """

    margin: float
    beta: float
    separation: torch.Tensor
    fixed_point: torch.Tensor
    basin_radius: torch.Tensor
    max_norm: float


def certify(X: torch.Tensor, beta: float, omega="sparsemax") -> Certificate:
    """Certify which memories are exact fixed points of the HFY update, and their basins (eq-retrieval-basin).

    For Ψ = identity (and, by idempotence, for ℓ2 or layer norm with memories
    in the image of the map), memory i is a fixed point when its separation
    Δ_i is at least m/β, and every state within (Δ_i − m/β)/(2M) of it is
    retrieved exactly in one update.  Maps without a margin certify nothing.  The test is exact
    arithmetic on the computed separations: a memory within a few rounding units of Δ_i = m/β can
    be certified with radius ~0 while the floating-point update misses x_i by an ulp.

    See Also
    --------
    hfy.reference.certify
    """
    m = certified_margin(as_omega(omega))
    delta = separation(X)
    big_m = float(torch.linalg.vector_norm(X, dim=1).max())
    need = m / beta
    if math.isfinite(m):
        fixed = delta >= need
    else:
        fixed = torch.zeros(X.shape[0], dtype=torch.bool, device=X.device)
    radius = torch.where(fixed, (delta - need) / (2 * big_m) if big_m > 0 else torch.full_like(delta, math.inf),
                         torch.zeros_like(delta))
    return Certificate(m, float(beta), delta, fixed, radius, big_m)
