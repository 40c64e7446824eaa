"""SparseMAP over k-subsets and constrained sparsemax: projections onto capped simplices (torch fast path).

Both maps are μ = clip(θ − τ, 0, u) with Σ μ = total:

* k-subsets (eq-ksubsets-map): u = 1, total = k (``exactly_k``) — or Σ μ <= k;
* constrained sparsemax (eq-constrained_sparsemax-map): per-entry caps u, total = 1.

The threshold is exact: for k-subsets, safeguarded Newton steps on the
piecewise-linear Σ clip(θ − τ, 0, 1), from the threshold of each row's group
maxima (:func:`hfy._torch._core.capped_threshold_unit`), with the solver's
scratch in the output tensor and integral rows rounded to exactly 0/1 (small
batches are sorted instead); for per-entry caps, sorted breakpoints on top-k
candidate sets (:func:`hfy._torch._core.capped_threshold`).  The backward pass is the
closed-form product with the Jacobian: with F = {0 < μ_i < u_i} (free) and
C = {μ_i = u_i > 0} (capped), ∂L/∂θ = 1_F ⊙ (g − ḡ_F) and ∂L/∂u = 1_C ⊙ (g − ḡ_F)
when the budget is active; with an inactive "at most k" budget, ∂L/∂θ = 1_F ⊙ g.
"""

from __future__ import annotations

import math
import numbers
from typing import Optional, Union

import torch

from .._structures import subset_barycentre
from ._core import (capped_threshold, capped_threshold_unit, check_scores, compute_dtype, finite_min, move_back,
                    move_to_last)
from .fenchel_young import Regularizer

IntLike = Union[int, torch.Tensor]


#: Batches whose largest score exceeds this magnitude are checked for rows with a common offset (:func:`_offsets`).
SHIFT_ABOVE = 8.0


