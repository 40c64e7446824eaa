"""Softmax and the Shannon regulariser (torch fast path)."""

from __future__ import annotations

import math

import torch

from ._core import check_scores, shift_rows
from .fenchel_young import Regularizer, xlogx


def softmax(z: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax along ``dim`` (eq-softmax-map), with ``-inf`` as a mask.

    Parameters
    ----------
    z : Tensor, shape (..., N, ...)
        Scores; ``-inf`` masks an entry (probability exactly 0).  NaN and
        ``+inf`` raise ``ValueError``.
    dim : int
        The axis of the N scores.

    Returns
    -------
    Tensor, same shape and dtype as ``z``
        Probabilities.  A row whose entries are all ``-inf`` maps to the zero
        vector (``torch.softmax`` would return NaN there).

    See Also
    --------
    hfy.reference.softmax, hfy.oracle.softmax : the twins in the other layers.
    """
    z = check_scores(z, "z", dim)
    m = z.detach().amax(dim=dim, keepdim=True)
    if not bool(torch.isfinite(m).all()):
        zl = z.detach().movedim(dim, -1)
        _, _, dead = shift_rows(zl)  # raises on NaN / +inf
        if dead is not None:
            dead = dead.movedim(-1, dim)
            p = torch.softmax(z.masked_fill(dead, 0.0), dim=dim)
            return p.masked_fill(dead, 0.0)
    return torch.softmax(z, dim=dim)


class Shannon(Regularizer):
    """Shannon negentropy Ω(p) = Σ p log p on the simplex; ŷ_Ω = softmax; no margin."""

    margin = math.inf

    def predict(self, theta: torch.Tensor, dim: int = -1) -> torch.Tensor:
        return softmax(theta, dim)

    def omega(self, p: torch.Tensor, dim: int = -1) -> torch.Tensor:
        return xlogx(p).sum(dim)

    def conjugate_closed_form(self, theta: torch.Tensor, dim: int = -1) -> torch.Tensor:
        """Ω*(θ) = log Σ exp θ (eq-softmax-conjugate); differentiable to any order."""
        return torch.logsumexp(theta, dim=dim)

    def max_entropy(self, n: int) -> float:
        return math.log(n)
