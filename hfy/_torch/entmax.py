"""α-entmax and the Tsallis regulariser (torch fast path).

The forward pass solves the threshold equation (eq-entmax-power-root) with the
safeguarded Newton iteration of :mod:`hfy._torch._core` (small batches of
sparsemax and 1.5-entmax are sorted instead); the backward pass is
the closed-form vector-Jacobian product (eq-entmax-jacobian)

    ∂L/∂θ = s ⊙ g − s (sᵀg)/(1ᵀs),     s_i = p_i^(2−α) on the support,

and, when α is a tensor that requires grad, the α-gradient
(eq-entmax-alpha-grad) in a form that stays accurate as α → 1⁺.
"""

from __future__ import annotations

import math
import numbers
from typing import Optional, Union

import torch
from torch import nn

from .._validate import check_alpha, check_reduction
from ._core import check_scores, compute_dtype, indicator, move_back, move_to_last, shift_rows, solve_power_root
from .fenchel_young import Regularizer, fenchel_young_loss
from .softmax import softmax

#: Default cap on root-finding steps; convergence normally takes far fewer.
MAX_ITER = 100

AlphaLike = Union[float, torch.Tensor]


def anchored_entmax(shifted: torch.Tensor, eps, t: torch.Tensor) -> torch.Tensor:
    """α-entmax for α > 2, re-solved relative to the smallest support entry (eq-entmax-anchored).

    With r = 1/ε < 1, an entry at the edge of the support has p_s = b_s^r for a base
    b_s = 1 + ε(x_s − t) that may lie far below the rounding of 1 + ε(x − t) (α = 100:
    p_s = 0.007 needs b_s ≈ 1e-212).  Bases written as b_s + ε(x_i − x_s) stay
    accurate, and p_s = u solves u + Σ_{i≠s} (u^ε + ε(x_i − x_s))^r = 1 on [0, 1].
    Candidates come from the threshold ``t`` widened by rounding; the support is
    the longest prefix (in decreasing score) whose last entry can carry mass.
    Works on the last axis; ``eps`` is a float or a (..., 1) tensor (> 1).
    """
    if shifted.numel() == 0:  # an empty batch
        return torch.zeros_like(shifted)
    ulp = torch.finfo(shifted.dtype).eps
    e = eps if isinstance(eps, torch.Tensor) else torch.full_like(t, eps)
    r = 1.0 / e
    base = 1.0 + e * (shifted - t)
    band = 1e3 * ulp * (1.0 + e * t.abs())
    cand = base > -band
    k = int(cand.sum(-1).max())
    masked = torch.where(cand, shifted, torch.full_like(shifted, -math.inf))
    vals, idx = torch.topk(masked, k, dim=-1, sorted=True)
    vals, e, r = vals.double(), e.double(), r.double()  # a small (rows × k) problem: solve it in float64
    valid = torch.isfinite(vals)
    gaps = (vals.unsqueeze(-1) - vals.unsqueeze(-2)) * e.unsqueeze(-1)  # [i, j] = ε(x_i − x_j)
    before = torch.ones(k, k, dtype=torch.bool, device=vals.device).triu(1)  # i < j
    pair_ok = before & valid.unsqueeze(-1) & valid.unsqueeze(-2)
    powered = torch.where(pair_ok, gaps.clamp_min(0.0), torch.zeros_like(gaps)) ** r.unsqueeze(-1)
    load = torch.where(pair_ok, powered, torch.zeros_like(powered)).sum(-2)  # Σ_{i<j} (ε(x_i − x_j))^r
    s = (((load <= 1.0) & valid).sum(-1, keepdim=True) - 1).clamp_min(0)  # the prefix property: last valid j
    xs = torch.gather(vals, -1, s)
    pos = torch.arange(k, device=vals.device)
    head = pos < s
    g = torch.where(head, e * (vals - xs), torch.zeros_like(vals))
    lo, hi = torch.zeros_like(xs), torch.ones_like(xs)
    for _ in range(64):  # h(u) is increasing in u
        u = 0.5 * (lo + hi)
        tied = head & (g == 0)  # entries tied with s carry mass u each (and (u^ε)^r may underflow)
        terms = torch.where(tied, u.expand_as(g), torch.where(head, (u ** e + g) ** r, torch.zeros_like(g)))
        h = (torch.where(tied, torch.zeros_like(terms), terms).sum(-1, keepdim=True) - 1.0) \
            + (u + torch.where(tied, terms, torch.zeros_like(terms)).sum(-1, keepdim=True))
        lo, hi = torch.where(h < 0, u, lo), torch.where(h < 0, hi, u)
    u = lo  # the largest point known to leave slack: exactly 0 when the last entry carries no mass
    tied = head & (g == 0)
    top = torch.where(head & ~tied, (u ** e + g) ** r, torch.where(tied | (pos == s), u.expand_as(g), torch.zeros_like(g)))
    out = torch.zeros_like(shifted).scatter(-1, idx, top.to(shifted.dtype))
    return out / out.sum(-1, keepdim=True)