def _offsets(x: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
    """Per row (..., 1), the shift to solve a capped projection with: the row's largest score where all its
    finite scores lie within |largest|/2 of it (a common offset), else 0.

    μ does not change when a row is shifted (Σ μ is fixed), and the threshold and x − τ are then formed
    at the scale of the scores' spread, not of their offset: an offset of 1e4 in float32 costs 5e-3
    otherwise, and 1e16 in float64 everything.  A row whose spread is larger (an outlier such as ±1e30
    among scores of order 1) keeps its scores, since the shift would round away the ones that matter.
    "At most k" rows with a slack budget use the raw scores (they are not shift-invariant)."""
    common = (top - finite_min(x)) <= 0.5 * top.abs()
    return torch.where(common, top, torch.zeros_like(top))


class _CappedProjection(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, upper, total, exactly, want_upper_grad, masked, top=None):
        dtype = compute_dtype(z.dtype)
        raw = x = z.to(dtype)
        top = raw.amax(-1, keepdim=True) if top is None else top.to(dtype)
        if top.numel() and float(top.abs().amax()) > SHIFT_ABOVE:
            c = _offsets(raw, top)
            x, top = raw - c, top - c
        tot = total.to(dtype)
        unit = upper is None  # k-subsets: every cap is 1
        if unit:  # masked entries keep their −inf score: clip(−inf − τ, 0, 1) = 0
            cap_sum = torch.isfinite(x).sum(-1, keepdim=True).to(dtype) if masked else torch.full_like(tot, x.shape[-1])
            u = None
        else:  # masked entries: cap 0 and a finite placeholder score
            u = upper.to(dtype).expand_as(x)
            if masked:
                finite = torch.isfinite(x)
                low = finite_min(x, finite)
                low = torch.where(torch.isfinite(low), low, torch.zeros_like(low))
                x = torch.where(finite, x, low - 1.0)
                u = torch.where(finite, u, torch.zeros_like(u))
            cap_sum = u.sum(-1, keepdim=True)
        full = tot >= cap_sum  # every entry at its cap (e.g. k = number of unmasked scores)
        # the output, first the solver's scratch: contiguous, so that its rows are views (for a moved dim the
        # result is copied back to the layout of the scores at the end)
        out = torch.empty_like(x, memory_format=torch.contiguous_format)
        snap = None  # the (flattened) rows whose k-subsets output is integral up to rounding
        if unit:  # (any total in (0, cap_sum) keeps the solver's problem valid on the full rows)
            tau, snap = capped_threshold_unit(x, torch.where(full, torch.full_like(tot, 0.5), tot), out, masked, top)
        else:
            tau = capped_threshold(x, u, torch.where(full, cap_sum - 1.0, tot).clamp_min(0.0))
        tau = torch.where(full, torch.full_like(tau, -math.inf), tau)
        active = None
        mu = torch.sub(x, tau, out=out).clamp_(0.0, 1.0) if unit else torch.minimum((x - tau).clamp_(min=0.0), u)
        if not exactly:  # (only k-subsets have "at most k")
            slack = raw.clamp(0.0, 1.0)
            inside = slack.sum(-1, keepdim=True) <= tot
            mu = mu.copy_(torch.where(inside, slack, mu))  # (in the solver's contiguous buffer)
            active = ~inside
        if snap is not None and snap.numel():  # round, where that keeps Σ μ = k (full rows and inactive
            flat_mu = mu.view(-1, mu.shape[-1])  # budgets have their own τ)
            rounded = flat_mu.index_select(0, snap).round_()
            keep = (rounded.sum(-1) == tot.reshape(-1).index_select(0, snap)) & ~full.reshape(-1).index_select(0, snap)
            if active is not None:
                keep &= active.reshape(-1).index_select(0, snap)
            keep = keep.nonzero().squeeze(-1)
            flat_mu.index_copy_(0, snap.index_select(0, keep), rounded.index_select(0, keep))
        if masked and (not unit or bool(full.any())):  # −inf − (−inf) on the masked entries of full rows
            mu = torch.where(torch.isfinite(z), mu, torch.zeros_like(mu))
        ctx.unit = unit
        ctx.want_upper_grad = want_upper_grad
        ctx.save_for_backward(mu, u, active)
        if mu.stride() != z.stride():  # the layout of the scores (a dim moved to the last)
            return torch.empty_like(z).copy_(mu)
        return mu.to(z.dtype)

    @staticmethod
    def backward(ctx, grad):
        mu, u, active = ctx.saved_tensors
        g = grad.to(mu.dtype)
        if ctx.unit:  # free entries 0 < μ < 1, without boolean tensors: ceil(μ − μ²) (μ − μ² > 0 there)
            fz = torch.addcmul(mu, mu, mu, value=-1.0).ceil_()
        else:
            fz = ((mu > 0) & (mu < u)).to(g.dtype)
        count = fz.sum(-1, keepdim=True)
        gz = fz * g
        gbar = gz.sum(-1, keepdim=True) / count.clamp_min(1.0)
        if active is not None:  # an inactive "at most k" budget does not couple the entries
            gbar = torch.where(active, gbar, torch.zeros_like(gbar))
        gz.addcmul_(fz, gbar, value=-1.0)  # 1_F ⊙ (g − ḡ_F)
        gu = None
        if ctx.want_upper_grad:
            cz = ((mu >= u) & (u > 0)).to(g.dtype)
            gu = torch.where(count > 0, cz * (g - gbar), torch.zeros_like(g))
            gu = gu.to(grad.dtype)
        # the total moves τ by −1/|F|, and each free entry by 1/|F|: ∂L/∂total = ḡ_F (0 with no free entry)
        gt = gbar.to(grad.dtype) if ctx.needs_input_grad[2] else None
        return gz.to(grad.dtype), gu, gt, None, None, None, None


def _row_param(value, z: torch.Tensor, dim: int, name: str) -> torch.Tensor:
    """A scalar or per-row tensor argument as a (..., 1) tensor aligned with ``z`` moved to the last axis."""
    if isinstance(value, torch.Tensor):
        t = value.to(dtype=compute_dtype(z.dtype), device=z.device)
        if t.dim() > z.dim():
            raise ValueError(f"`{name}` has more dimensions than the scores")
        t = t.reshape((1,) * (z.dim() - t.dim()) + tuple(t.shape))
        if t.shape[dim] != 1:
            raise ValueError(f"`{name}` must have size 1 along dim {dim} (one value per row); got {tuple(value.shape)}")
        shape = list(z.shape)
        shape[dim] = 1
        try:
            t = t.expand(shape)
        except RuntimeError:
            raise ValueError(f"`{name}` of shape {tuple(value.shape)} does not broadcast to the rows of the scores "
                             f"{tuple(shape)}") from None
        return move_to_last(t, dim)
    return torch.full((*move_to_last(z, dim).shape[:-1], 1), float(value), dtype=compute_dtype(z.dtype),
                      device=z.device)


def ksubsets(z: torch.Tensor, k: IntLike, dim: int = -1, exactly_k: bool = True) -> torch.Tensor:
    """SparseMAP over k-subsets along ``dim``: the projection onto {0 <= μ <= 1, Σ μ = k} (eq-ksubsets-map).

    Parameters
    ----------
    z : Tensor, shape (..., N, ...)
        Scores; ``-inf`` masks an entry (output exactly 0).
    k : int or Tensor
        Subset size, a positive int or an integer tensor with size 1 along ``dim`` (one k per row).
        Rows with fewer than k unmasked scores raise ``ValueError``.
    dim : int
    exactly_k : bool
        True: Σ μ = k (the HFY experiments).  False: Σ μ <= k (LP-SparseMAP's budget).

    Returns
    -------
    Tensor
        Marginals in [0, 1]; the indicator of the top k exactly when the k-th and (k+1)-th scores
        differ by at least 1 (the structured margin).  ``hfy.ksubsets(z, 1)`` is sparsemax.

    See Also
    --------
    hfy.reference.ksubsets, hfy.oracle.ksubsets, budget_bisect
    """
    z = check_scores(z, "z", dim)
    if isinstance(k, torch.Tensor):
        if k.dtype == torch.bool or k.is_complex():
            raise ValueError(f"`k` must hold integers; got a {k.dtype} tensor")
        if k.is_floating_point() and not bool((k == k.round()).all()):
            raise ValueError("`k` must hold integers")
        if bool((k < 1).any()):
            raise ValueError("`k` must be >= 1")
    elif isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"`k` must be a positive int or an integer tensor; got {k!r}")
    else:
        k = int(k)
    zl = move_to_last(z, dim)
    kk = _row_param(k, z, dim, "k")
    if zl.numel() == 0:  # an empty batch
        return z * 0.0
    top = zl.amax(-1, keepdim=True)
    if not bool((top < math.inf).all()):  # (a NaN fails the comparison too)
        raise ValueError("`z` contains NaN or +inf; use -inf to mask an entry")
    masked = bool(torch.isneginf(zl.amin()))
    limit = torch.isfinite(zl).sum(-1, keepdim=True) if masked else zl.shape[-1]
    if bool((kk > limit).any()):
        if exactly_k:
            raise ValueError("`k` exceeds the number of unmasked scores in some row (`z` has too many -inf entries)")
        # "at most k" is feasible with fewer unmasked scores: at most all of them
        kk = torch.minimum(kk, torch.as_tensor(limit, dtype=kk.dtype, device=kk.device))
    out = _CappedProjection.apply(zl, None, kk, bool(exactly_k), False, masked, top.to(compute_dtype(z.dtype)))
    return move_back(out, dim)


