"""The classical Hopfield network's score-side regulariser (torch fast path).

Ω(y) = ½‖y‖² on R^N: ŷ_Ω(θ) = θ, Ω*(θ) = ½‖θ‖².  With the ``Sign``
post-transformation the HFY update is q ← sign(XᵀXq) (eq-classical-update).
"""

from __future__ import annotations

import math

import torch

from .fenchel_young import Regularizer


class Quadratic(Regularizer):
    """Ω(y) = ½‖y‖² on all of R^N (no simplex, no margin)."""

    margin = math.inf
    simplex = False

    def predict(self, theta: torch.Tensor, dim: int = -1) -> torch.Tensor:
        return theta

    def omega(self, y: torch.Tensor, dim: int = -1) -> torch.Tensor:
        return 0.5 * (y * y).sum(dim)

    def conjugate(self, theta: torch.Tensor, dim: int = -1) -> torch.Tensor:
        return 0.5 * (theta * theta).sum(dim)

    def reference_point(self, n: int, like: torch.Tensor) -> torch.Tensor:
        return torch.zeros(n, dtype=like.dtype, device=like.device)

    def max_entropy(self, n: int) -> float:
        raise ValueError("Quadratic has no entropy: its domain is not the simplex")