#: Sparsemax batches of at most this many scores are sorted (:func:`_sparsemax_sorted`): there a sort and a
#: few operations cost less than the Newton iteration's many small ones (measured on 2 CPU cores: 5 to 9 times
#: less up to 4k scores, 1.2 to 1.4 times less at 16k, about the same at 32k to 64k).
SPARSEMAX_SORT_SIZE = 16384


def _sparsemax_sorted(shifted: torch.Tensor) -> torch.Tensor:
    """Sparsemax of rows with maximum 0 (last axis) by sorting (eq-sparsemax-threshold).

    With the scores sorted in decreasing order and S_j the sum of the first j, the support holds the
    first K entries, K the largest j with 1 + j x_(j) > S_j, and τ = (S_K − 1)/K.  Masked entries
    (−inf) fail the test; an all-masked row gets K = 1 and NaN, which the caller masks.
    """
    ordered = shifted.sort(dim=-1, descending=True).values
    sums = ordered.cumsum(dim=-1)
    j = torch.arange(1, shifted.shape[-1] + 1, dtype=shifted.dtype, device=shifted.device)
    size = (1.0 + j * ordered > sums).sum(dim=-1, keepdim=True).clamp_min(1)
    tau = (sums.gather(-1, size - 1) - 1.0) / size.to(shifted.dtype)
    return (shifted - tau).clamp_(min=0.0)


#: 1.5-entmax batches of at most this many scores are sorted (:func:`_entmax15_sorted`, in float64): 2.5 to 4.5
#: times less time up to 4k scores on 2 CPU cores, the same at 16k, twice as much at 32k.
ENTMAX15_SORT_SIZE = 8192


def _entmax15_sorted(shifted: torch.Tensor) -> torch.Tensor:
    """1.5-entmax of rows with maximum 0 (last axis) by sorting, in float64 where the device has it (eq-entmax-15-sort).

    p = [x/2 − τ]²₊ with Σ p = 1.  With y = x/2 sorted in decreasing order, the threshold of a support of
    the first j entries solves Σ_{i<=j} (y_(i) − τ)² = 1: τ_j = m_j − √((1 − j(q_j − m_j²))/j) from the
    means m_j of y and q_j of y²; τ is τ_j for the largest j with τ_j < y_(j), by a few ulps (as in the
    reference).  Masked entries (−inf) give NaN means and fail the test; an all-masked row gives NaN, which
    the caller masks.  The output is renormalised (float64 rounding).
    """
    wide = torch.float64 if shifted.device.type != "mps" else shifted.dtype  # (MPS has no float64)
    y = shifted.to(wide) * 0.5
    ordered = y.sort(dim=-1, descending=True).values
    j = torch.arange(1, y.shape[-1] + 1, dtype=y.dtype, device=y.device)
    mean = ordered.cumsum(dim=-1) / j
    mean_sq = (ordered * ordered).cumsum(dim=-1) / j
    tau = mean - ((1.0 - j * (mean_sq - mean * mean)) / j).clamp_min(0.0).sqrt()
    # the largest j with τ_j below y_(j) by more than a few ulps: a score tied with the threshold (a lead of
    # exactly the margin) gets no mass, where rounding could give it some
    mag = ordered.abs()
    ulp = torch.nextafter(mag, torch.full_like(mag, math.inf)) - mag
    size = ((tau < ordered - 4.0 * ulp) * j).amax(dim=-1, keepdim=True).clamp_min(1).long()
    p = (y - tau.gather(-1, size - 1)).clamp_min(0.0).square()
    return (p / p.sum(dim=-1, keepdim=True)).to(shifted.dtype)