def budget_bisect(X: torch.Tensor, budget: IntLike = 2, dim: int = -1, n_iter: Optional[int] = None) -> torch.Tensor:
    """``entmax.budget_bisect`` drop-in: exactly-``budget`` k-subsets, but exact and safe with ``-inf`` masks.

    The projection is computed exactly, so ``n_iter`` (kept for compatibility) must be ``None`` or a
    positive int and does not change the result.
    """
    if n_iter is not None and (isinstance(n_iter, bool) or not isinstance(n_iter, int) or n_iter < 1):
        raise ValueError(f"`n_iter` must be None or a positive int; got {n_iter!r}")
    return ksubsets(X, budget, dim, exactly_k=True)


def _bounds(value, z: torch.Tensor, name: str) -> torch.Tensor:
    """Per-entry bounds broadcast to the scores ``z``: finite, >= 0, floating; clear errors naming them."""
    if not isinstance(value, torch.Tensor):
        value = torch.as_tensor(value, dtype=z.dtype, device=z.device)
    if not value.is_floating_point():
        raise TypeError(f"`{name}` must be a floating-point tensor")
    if value.shape != z.shape:
        try:
            value = value.expand_as(z)
        except RuntimeError:
            raise ValueError(f"`{name}` of shape {tuple(value.shape)} does not broadcast to the scores "
                             f"{tuple(z.shape)}") from None
    if bool((value < 0).any()) or not bool(torch.isfinite(value).all()):
        raise ValueError(f"`{name}` must be finite and >= 0")
    return value


