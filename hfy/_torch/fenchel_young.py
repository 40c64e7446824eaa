"""Fenchel-Young machinery of the torch fast path: regularisers and losses.

A :class:`Regularizer` bundles Ω, its prediction map ŷ_Ω = ∇Ω*, the conjugate
Ω* and the Fenchel-Young loss L_Ω(θ; y) = Ω*(θ) + Ω(y) − ⟨θ, y⟩
(eq-fenchel_young-loss).  The conjugate is evaluated generically as
⟨θ, ŷ⟩ − Ω(ŷ) and differentiated by Danskin's theorem: its gradient is ŷ
exactly, with no differentiation through the solver.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from .._validate import check_reduction


def xlogx(p: torch.Tensor) -> torch.Tensor:
    """p log p with 0 log 0 = 0, safe to differentiate at 0 on the zero branch."""
    pos = p > 0
    safe = torch.where(pos, p, torch.ones_like(p))
    return torch.where(pos, p * torch.log(safe), torch.zeros_like(p))


def masked_dot(theta: torch.Tensor, y: torch.Tensor, dim: int) -> torch.Tensor:
    """⟨θ, y⟩ along ``dim`` where entries with y = 0 contribute 0 (so −inf·0 is not NaN)."""
    used = y != 0
    return torch.where(used, theta * y, torch.zeros_like(theta)).sum(dim)


class _Conjugate(torch.autograd.Function):
    """Ω*(θ) with the Danskin gradient ŷ_Ω(θ).

    The first derivative reuses the forward's ŷ; when a graph is requested
    (double backward), ŷ is recomputed differentiably so that the Hessian is
    the Jacobian of the prediction map.
    """

    @staticmethod
    def forward(ctx, theta, regularizer, dim):
        with torch.no_grad():
            p, omega_p = regularizer._predict_for_conjugate(theta, dim)
            value = masked_dot(theta, p, dim) - (regularizer.omega(p, dim) if omega_p is None else omega_p)
            if regularizer.simplex:  # sup over an empty set: an all-masked row has Ω* = −inf
                value = value.masked_fill(torch.isneginf(theta.amax(dim)), -math.inf)
        ctx.regularizer, ctx.dim = regularizer, dim
        ctx.save_for_backward(theta, p)
        return value

    @staticmethod
    def backward(ctx, grad):
        theta, p = ctx.saved_tensors
        if torch.is_grad_enabled():
            p = ctx.regularizer.predict(theta, ctx.dim)
        return grad.unsqueeze(ctx.dim) * p, None, None


class Regularizer:
    """Base class of the score-side regularisers Ω (torch).

    Subclasses implement :meth:`predict`, :meth:`omega` and
    :meth:`max_entropy`; the conjugate and the loss follow.
    """

    #: Smallest score gap that guarantees a one-hot prediction (inf: never).
    margin: float = math.inf

    def predict(self, theta: torch.Tensor, dim: int = -1) -> torch.Tensor:  # pragma: no cover
        """The prediction map ŷ_Ω(θ) = ∇Ω*(θ) along ``dim``."""
        raise NotImplementedError

    def omega(self, p: torch.Tensor, dim: int = -1) -> torch.Tensor:  # pragma: no cover
        """Ω(p) along ``dim`` for ``p`` in the domain (not checked: this is the fast path)."""
        raise NotImplementedError

    def max_entropy(self, n: int) -> float:  # pragma: no cover
        """H(u), the entropy of the uniform distribution over ``n`` items."""
        raise NotImplementedError

    #: True when dom Ω lies in the simplex and Ω is a generalised negentropy (H(u) exists).
    simplex: bool = True

    #: True when :meth:`predict` returns ŷ_Ω only up to a positive factor per row (an overflow guard);
    #: the update is then exact only with a scale-invariant Ψ.
    rescaled: bool = False

    #: True when a −inf score means "masked" for the prediction map (else masks select memories).
    @property
    def inf_mask(self) -> bool:
        return self.simplex

    #: True for threshold maps: zero weight on every score below a threshold (finite margin).
    @property
    def threshold(self) -> bool:
        return self.simplex and math.isfinite(self.margin)

    def reference_point(self, n: int, like: torch.Tensor) -> torch.Tensor:
        """ȳ of the HFY energy constant: the barycentre of dom Ω (u = 1/n on the simplex)."""
        return torch.full((n,), 1.0 / n, dtype=like.dtype, device=like.device)

    def entropy(self, p: torch.Tensor, dim: int = -1) -> torch.Tensor:
        """The generalised entropy H(p) = −Ω(p)."""
        return -self.omega(p, dim)

    def conjugate(self, theta: torch.Tensor, dim: int = -1) -> torch.Tensor:
        """Ω*(θ) = ⟨θ, ŷ⟩ − Ω(ŷ) (eq-fenchel_young-conjugate); gradient ŷ_Ω(θ)."""
        return _Conjugate.apply(theta, self, dim)

    def _predict_for_conjugate(self, theta: torch.Tensor, dim: int):
        """ŷ_Ω(θ) and Ω(ŷ) when the solve gives it (None: Ω*(θ) = ⟨θ, ŷ⟩ − Ω(ŷ) calls :meth:`omega`)."""
        return self.predict(theta, dim), None

    def loss(self, theta: torch.Tensor, y: torch.Tensor, dim: int = -1) -> torch.Tensor:
        """L_Ω(θ; y) for a target ``y`` in the domain, reduced along ``dim`` only."""
        if y.shape != theta.shape:
            raise ValueError(f"`y` must have the shape of `theta` {tuple(theta.shape)}; got {tuple(y.shape)}")
        y = y.to(theta.dtype)
        return self.conjugate(theta, dim) + self.omega(y, dim) - masked_dot(theta, y, dim)

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({params})"


def fenchel_young_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    regularizer: Regularizer,
    dim: int = -1,
    reduction: str = "mean",
    ignore_index: int = -100,
) -> torch.Tensor:
    """Fenchel-Young loss with the ergonomics of ``torch.nn.functional.cross_entropy``.

    Parameters
    ----------
    input : Tensor, shape (..., C, ...)
        Scores θ; the C classes lie along ``dim``.
    target : Tensor
        Either class indices (integer dtype, the shape of ``input`` without
        ``dim``; entries equal to ``ignore_index`` are skipped) or target
        distributions (floating dtype, the shape of ``input``).
    regularizer : Regularizer
        Ω, e.g. ``Shannon()``, ``Tsallis(1.5)``, ``NormEntropy(2.0)``.
    dim : int
        The class axis.
    reduction : {'mean', 'sum', 'none'}
        'mean' averages over the non-ignored examples ('elementwise_mean' is
        accepted as an alias).
    ignore_index : int
        Class-index targets equal to this value contribute nothing.

    Returns
    -------
    Tensor
        The loss; shape of ``input`` without ``dim`` when ``reduction='none'``.

    Notes
    -----
    With Shannon and class-index targets this is the cross-entropy loss.
    The gradient with respect to ``input`` is ŷ_Ω(θ) − y.
    """
    reduction = check_reduction(reduction)
    if not isinstance(input, torch.Tensor) or not input.is_floating_point():
        raise TypeError("`input` must be a floating-point torch.Tensor")
    dim = dim % input.dim()
    keep: Optional[torch.Tensor] = None
    if target.is_floating_point():
        if target.shape != input.shape:
            raise ValueError(
                f"probability `target` must have the shape of `input` {tuple(input.shape)}; got {tuple(target.shape)}"
            )
        y = target.to(input.dtype)
    else:
        expected = input.shape[:dim] + input.shape[dim + 1 :]
        if target.shape != expected:
            raise ValueError(
                f"class-index `target` must have shape {tuple(expected)} (input without dim {dim}); "
                f"got {tuple(target.shape)}"
            )
        keep = target != ignore_index
        idx = torch.where(keep, target, torch.zeros_like(target)).long()
        n_classes = input.shape[dim]
        if bool(((idx < 0) | (idx >= n_classes)).any()):
            raise ValueError(f"class-index `target` must lie in [0, {n_classes}) or equal ignore_index")
        y = torch.zeros_like(input).scatter_(dim, idx.unsqueeze(dim), 1.0)
    losses = regularizer.loss(input, y, dim)
    if keep is not None:
        losses = torch.where(keep, losses, torch.zeros_like(losses))
    if reduction == "none":
        return losses
    if reduction == "sum":
        return losses.sum()
    count = keep.sum() if keep is not None else torch.tensor(losses.numel(), device=losses.device)
    return losses.sum() / count.clamp_min(1).to(losses.dtype)


class FenchelYoungLoss(nn.Module):
    """Module form of :func:`fenchel_young_loss` (like ``torch.nn.CrossEntropyLoss``)."""

    def __init__(self, regularizer: Regularizer, dim: int = -1, reduction: str = "mean", ignore_index: int = -100):
        super().__init__()
        self.regularizer = regularizer
        self.dim = dim
        self.reduction = check_reduction(reduction)
        self.ignore_index = ignore_index

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return fenchel_young_loss(input, target, self.regularizer, self.dim, self.reduction, self.ignore_index)

    def extra_repr(self) -> str:
        return f"{self.regularizer!r}, dim={self.dim}, reduction={self.reduction!r}"