def _entmax_forward(z: torch.Tensor, eps, max_iter: int, ensure_sum_one: bool) -> torch.Tensor:
    """Entmax along the last axis in the compute dtype; ``eps`` = α − 1 (float or (..., 1) tensor)."""
    x = z.to(compute_dtype(z.dtype))
    shifted, _, dead = shift_rows(x)
    sort = None
    # (the bisection-compatible entry points, with their own iteration count or no renormalisation, keep the
    # iteration: ``n_iter`` and ``ensure_sum_one`` are theirs to honour)
    if not isinstance(eps, torch.Tensor) and max_iter == MAX_ITER and ensure_sum_one:
        if eps == 1.0 and x.numel() <= SPARSEMAX_SORT_SIZE:
            sort = _sparsemax_sorted
        elif eps == 0.5 and x.numel() <= ENTMAX15_SORT_SIZE:
            sort = _entmax15_sorted
    if sort is not None:  # a small batch
        p = sort(shifted)
        return (p if dead is None else p.masked_fill(dead, 0.0)).to(z.dtype)
    r = (1.0 / eps) if not isinstance(eps, torch.Tensor) else 0.0
    t, p, _, converged = solve_power_root(shifted, eps, r, softmax_limit=True, max_iter=max_iter)
    big = (eps > 1.0) if not isinstance(eps, torch.Tensor) else bool((eps > 1.0).any())
    if big and converged:
        safe = shifted if dead is None else shifted.masked_fill(dead, 0.0)
        e_safe = eps if not isinstance(eps, torch.Tensor) else torch.where(eps > 1.0, eps, torch.full_like(eps, 2.0))
        polished = anchored_entmax(safe, e_safe, t)
        if isinstance(eps, torch.Tensor):
            polished = torch.where(eps > 1.0, polished, p / p.sum(-1, keepdim=True))
        p = polished
        if dead is not None:
            p = p.masked_fill(dead, 0.0)
        return p.to(z.dtype)
    if converged and not isinstance(eps, torch.Tensor) and eps == 1.0:
        # sparsemax: with the support S known, τ = (Σ_S x − 1)/|S| in closed form
        # (eq-sparsemax-threshold); this is as accurate as sorting and needs no renormalisation.
        support = indicator(p)
        size = support.sum(dim=-1, keepdim=True).clamp_min(1.0)
        tau = (shifted.clamp(min=-1.0).mul_(support).sum(dim=-1, keepdim=True) - 1.0) / size
        p = (shifted - tau).clamp_(min=0.0)
    elif ensure_sum_one:
        p = p / p.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(p.dtype).tiny)
    if dead is not None:
        p = p.masked_fill(dead, 0.0)
    return p.to(z.dtype)


def _support_weights(p: torch.Tensor, eps) -> torch.Tensor:
    """s = p^(1−ε) = p^(2−α) on the support, 0 elsewhere (differentiable at p > 0)."""
    if not isinstance(eps, torch.Tensor):
        if eps == 1.0:
            return indicator(p)
        if eps == 0.0:
            return p
        if eps < 1.0 and not torch.is_grad_enabled():
            return torch.pow(p, 1.0 - eps)  # 0^(positive) = 0; fast, but not twice differentiable at 0
    pos = p > 0
    safe = torch.where(pos, p, torch.ones_like(p))
    return torch.where(pos, torch.exp((1.0 - eps) * torch.log(safe)), torch.zeros_like(p))