def constrained_sparsemax(z: torch.Tensor, upper: torch.Tensor, dim: int = -1,
                          lower: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Projection onto {p in the simplex, lower <= p <= upper} along ``dim`` (eq-constrained_sparsemax-map).

    Differentiable with respect to ``z``, ``upper`` and ``lower``.  With lower bounds (the double-constrained
    version) the projection is clip(z − τ, l, u) = l + clip((z − l) − τ, 0, u − l) with a total of 1 − Σ l:
    the capped projection of z − l, so the same solver serves both.

    Parameters
    ----------
    z : Tensor, shape (..., N, ...)
        Scores; ``-inf`` masks an entry (output 0, like an upper bound of 0; its lower bound is ignored).
    upper : Tensor, broadcastable to ``z``
        Caps u >= 0; the unmasked caps of every row must sum to at least 1 (else ``ValueError``).
    lower : Tensor, broadcastable to ``z``, optional
        Floors 0 <= l <= u; the unmasked floors of every row must sum to at most 1 (else ``ValueError``).

    See Also
    --------
    hfy.reference.constrained_sparsemax, hfy.oracle.constrained_sparsemax
    """
    z = check_scores(z, "z", dim)
    upper = _bounds(upper, z, "upper")
    zl, ul = move_to_last(z, dim), move_to_last(upper, dim)
    if bool(torch.isnan(zl).any()) or bool(torch.isposinf(zl).any()):
        raise ValueError("`z` contains NaN or +inf; use -inf to mask an entry")
    finite = torch.isfinite(zl)
    room = torch.where(finite, ul, torch.zeros_like(ul)).sum(-1)
    if bool((room < 1 - 8 * torch.finfo(room.dtype).eps).any()):
        raise ValueError("infeasible: in some row the unmasked entries of `upper` sum to less than 1")
    total = torch.ones_like(zl[..., :1], dtype=compute_dtype(z.dtype))
    masked = bool(torch.isneginf(zl).any())
    if lower is None:
        out = _CappedProjection.apply(zl, ul, total, True, upper.requires_grad, masked)
        return move_back(out, dim)
    ll = move_to_last(_bounds(lower, z, "lower"), dim)
    if bool((ll > ul).any()):
        raise ValueError("`lower` must be at most `upper` everywhere")
    ll = torch.where(finite, ll, torch.zeros_like(ll))  # (a masked entry's floor does not count)
    floor = ll.sum(-1, keepdim=True).to(total.dtype)
    if bool((floor > 1 + 8 * torch.finfo(floor.dtype).eps).any()):
        raise ValueError("infeasible: in some row the unmasked entries of `lower` sum to more than 1")
    caps = ul - ll
    out = _CappedProjection.apply(zl - ll, caps, (total - floor).clamp_min(0.0), True, caps.requires_grad, masked)
    return move_back(ll + out, dim)


def check_in_polytope(y: torch.Tensor, k: int, exactly_k: bool, dim: int, name: str) -> None:
    """A clear error unless every slice of ``y`` along ``dim`` lies in the k-subsets polytope (up to rounding):
    entries in [0, 1] summing to k (at most k), up to the rounding of the dtype of ``y`` (floating), its sum taken in
    at least float32.  A class index, i.e. a one-hot target, is outside it for k > 1."""
    tol = math.sqrt(torch.finfo(y.dtype).eps) * k
    y = y.to(compute_dtype(y.dtype))
    count = y.sum(dim)
    if bool(((y < -tol) | (y > 1 + tol)).any()) or bool((count > k + tol).any()) or (
            exactly_k and bool(((count - k).abs() > tol).any())):
        raise ValueError(f"`{name}` must lie in the k-subsets polytope: entries in [0, 1] summing to "
                         f"{'' if exactly_k else 'at most '}k = {k} along dim (a class index is not a target for k > 1)")


class KSubsets(Regularizer):
    """SparseMAP over k-subsets as a regulariser: Ω(μ) = ½‖μ‖² on {0 <= μ <= 1, Σ μ = k}.

    Its prediction map is :func:`ksubsets`; the HFY update q ← Xᵀμ then returns the *sum*
    of the retrieved patterns when μ is integral.  The structured margin is 1: the output is
    the indicator of the top k iff the k-th and (k+1)-th scores differ by at least 1.
    The energy's reference point is the barycentre of the structures ((k/N)·1 for exactly k).
    """

    margin = 1.0
    simplex = False
    inf_mask = True
    threshold = True

    def __init__(self, k: int, exactly_k: bool = True):
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"`k` must be a positive int; got {k!r}")
        self.k, self.exactly_k = k, bool(exactly_k)

    def predict(self, theta: torch.Tensor, dim: int = -1) -> torch.Tensor:
        return ksubsets(theta, self.k, dim, self.exactly_k)

    def omega(self, mu: torch.Tensor, dim: int = -1) -> torch.Tensor:
        return 0.5 * (mu * mu).sum(dim)

    def loss(self, theta: torch.Tensor, y: torch.Tensor, dim: int = -1) -> torch.Tensor:
        """L(θ; y) for a target in the domain {0 <= y <= 1, Σ y = k (or <= k)}; a clear error otherwise (a
        class index, i.e. a one-hot target, is outside it for k > 1, and the loss would be negative)."""
        if y.shape == theta.shape:  # (the base class names a shape mismatch)
            check_in_polytope(y.to(theta.dtype), self.k, self.exactly_k, dim, "y")
        return super().loss(theta, y, dim)

    def reference_point(self, n: int, like: torch.Tensor) -> torch.Tensor:
        """The barycentre of the structures: (k/N)·1, or the average of the subsets of at most k entries."""
        return torch.as_tensor(subset_barycentre(n, self.k, self.exactly_k), dtype=like.dtype, device=like.device)

    def max_entropy(self, n: int) -> float:
        raise ValueError("KSubsets has no entropy on the simplex")


class ConstrainedSparsemax(Regularizer):
    """Ω(p) = ½‖p‖² on {p in the simplex, lower <= p <= upper}: the regulariser of :func:`constrained_sparsemax`.

    ``upper`` and the optional ``lower`` (shape (N,) or broadcastable to the scores) are fixed for the
    lifetime of the object;
    within a recall episode this makes the HFY dynamics a descent method for this Ω.
    """

    margin = 1.0
    simplex = False
    inf_mask = True
    #: (its caps belong to positions: the map on the top scores alone, which the sparse update uses for
    #: threshold maps, would need their caps gathered too)
    threshold = False

    def __init__(self, upper: torch.Tensor, lower: Optional[torch.Tensor] = None):
        def as_bounds(value, name):
            if not isinstance(value, torch.Tensor):
                value = torch.as_tensor(value, dtype=torch.get_default_dtype())
            if not value.is_floating_point():
                raise TypeError(f"`{name}` must be a floating-point tensor")
            return value

        self.upper = as_bounds(upper, "upper")
        self.lower = None if lower is None else as_bounds(lower, "lower")

    def predict(self, theta: torch.Tensor, dim: int = -1) -> torch.Tensor:
        lower = None if self.lower is None else self.lower.to(theta.dtype)
        return constrained_sparsemax(theta, self.upper.to(theta.dtype), dim, lower)

    def omega(self, p: torch.Tensor, dim: int = -1) -> torch.Tensor:
        return 0.5 * (p * p).sum(dim)

    def reference_point(self, n: int, like: torch.Tensor) -> torch.Tensor:
        """The point of the domain closest to uniform: constrained sparsemax of zero scores."""
        lower = None if self.lower is None else self.lower.to(dtype=like.dtype, device=like.device).expand(n)
        return constrained_sparsemax(torch.zeros(n, dtype=like.dtype, device=like.device),
                                     self.upper.to(dtype=like.dtype, device=like.device).expand(n), -1, lower)

    def max_entropy(self, n: int) -> float:
        raise ValueError("ConstrainedSparsemax has no entropy on the full simplex")
