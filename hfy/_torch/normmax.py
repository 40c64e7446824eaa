"""γ-normmax and the norm-entropy regulariser (torch fast path).

With c = 1 and r = γ/(γ − 1) the threshold equation (eq-entmax-power-root)
is Σ [1 + x_i − t]_+^r = 1 (t = τ + 1), and the output is the normalised
slope vector p ∝ [1 + x − t]_+^(r−1) = [θ − τ]_+^(1/(γ−1)) (eq-normmax-map).
The backward pass is the closed-form product with (eq-normmax-jacobian)

    J = c [diag(b) − b pᵀ − p bᵀ + (1ᵀb) p pᵀ],  b = p^(2−γ) on S,  c = ‖p‖_γ^(γ−1)/(γ−1).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .._validate import check_gamma
from ._core import check_scores, compute_dtype, indicator, move_back, move_to_last, shift_rows, solve_power_root
from .fenchel_young import Regularizer, fenchel_young_loss

MAX_ITER = 100


def _normmax_forward(z: torch.Tensor, gamma: float, max_iter: int) -> torch.Tensor:
    x = z.to(compute_dtype(z.dtype))
    shifted, _, dead = shift_rows(x)
    if math.isinf(gamma):
        # γ = ∞: uniform over the sparsemax support
        _, p, _, _ = solve_power_root(shifted, 1.0, 1.0, softmax_limit=False, max_iter=max_iter)
        w = (p > 0).to(x.dtype)
    else:
        # p ∝ Q = [1 + x − t]_+^(r−1).  At the root the top summand is >= 1/N, so
        # the top slope is >= 1/N too: no log-domain normalisation is needed.
        r = gamma / (gamma - 1.0)
        _, _, w, _ = solve_power_root(shifted, 1.0, r, softmax_limit=False, max_iter=max_iter)
    p = w / w.sum(-1, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny)
    if dead is not None:
        p = p.masked_fill(dead, 0.0)
    return p.to(z.dtype)


def normmax_vjp(p: torch.Tensor, g: torch.Tensor, gamma: float) -> torch.Tensor:
    """Jᵀg = J g for γ-normmax outputs ``p`` along the last axis (J is symmetric)."""
    if math.isinf(gamma):
        return torch.zeros_like(g)
    if torch.is_grad_enabled():  # double backward: masks that are safe to differentiate
        pos = p > 0
        logp = torch.log(torch.where(pos, p, torch.ones_like(p)))
        b = torch.where(pos, torch.exp((2.0 - gamma) * logp), torch.zeros_like(p))
        norm_pow = torch.where(pos, torch.exp(gamma * logp), torch.zeros_like(p)).sum(-1, keepdim=True)
    else:  # fast: no boolean masks, no log of zeros
        ind = indicator(p)
        b = torch.pow(p + (1.0 - ind), 2.0 - gamma).mul_(ind)
        norm_pow = torch.pow(p, gamma).sum(-1, keepdim=True)
    c = norm_pow ** ((gamma - 1.0) / gamma) / (gamma - 1.0)
    pg = (p * g).sum(-1, keepdim=True)
    bg = (b * g).sum(-1, keepdim=True)
    bsum = b.sum(-1, keepdim=True)
    return c * (b * g - b * pg - p * bg + bsum * pg * p)


class _NormmaxFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, gamma, max_iter):
        p = _normmax_forward(z, gamma, max_iter)
        ctx.gamma = gamma
        ctx.save_for_backward(p)
        return p

    @staticmethod
    def backward(ctx, grad):
        (p,) = ctx.saved_tensors
        dtype = compute_dtype(p.dtype)
        gz = normmax_vjp(p.to(dtype), grad.to(dtype), ctx.gamma)
        return gz.to(grad.dtype), None, None


def _normmax(z, alpha, dim, max_iter, name="z"):
    z = check_scores(z, name, dim)
    gamma = check_gamma(alpha)
    out = _NormmaxFunction.apply(move_to_last(z, dim), gamma, max_iter)
    return move_back(out, dim)


def normmax(z: torch.Tensor, alpha: float = 2.0, dim: int = -1) -> torch.Tensor:
    """γ-normmax along ``dim`` for any norm order γ = ``alpha`` > 1 (eq-normmax-map).

    Parameters
    ----------
    z : Tensor, shape (..., N, ...)
        Scores, any floating dtype; ``-inf`` masks an entry; an all-masked row
        maps to zeros.
    alpha : float
        The norm order γ > 1 (named ``alpha`` as in ``entmax.normmax_bisect``);
        ``float('inf')`` gives the uniform distribution on the sparsemax support.
    dim : int
        The axis of the N scores.

    Returns
    -------
    Tensor, same shape and dtype as ``z``
        Exactly one-hot when the top score leads by at least 1 (the margin of
        every γ).

    See Also
    --------
    hfy.reference.normmax, hfy.oracle.normmax : the twins in the other layers.
    NormEntropy : the regulariser whose prediction map this is.
    """
    return _normmax(z, alpha, dim, MAX_ITER)


def normmax_bisect(X: torch.Tensor, alpha: float = 2.0, dim: int = -1, n_iter: int = 50) -> torch.Tensor:
    """``entmax.normmax_bisect`` drop-in; ``alpha`` is the norm order, ``n_iter`` caps root-finding steps."""
    if int(n_iter) < 1:
        raise ValueError(f"`n_iter` must be a positive int; got {n_iter}")
    return _normmax(X, alpha, dim, int(n_iter), name="X")


class NormEntropy(Regularizer):
    """Norm negentropy Ω(p) = ‖p‖_γ − 1 on the simplex (eq-normmax-omega); margin 1 for every γ."""

    margin = 1.0

    def __init__(self, gamma: float = 2.0, n_iter: int = MAX_ITER):
        self.gamma = check_gamma(gamma, name="gamma")
        if int(n_iter) < 1:
            raise ValueError(f"`n_iter` must be a positive int; got {n_iter}")
        self.n_iter = int(n_iter)

    def predict(self, theta: torch.Tensor, dim: int = -1) -> torch.Tensor:
        return _normmax(theta, self.gamma, dim, self.n_iter, name="theta")

    def omega(self, p: torch.Tensor, dim: int = -1) -> torch.Tensor:
        if math.isinf(self.gamma):
            return p.amax(dim) - 1.0
        return torch.linalg.vector_norm(p, ord=self.gamma, dim=dim) - 1.0

    def max_entropy(self, n: int) -> float:
        return 1.0 - 1.0 / n if math.isinf(self.gamma) else 1.0 - n ** (1.0 / self.gamma - 1.0)


class Normmax(nn.Module):
    """Module form of :func:`normmax`."""

    def __init__(self, alpha: float = 2.0, dim: int = -1):
        super().__init__()
        self.alpha = check_gamma(alpha)
        self.dim = dim

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return normmax(z, self.alpha, self.dim)


class NormmaxBisect(nn.Module):
    """``entmax.NormmaxBisect`` drop-in."""

    def __init__(self, alpha: float = 2.0, dim: int = -1, n_iter: int = 50):
        super().__init__()
        self.alpha, self.dim, self.n_iter = alpha, dim, n_iter

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return normmax_bisect(X, self.alpha, self.dim, self.n_iter)


def normmax_loss(input: torch.Tensor, target: torch.Tensor, alpha: float = 2.0, dim: int = -1,
                 reduction: str = "none", ignore_index: int = -100) -> torch.Tensor:
    """The γ-normmax Fenchel-Young loss (per-example by default, as in the entmax package)."""
    return fenchel_young_loss(input, target, NormEntropy(check_gamma(alpha)), dim, reduction, ignore_index)


def normmax_bisect_loss(X: torch.Tensor, target: torch.Tensor, alpha: float = 2.0, n_iter: int = 50,
                        dim: int = -1, reduction: str = "none", ignore_index: int = -100) -> torch.Tensor:
    """``entmax.normmax_bisect_loss`` drop-in."""
    return fenchel_young_loss(X, target, NormEntropy(check_gamma(alpha), n_iter), dim, reduction, ignore_index)


class NormmaxBisectLoss(nn.Module):
    """``entmax.NormmaxBisectLoss`` drop-in (mean reduction by default)."""

    def __init__(self, alpha: float = 2.0, n_iter: int = 50, ignore_index: int = -100,
                 reduction: str = "elementwise_mean", dim: int = -1):
        super().__init__()
        from .entmax import NamedLoss

        self._impl = NamedLoss(NormEntropy(check_gamma(alpha), n_iter), dim, ignore_index, reduction)

    def forward(self, X: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self._impl(X, target)