def _phi2(x: torch.Tensor) -> torch.Tensor:
    """(exp(x) − 1 − x)/x², with a series below |x| = 1e-3."""
    small = x.abs() < 1e-3
    xs = torch.where(small, torch.ones_like(x), x)
    direct = (torch.expm1(xs) - xs) / (xs * xs)
    series = 0.5 + x / 6.0 + x * x / 24.0 + x * x * x / 120.0
    return torch.where(small, series, direct)


def entmax_alpha_grad(p: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """∂p/∂α along the last axis for entmax outputs ``p`` at ε = α − 1 >= 0 (eq-entmax-alpha-grad).

    For ε < 1/2 we use the cancellation-free form
    p_i/w̄ [c̄ − c_i + ε (h c_i − ℓ_i c̄)] with ℓ = log p, h = Σ p ℓ,
    c_i = ℓ_i² φ₂(−ε ℓ_i), φ₂(x) = (eˣ − 1 − x)/x², w̄ = 1 + Σ p (e^(−εℓ) − 1);
    above it, the textbook form (p − p̃)/ε² − (p ℓ − p̃ h)/ε with p̃ ∝ p^(1−ε).
    """
    pos = p > 0
    ell = torch.where(pos, torch.log(torch.where(pos, p, torch.ones_like(p))), torch.zeros_like(p))
    h = (p * ell).sum(-1, keepdim=True)
    near = eps < 0.5
    # near α = 1
    ea = torch.where(near, eps, torch.zeros_like(eps))
    x = -ea * ell
    c = ell * ell * _phi2(x)
    cbar = (p * c).sum(-1, keepdim=True)
    wbar = 1.0 + (p * torch.expm1(x)).sum(-1, keepdim=True)
    d_near = p / wbar * (cbar - c + ea * (h * c - ell * cbar))
    # away from α = 1
    eb = torch.where(near, torch.ones_like(eps), eps)
    logs = torch.where(pos, (1.0 - eb) * ell, torch.full_like(p, -math.inf))
    ptil = torch.softmax(logs, dim=-1)
    ptil = torch.where(pos, ptil, torch.zeros_like(p))
    d_far = (p - ptil) / (eb * eb) - (p * ell - ptil * h) / eb
    return torch.where(pos, torch.where(near, d_near, d_far), torch.zeros_like(p))


class _EntmaxFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, alpha, eps, max_iter, ensure_sum_one):
        e = (alpha.to(compute_dtype(z.dtype)) - 1.0) if alpha is not None else eps
        p = _entmax_forward(z, e, max_iter, ensure_sum_one)
        ctx.eps = eps
        ctx.save_for_backward(p, alpha)
        return p

    @staticmethod
    def backward(ctx, grad):
        p, alpha = ctx.saved_tensors
        dtype = compute_dtype(p.dtype)
        pc, g = p.to(dtype), grad.to(dtype)
        eps = (alpha.to(dtype) - 1.0) if alpha is not None else ctx.eps
        s = _support_weights(pc, eps)
        ssum = s.sum(-1, keepdim=True)
        ssum = torch.where(ssum > 0, ssum, torch.ones_like(ssum))  # all-masked rows: s = 0
        gz = s * g
        coef = gz.sum(-1, keepdim=True) / ssum
        if torch.is_grad_enabled():  # double backward: stay out of place
            gz = gz - s * coef
        else:
            gz.addcmul_(s, coef, value=-1.0)
        big = (eps > 1.0) if not isinstance(eps, torch.Tensor) else bool((eps > 1.0).any())
        if big:
            # α > 2: s = p^(2−α) is huge at the edge of the support, and s_m (g_m − ḡ) cancels
            # for the dominant entry m; there it equals s_m Σ_j s_j (g_m − g_j) / Σ s exactly
            m = s.argmax(-1, keepdim=True)
            s_m, g_m = s.gather(-1, m), g.gather(-1, m)
            exact = s_m * (s * (g_m - g)).sum(-1, keepdim=True) / ssum
            gz = gz.scatter(-1, m, exact)
        galpha = None
        if alpha is not None and ctx.needs_input_grad[1]:
            e = eps if isinstance(eps, torch.Tensor) else torch.full_like(pc[..., :1], eps)
            galpha = (g * entmax_alpha_grad(pc, e.expand_as(pc[..., :1]))).sum(-1, keepdim=True).to(alpha.dtype)
        return gz.to(grad.dtype), galpha, None, None, None


