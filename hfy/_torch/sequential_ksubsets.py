"""SparseMAP over sequential k-subsets, batched (torch fast path).

Structures: k-hot vectors y scored θᵀy + w·b(y), b(y) = Σ_i y_i y_{i+1}
(eq-sequential_ksubsets-map).  MAP is the budgeted Viterbi recursion over
(position, count, last state), vectorised over the batch (the Python loop
runs over positions, never over examples); w = inf restricts the structures
to contiguous windows, whose MAP is a running sum.  SparseMAP is the batched
active set of :mod:`hfy._torch.sparsemap`.
"""

from __future__ import annotations

import math
from typing import Union

import torch
from torch import nn

from ._core import check_scores, compute_dtype, move_back, move_to_last
from .sparsemap import MAX_ITER, SparseMAP, active_set, sparsemap

FloatLike = Union[float, torch.Tensor]


def best_windows(theta: torch.Tensor, k: int):
    """Per row, the contiguous window of k positions with the largest sum: (y (B, N), b (B,) = k − 1)."""
    b, n = theta.shape
    csum = torch.cat([torch.zeros_like(theta[:, :1]), torch.cumsum(theta, dim=1)], dim=1)
    sums = csum[:, k:] - csum[:, : n - k + 1]
    start = sums.argmax(dim=1, keepdim=True)
    pos = torch.arange(n, device=theta.device).unsqueeze(0)
    y = ((pos >= start) & (pos < start + k)).to(theta.dtype)
    return y, torch.full((b,), float(k - 1), dtype=theta.dtype, device=theta.device)


def budgeted_viterbi(theta: torch.Tensor, k: int, w: float, exactly_k: bool = True):
    """argmax_y θᵀy + w b(y) with Σ y = k (or <= k) for every row of ``theta`` (B, N) (eq-sequential_ksubsets-viterbi).

    Returns ``(y, b)``: the structures (B, N) as 0/1 floats and their adjacent-pair counts (B,).
    """
    if math.isinf(w):
        return best_windows(theta, k)
    b, n = theta.shape
    neg = torch.tensor(-math.inf, dtype=theta.dtype, device=theta.device)
    V = torch.full((b, k + 1, 2), -math.inf, dtype=theta.dtype, device=theta.device)
    V[:, 0, 0] = 0.0
    back = torch.zeros((n, b, k + 1, 2), dtype=torch.bool, device=theta.device)
    for i in range(n):
        stay1 = V[:, :, 1] > V[:, :, 0]
        new0 = torch.where(stay1, V[:, :, 1], V[:, :, 0])
        from0 = V[:, :-1, 0] + theta[:, i : i + 1]
        from1 = V[:, :-1, 1] + theta[:, i : i + 1] + w
        take1 = from1 > from0
        new1 = torch.cat([neg.expand(b, 1), torch.where(take1, from1, from0)], dim=1)
        back[i, :, :, 0] = stay1
        back[i, :, 1:, 1] = take1
        V = torch.stack([new0, new1], dim=-1)
    rows = torch.arange(b, device=theta.device)
    if exactly_k:
        c = torch.full((b,), k, dtype=torch.long, device=theta.device)
    else:
        c = V.amax(-1).argmax(-1)
    s = V[rows, c].argmax(-1)
    y = torch.zeros_like(theta)
    for i in range(n - 1, -1, -1):
        prev = back[i, rows, c, s].long()
        y[:, i] = s.to(theta.dtype)
        c = c - s
        s = prev
    return y, (y[:, :-1] * y[:, 1:]).sum(-1)


def _oracle(k: int, w: float, exactly_k: bool):
    def oracle(v: torch.Tensor):
        return budgeted_viterbi(v, k, w, exactly_k)

    oracle.__name__ = f"budgeted_viterbi(k={k}, w={w}, exactly_k={exactly_k})"
    return oracle


def sequential_ksubsets(z: torch.Tensor, k: int, transition: FloatLike = 0.0, dim: int = -1,
                        exactly_k: bool = True) -> torch.Tensor:
    """SparseMAP marginals over sequential k-subsets along ``dim`` (eq-sequential_ksubsets-map).

    Parameters
    ----------
    z : Tensor, shape (..., N, ...)
        Unary scores (finite: a mask would break the chain).
    k : int
        Number of selected positions, 1 <= k <= N.
    transition : float or 0-dim Tensor
        Bonus w for every pair of adjacent selected positions (may require grad);
        ``float('inf')`` restricts the structures to contiguous windows (implemented
        as a constraint, never as a huge number).
    dim : int
    exactly_k : bool
        Σ μ = k (True) or Σ μ <= k (False).

    Returns
    -------
    Tensor
        Unary marginals μ in [0, 1], summing to k (or at most k) along ``dim``.

    See Also
    --------
    hfy.reference.sequential_ksubsets, hfy.oracle.sequential_ksubsets, SequentialKSubsets
    """
    z = check_scores(z, "z", dim)
    n = z.shape[dim]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n:
        raise ValueError(f"`k` must be an int in [1, N={n}]; got {k!r}")
    if not bool(torch.isfinite(z).all()):
        raise ValueError("`z` must be finite for sequential_ksubsets (a -inf mask would break the chain)")
    w_val = float(transition.detach()) if isinstance(transition, torch.Tensor) else float(transition)
    if math.isnan(w_val):
        raise ValueError("`transition` must not be NaN")
    zl = move_to_last(z, dim)
    flat = zl.reshape(-1, n).to(compute_dtype(z.dtype))
    if math.isinf(w_val):
        if w_val < 0:
            raise ValueError("`transition` = -inf forbids every structure with adjacent positions; use a finite value")
        mu = sparsemap(flat, _oracle(k, math.inf, exactly_k), 0.0)
    else:
        w_arg = transition.to(flat.dtype) if isinstance(transition, torch.Tensor) else w_val
        mu = sparsemap(flat, _oracle(k, w_val, exactly_k), w_arg)
    return move_back(mu.reshape(zl.shape).to(z.dtype), dim)


class SequentialKSubsets(SparseMAP):
    """The SparseMAP regulariser over sequential k-subsets with contiguity bonus ``transition``.

    The reference point of the HFY energy is (k/N)·1, the barycentre of the k-subsets
    (only constants of the energy depend on it).
    """

    def __init__(self, k: int, transition: float = 0.0, exactly_k: bool = True, max_iter: int = MAX_ITER):
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"`k` must be a positive int; got {k!r}")
        self.k, self.transition, self.exactly_k = k, float(transition), bool(exactly_k)
        w = 0.0 if math.isinf(self.transition) else self.transition
        super().__init__(_oracle(k, self.transition, self.exactly_k), w, None, max_iter)

    def predict(self, theta: torch.Tensor, dim: int = -1) -> torch.Tensor:
        return sequential_ksubsets(theta, self.k, self.transition, dim, self.exactly_k)

    def reference_point(self, n: int, like: torch.Tensor) -> torch.Tensor:
        return torch.full((n,), self.k / n, dtype=like.dtype, device=like.device)

    def __repr__(self) -> str:
        return f"SequentialKSubsets(k={self.k}, transition={self.transition}, exactly_k={self.exactly_k})"