def _alpha_tensor(alpha: torch.Tensor, z: torch.Tensor, dim: int) -> torch.Tensor:
    """Validate a tensor α and broadcast it to z's shape with size 1 along ``dim``."""
    if not alpha.is_floating_point():
        raise TypeError(f"`alpha` must be a float or a floating tensor; got dtype {alpha.dtype}")
    if bool(torch.isnan(alpha).any()) or bool((alpha < 1).any()) or bool(torch.isinf(alpha).any()):
        raise ValueError("`alpha` must satisfy 1 <= alpha < inf everywhere (alpha = 1 is softmax)")
    target = list(z.shape)
    target[dim] = 1
    if alpha.dim() > z.dim():
        raise ValueError(f"`alpha` with shape {tuple(alpha.shape)} has more dimensions than `z` {tuple(z.shape)}")
    full = alpha.reshape((1,) * (z.dim() - alpha.dim()) + tuple(alpha.shape))
    if full.shape[dim] != 1:
        raise ValueError(f"`alpha` must have size 1 along dim {dim} (one α per row); got shape {tuple(alpha.shape)}")
    try:
        return full.expand(target)
    except RuntimeError as err:
        raise ValueError(
            f"`alpha` with shape {tuple(alpha.shape)} does not broadcast to {tuple(target)}"
        ) from err


def _entmax(z, alpha, dim, max_iter, ensure_sum_one, name="z"):
    z = check_scores(z, name, dim)
    if isinstance(alpha, torch.Tensor):
        a = _alpha_tensor(alpha, z, dim)
        if not a.requires_grad and a.numel() and bool((a == a.flatten()[0]).all()):
            alpha = float(a.flatten()[0])  # a constant tensor: use the scalar fast paths
        else:
            out = _EntmaxFunction.apply(move_to_last(z, dim), move_to_last(a, dim), None, max_iter, ensure_sum_one)
            return move_back(out, dim)
    alpha = check_alpha(alpha)
    if math.isinf(alpha):
        raise ValueError("`alpha` must be finite for entmax; use a large value such as 100 for an argmax-like map")
    if alpha == 1.0:
        return softmax(z, dim)
    out = _EntmaxFunction.apply(move_to_last(z, dim), None, alpha - 1.0, max_iter, ensure_sum_one)
    return move_back(out, dim)


def entmax(z: torch.Tensor, alpha: AlphaLike = 1.5, dim: int = -1) -> torch.Tensor:
    """α-entmax along ``dim`` for any α >= 1 (eq-entmax-map).

    Parameters
    ----------
    z : Tensor, shape (..., N, ...)
        Scores, any floating dtype (half precision is solved in float32);
        ``-inf`` masks an entry; an all-masked row maps to zeros.
    alpha : float or Tensor
        α >= 1.  α = 1 is exactly softmax, α = 2 is sparsemax.  A tensor α must
        broadcast to ``z`` with size 1 along ``dim`` (one α per row or per head)
        and may require grad: the α-gradient is exact and stable near α = 1.
    dim : int
        The axis of the N scores.

    Returns
    -------
    Tensor, same shape and dtype as ``z``
        Sparse probabilities along ``dim``; exactly one-hot when the top score
        leads the others by at least the margin 1/(α − 1).

    See Also
    --------
    hfy.reference.entmax, hfy.oracle.entmax : the twins in the other layers.
    Tsallis : the regulariser whose prediction map this is.
    """
    return _entmax(z, alpha, dim, MAX_ITER, True)


def sparsemax(z: torch.Tensor, dim: int = -1, k: Optional[int] = None) -> torch.Tensor:
    """Sparsemax along ``dim``: the Euclidean projection onto the simplex (eq-sparsemax-map).

    The support is found by Newton's method on the threshold, which for
    sparsemax is Michelot's finite algorithm (small batches, of at most
    ``SPARSEMAX_SORT_SIZE`` scores, are sorted): the result is exact.  ``k`` is
    accepted for compatibility with ``entmax.sparsemax`` (a partial-sort hint
    there) and is not needed here; it must be ``None`` or a positive int.

    See Also
    --------
    hfy.reference.sparsemax, hfy.oracle.sparsemax : the twins in the other layers.
    """
    _check_k(k)
    return _entmax(z, 2.0, dim, MAX_ITER, True)


def entmax15(z: torch.Tensor, dim: int = -1, k: Optional[int] = None) -> torch.Tensor:
    """1.5-entmax along ``dim`` (``entmax.entmax15`` drop-in; ``k`` as in :func:`sparsemax`)."""
    _check_k(k)
    return _entmax(z, 1.5, dim, MAX_ITER, True)


def entmax_bisect(X: torch.Tensor, alpha: AlphaLike = 1.5, dim: int = -1, n_iter: int = 50,
                  ensure_sum_one: bool = True) -> torch.Tensor:
    """``entmax.entmax_bisect`` drop-in: α-entmax for any α >= 1.

    ``n_iter`` caps the number of root-finding steps (safeguarded Newton, not
    blind bisection: a few steps reach machine precision); ``ensure_sum_one``
    renormalises the output.  Unlike the original, α = 1 gives softmax.
    """
    if isinstance(n_iter, bool) or not isinstance(n_iter, numbers.Integral) or n_iter < 1:
        raise ValueError(f"`n_iter` must be a positive int; got {n_iter!r}")
    return _entmax(X, alpha, dim, int(n_iter), bool(ensure_sum_one), name="X")


def sparsemax_bisect(X: torch.Tensor, dim: int = -1, n_iter: int = 50, ensure_sum_one: bool = True) -> torch.Tensor:
    """``entmax.sparsemax_bisect`` drop-in (here ``n_iter`` and ``ensure_sum_one`` are honoured)."""
    return entmax_bisect(X, 2.0, dim, n_iter, ensure_sum_one)


def _check_k(k) -> None:
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise ValueError(f"`k` must be None or a positive int; got {k!r}")


class Tsallis(Regularizer):
    """Tsallis α-negentropy Ω(p) = (Σ p^α − 1)/(α(α − 1)) on the simplex (eq-entmax-omega).

    α = 1 is the Shannon limit; ŷ_Ω is α-entmax; the margin is 1/(α − 1).
    """

    def __init__(self, alpha: float = 1.5):
        self.alpha = check_alpha(alpha)
        if math.isinf(self.alpha):
            raise ValueError("`alpha` must be finite for Tsallis")

    @property
    def margin(self) -> float:  # type: ignore[override]
        return math.inf if self.alpha == 1.0 else 1.0 / (self.alpha - 1.0)

    def predict(self, theta: torch.Tensor, dim: int = -1) -> torch.Tensor:
        return entmax(theta, self.alpha, dim)

    def omega(self, p: torch.Tensor, dim: int = -1) -> torch.Tensor:
        a = self.alpha
        if a == 1.0:
            from .fenchel_young import xlogx

            return xlogx(p).sum(dim)
        # Σ p (p^(α−1) − 1) = Σ p^α − 1 on the simplex, without the cancellation near α = 1
        pos = p > 0
        safe = torch.where(pos, p, torch.ones_like(p))
        terms = torch.where(pos, p * torch.expm1((a - 1.0) * torch.log(safe)), torch.zeros_like(p))
        return terms.sum(dim) / (a * (a - 1.0))

    def max_entropy(self, n: int) -> float:
        a = self.alpha
        return math.log(n) if a == 1.0 else (1.0 - n ** (1.0 - a)) / (a * (a - 1.0))


class Entmax(nn.Module):
    """Module form of :func:`entmax` with a fixed α."""

    def __init__(self, alpha: float = 1.5, dim: int = -1):
        super().__init__()
        self.alpha = check_alpha(alpha)
        self.dim = dim

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return entmax(z, self.alpha, self.dim)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, dim={self.dim}"


class Sparsemax(nn.Module):
    """Module form of :func:`sparsemax` (``entmax.Sparsemax`` drop-in)."""

    def __init__(self, dim: int = -1, k: Optional[int] = None):
        super().__init__()
        _check_k(k)
        self.dim, self.k = dim, k

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return sparsemax(z, self.dim)


class Entmax15(nn.Module):
    """Module form of :func:`entmax15` (``entmax.Entmax15`` drop-in)."""

    def __init__(self, dim: int = -1, k: Optional[int] = None):
        super().__init__()
        _check_k(k)
        self.dim, self.k = dim, k

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return entmax15(z, self.dim)


class EntmaxBisect(nn.Module):
    """``entmax.EntmaxBisect`` drop-in."""

    def __init__(self, alpha: AlphaLike = 1.5, dim: int = -1, n_iter: int = 50):
        super().__init__()
        self.alpha, self.dim, self.n_iter = alpha, dim, n_iter

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return entmax_bisect(X, self.alpha, self.dim, self.n_iter)


class SparsemaxBisect(nn.Module):
    """``entmax.SparsemaxBisect`` drop-in (``n_iter`` caps the root-finding steps and is honoured)."""

    def __init__(self, dim: int = -1, n_iter: Optional[int] = None):
        super().__init__()
        self.dim, self.n_iter = dim, n_iter

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return sparsemax_bisect(X, self.dim, self.n_iter if self.n_iter is not None else 50)


class LearnableEntmax(nn.Module):
    """α-entmax with a learnable α = 1 + softplus(ρ), so α > 1 by construction.

    Parameters
    ----------
    alpha_init : float
        Initial α (> 1).
    shape : tuple of int
        Shape of the α tensor: ``()`` for one α, ``(H, 1, 1)`` for one per head of
        scores shaped (B, H, Q, N), and so on (size 1 along ``dim``).
    dim : int
        The axis of the scores.
    """

    def __init__(self, alpha_init: float = 1.5, shape=(), dim: int = -1):
        super().__init__()
        alpha_init = check_alpha(alpha_init, name="alpha_init")
        if alpha_init <= 1.0 or math.isinf(alpha_init):
            raise ValueError(f"`alpha_init` must be finite and > 1; got {alpha_init}")
        rho = math.log(math.expm1(alpha_init - 1.0))
        self.rho = nn.Parameter(torch.full(tuple(shape), rho))
        self.dim = dim

    @property
    def alpha(self) -> torch.Tensor:
        return 1.0 + nn.functional.softplus(self.rho)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return entmax(z, self.alpha.to(z.dtype), self.dim)


# --- losses ------------------------------------------------------------------------------------------

def entmax_loss(input: torch.Tensor, target: torch.Tensor, alpha: float = 1.5, dim: int = -1,
                reduction: str = "none", ignore_index: int = -100) -> torch.Tensor:
    """The α-entmax (Tsallis) Fenchel-Young loss; per-example by default, as in the entmax package."""
    return fenchel_young_loss(input, target, Tsallis(alpha), dim, reduction, ignore_index)


def sparsemax_loss(X: torch.Tensor, target: torch.Tensor, k: Optional[int] = None, dim: int = -1,
                   reduction: str = "none", ignore_index: int = -100) -> torch.Tensor:
    """``entmax.sparsemax_loss`` drop-in (Tsallis α = 2)."""
    _check_k(k)
    return fenchel_young_loss(X, target, Tsallis(2.0), dim, reduction, ignore_index)


def entmax15_loss(X: torch.Tensor, target: torch.Tensor, k: Optional[int] = None, dim: int = -1,
                  reduction: str = "none", ignore_index: int = -100) -> torch.Tensor:
    """``entmax.entmax15_loss`` drop-in (Tsallis α = 1.5)."""
    _check_k(k)
    return fenchel_young_loss(X, target, Tsallis(1.5), dim, reduction, ignore_index)


def entmax_bisect_loss(X: torch.Tensor, target: torch.Tensor, alpha: float = 1.5, n_iter: int = 50,
                       dim: int = -1, reduction: str = "none", ignore_index: int = -100) -> torch.Tensor:
    """``entmax.entmax_bisect_loss`` drop-in.  ``n_iter`` caps the root-finding steps."""
    return fenchel_young_loss(X, target, _TsallisIter(alpha, n_iter), dim, reduction, ignore_index)


def sparsemax_bisect_loss(X: torch.Tensor, target: torch.Tensor, n_iter: int = 50, dim: int = -1,
                          reduction: str = "none", ignore_index: int = -100) -> torch.Tensor:
    """``entmax.sparsemax_bisect_loss`` drop-in."""
    return entmax_bisect_loss(X, target, 2.0, n_iter, dim, reduction, ignore_index)


class _TsallisIter(Tsallis):
    """Tsallis whose prediction map uses a capped number of root-finding steps."""

    def __init__(self, alpha: float, n_iter: int):
        super().__init__(alpha)
        if int(n_iter) < 1:
            raise ValueError(f"`n_iter` must be a positive int; got {n_iter}")
        self.n_iter = int(n_iter)

    def predict(self, theta: torch.Tensor, dim: int = -1) -> torch.Tensor:
        return entmax_bisect(theta, self.alpha, dim, self.n_iter)


class NamedLoss(nn.Module):
    """Loss modules named as in the entmax package (mean reduction by default, like CrossEntropyLoss)."""

    def __init__(self, regularizer: Regularizer, dim: int = -1, ignore_index: int = -100,
                 reduction: str = "elementwise_mean"):
        super().__init__()
        self.regularizer = regularizer
        self.dim, self.ignore_index = dim, ignore_index
        self.reduction = check_reduction(reduction)

    def forward(self, X: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return fenchel_young_loss(X, target, self.regularizer, self.dim, self.reduction, self.ignore_index)


class SparsemaxLoss(NamedLoss):
    """``entmax.SparsemaxLoss`` drop-in."""

    def __init__(self, k: Optional[int] = None, ignore_index: int = -100, reduction: str = "elementwise_mean",
                 dim: int = -1):
        _check_k(k)
        super().__init__(Tsallis(2.0), dim, ignore_index, reduction)


class Entmax15Loss(NamedLoss):
    """``entmax.Entmax15Loss`` drop-in."""

    def __init__(self, k: Optional[int] = None, ignore_index: int = -100, reduction: str = "elementwise_mean",
                 dim: int = -1):
        _check_k(k)
        super().__init__(Tsallis(1.5), dim, ignore_index, reduction)


class EntmaxBisectLoss(NamedLoss):
    """``entmax.EntmaxBisectLoss`` drop-in."""

    def __init__(self, alpha: float = 1.5, n_iter: int = 50, ignore_index: int = -100,
                 reduction: str = "elementwise_mean", dim: int = -1):
        super().__init__(_TsallisIter(alpha, n_iter), dim, ignore_index, reduction)


class SparsemaxBisectLoss(EntmaxBisectLoss):
    """``entmax.SparsemaxBisectLoss`` drop-in."""

    def __init__(self, n_iter: int = 50, ignore_index: int = -100, reduction: str = "elementwise_mean",
                 dim: int = -1):
        super().__init__(2.0, n_iter, ignore_index, reduction, dim)
