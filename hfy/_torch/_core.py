"""Shared machinery of the torch fast path.

Every threshold map of hfy (α-entmax for any α >= 1, γ-normmax for any γ > 1)
reduces to one scalar equation per row.  With scores shifted so that their
maximum is 0,

    F(t) = Σ_i [1 + c (x_i − t)]_+^r = 1,      t ∈ [0, (1 − N^(−1/r)) / c]      (eq-entmax-power-root)

* α-entmax: c = α − 1 and r = 1/(α − 1); as c → 0 the summand tends to
  exp(x_i − t), so softmax is the member c = 0 of the same family.
* γ-normmax: c = 1 and r = γ/(γ − 1) (here t = τ + 1).

We solve it with Newton's method on φ(t) = (F(t)^(1/r) − 1) / c, started at
t = 0.  φ is convex and decreasing for r >= 1, because F^(1/r) is the r-norm of
the vector [1 + c (x − t)]_+, which is convex in t.  Newton from the left
therefore increases monotonically to the root, discovers the support
(entries leave it and never come back) and then converges quadratically.  It
is exact after one step when all support scores are equal, and for r = 1
(sparsemax) it is Michelot's finite algorithm.  A bisection bracket guards
the iteration for r < 1 (α > 2), where φ is not convex.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple, Union

import torch

Scalar = Union[float, torch.Tensor]

_HALF = (torch.float16, torch.bfloat16)


def check_scores(z, name: str = "z", dim: int = -1) -> torch.Tensor:
    """Validate a score tensor: floating dtype, at least 1-D, non-empty ``dim``."""
    if not isinstance(z, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor; got {type(z).__name__}")
    if not z.is_floating_point():
        raise TypeError(f"`{name}` must have a floating dtype; got {z.dtype}")
    if z.dim() == 0:
        raise ValueError(f"`{name}` must have at least one dimension")
    if not -z.dim() <= dim < z.dim():
        raise ValueError(f"`dim`={dim} is out of range for `{name}` with {z.dim()} dimension(s)")
    if z.shape[dim] == 0:
        raise ValueError(f"`{name}` has an empty dimension {dim}: a map needs at least one score")
    return z


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Half-precision inputs are solved in float32 and cast back at the end."""
    return torch.float32 if dtype in _HALF else dtype


def shift_rows(x: torch.Tensor, name: str = "z") -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """Subtract each row's max (last axis); report all-masked rows.

    Returns ``(shifted, row_max, dead)`` where ``dead`` is a boolean
    ``(..., 1)`` mask of rows whose entries are all ``-inf`` (or ``None`` if there
    are none).  NaN and ``+inf`` scores raise ``ValueError``: ``-inf`` is the only
    non-finite score with a meaning (masked).
    """
    m = x.amax(dim=-1, keepdim=True)
    dead = None
    bad = ~torch.isfinite(m)
    if bool(bad.any()):
        if bool(torch.isnan(m).any()):
            raise ValueError(f"`{name}` contains NaN")
        if bool(torch.isposinf(m).any()):
            raise ValueError(f"`{name}` contains +inf; use -inf to mask an entry")
        dead = torch.isneginf(m)
        m = m.masked_fill(dead, 0.0)
    return x - m, m, dead


def indicator(v: torch.Tensor) -> torch.Tensor:
    """1 where ``v > 0`` and 0 where ``v == 0``, for ``v >= 0`` (no boolean tensor)."""
    return v.clamp(max=1.0).ceil_()


def _expm1_ratio(a: Scalar, logf: torch.Tensor) -> torch.Tensor:
    """(1 − F^(−a)) / a with F = exp(logf), continuous at a = 0 (value: log F)."""
    if isinstance(a, torch.Tensor):
        safe = torch.where(a > 0, a, torch.ones_like(a))
        return torch.where(a > 0, -torch.expm1(-a * logf) / safe, logf)
    if a == 0:
        return logf
    return -torch.expm1(-a * logf) / a


#: Below this c = α − 1, entmax terms are computed as exp(log1p(c u)/c).
SMALL_C = 0.125


def lift(x: torch.Tensor, c: float) -> torch.Tensor:
    """y = 1 + c x, computed once per solve.

    Each Newton step then forms the base as y − c t: for entries near the
    threshold the two terms are close, so the subtraction is exact and the
    output keeps the accuracy of the input (forming x + (1 − c t) instead
    would round 1 − c t to the precision of 1).
    """
    return torch.mul(x, c).add_(1.0) if c != 1 else x + 1.0


def _terms(x: torch.Tensor, t: torch.Tensor, c: Scalar, r: Scalar, softmax_limit: bool,
           work: Optional[Tuple[torch.Tensor, torch.Tensor]] = None, lifted: Optional[torch.Tensor] = None):
    """The summands P_i = [1 + c(x_i − t)]_+^r and their slopes Q_i = [·]_+^(r−1).

    ``softmax_limit`` selects the entmax family (c = α − 1, r = 1/c, with the
    c → 0 limit exp(x − t)); otherwise c and r are free (normmax: c = 1).

    The scalar paths write into the two ``work`` buffers (shaped like ``x``)
    when given, and avoid boolean masks, ``torch.where`` and log/sqrt of exact
    zeros, all slow on CPU: the positive part is a clamp, the support
    indicator is ceil(min(base, 1)), and other exponents use ``torch.pow``,
    for which 0^(r−1) = 0 exactly.  The returned tensors may alias ``work``.
    """
    if isinstance(c, torch.Tensor):
        # per-row α: the log domain covers every c >= 0 at once (c = 0 is softmax)
        u = x - t
        cu = c * u
        pos = cu > -1
        safe_c = torch.where(c > 0, c, torch.ones_like(c))
        log_base = torch.log1p(torch.where(pos, cu, torch.zeros_like(cu)))
        lp = torch.where(c > 0, log_base / safe_c, u)
        p = torch.where(pos, torch.exp(lp), torch.zeros_like(u))
        return p, p / torch.where(pos, 1.0 + cu, torch.ones_like(cu))
    if softmax_limit and c == 0:
        p = torch.exp(x - t)
        return p, p
    if softmax_limit and c < SMALL_C:
        # α near 1: [1 + c u]^(1/c) = exp(log1p(c u)/c); forming 1 + c u first would
        # round away c u and with it the scores (the error grows like ulp/c)
        cu = (x - t).mul_(c)
        pos = cu > -1.0
        lp = torch.log1p(torch.where(pos, cu, torch.zeros_like(cu))).div_(c)
        p = torch.where(pos, torch.exp(lp), torch.zeros_like(cu))
        return p, p / torch.where(pos, cu.add_(1.0), torch.ones_like(cu))
    if work is None:
        work = (torch.empty_like(x), torch.empty_like(x))
    if lifted is None:
        lifted = lift(x, c)
    base, other = work
    # base = [1 + c (x − t)]_+ = [y − c t]_+ with y = 1 + c x, built in place
    torch.sub(lifted, t if c == 1 else c * t, out=base).clamp_(min=0.0)
    if r == 1:
        return base, torch.clamp(base, max=1.0, out=other).ceil_()
    if r == 2:
        return torch.mul(base, base, out=other), base
    if r > 1:
        q = torch.pow(base, r - 1.0, out=other)
        return base.mul_(q), q
    # 0 < r < 1 (α > 2): the slope blows up at the edge of the support; mask explicitly
    pos = base > 0
    safe = torch.where(pos, base, torch.ones_like(base))
    p = torch.where(pos, torch.exp(r * torch.log(safe)), torch.zeros_like(base))
    return p, p / safe


def solve_power_root(
    x: torch.Tensor,
    c: Scalar,
    r: float,
    *,
    softmax_limit: bool,
    max_iter: int = 100,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]:
    """Solve (eq-entmax-power-root) for every row of ``x`` (last axis, max 0, -inf masked).

    In the entmax family (``softmax_limit=True``) ``r`` is ignored and taken to
    be 1/c; ``c`` may then be a tensor of shape (..., 1) (per-row α).
    Returns ``(t, P, Q, converged)``: the root and, at the root, the summands
    and their slopes, and whether every row converged within ``max_iter``.  ``max_iter`` caps the number of safeguarded Newton steps; the
    iteration normally stops much earlier, once no row's step exceeds a few
    ulps.
    """
    n = x.shape[-1]
    dtype = x.dtype
    tiny = torch.finfo(dtype).tiny
    ulp = torch.finfo(dtype).eps
    log_n = torch.full_like(x[..., :1], math.log(n))
    # a = 1/r: the exponent of the norm whose Newton step we take
    a: Scalar = c if softmax_limit else 1.0 / r
    # right end of the bracket: every summand is <= 1/N there
    if softmax_limit:
        hi = _expm1_ratio(c, log_n)
    else:
        hi = -torch.expm1(-a * log_n) / c
    hi = hi.expand(*x.shape[:-1], 1).clone()
    lo = torch.zeros_like(hi)
    t = torch.zeros_like(hi)
    converged = False
    work = (torch.empty_like(x), torch.empty_like(x))
    plain = isinstance(c, torch.Tensor) or (softmax_limit and c < SMALL_C)
    lifted = None if plain else lift(x, c)
    for _ in range(max(int(max_iter), 1)):
        p, q = _terms(x, t, c, r, softmax_limit, work, lifted)
        f = p.sum(dim=-1, keepdim=True)
        s = q.sum(dim=-1, keepdim=True)
        above = f >= 1
        lo = torch.where(above, t, lo)
        hi = torch.where(above, hi, t)
        # Newton on φ = F^a − 1, φ' = −c F^(a−1) S:   Δt = F (1 − F^(−a)) / (c S)
        # with (1 − F^(−a)) = a · ratio; in the entmax family a = c cancels.
        ratio = _expm1_ratio(a, torch.log(f.clamp_min(tiny)))
        if softmax_limit:
            step = f * ratio / s.clamp_min(tiny)
        else:
            step = f * (a * ratio) / (c * s).clamp_min(tiny)
        t_new = t + step
        # a step must land in (lo, hi] (or not move at all): landing back on lo, a point
        # already evaluated, can make Newton cycle when φ is not convex (α > 2); the root
        # can be hi itself (tied scores put it exactly on the initial bound)
        inside = ((t_new > lo) & (t_new <= hi)) | (t_new == t)
        t_new = torch.where(inside, t_new, 0.5 * (lo + hi))
        moved = (t_new - t).abs()
        t = t_new
        if not bool((moved > 4 * ulp * (1.0 + t.abs())).any()):
            converged = True
            break
    p, q = _terms(x, t, c, r, softmax_limit, work, lifted)
    return t, p, q, converged


def move_to_last(z: torch.Tensor, dim: int) -> torch.Tensor:
    return z if dim in (-1, z.dim() - 1) else z.movedim(dim, -1)


def move_back(z: torch.Tensor, dim: int) -> torch.Tensor:
    return z if dim in (-1, z.dim() - 1) else z.movedim(-1, dim)


def capped_threshold_sorted(x: torch.Tensor, u: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
    """τ with Σ_i clip(x_i − τ, 0, u_i) = total per row, by searching the 2N sorted breakpoints (eq-ksubsets-breakpoints).

    ``x`` (..., N) finite, ``u`` (..., N) >= 0, ``total`` (..., 1) with
    0 < total < Σ u.  g(τ) = Σ clip(x_i − τ, 0, u_i) is piecewise linear and
    non-increasing with breakpoints {x_i − u_i} ∪ {x_i}.  A binary search over
    the sorted breakpoints (each probe evaluates g directly, so scores of any
    magnitude are safe) finds the segment where g crosses ``total``; on it, with
    C = {x_i − τ >= u_i} and F = {0 < x_i − τ < u_i}, τ = (Σ_F x_i + Σ_C u_i − total)/|F|.
    When F is empty the crossing is a flat piece and we return its midpoint, so
    that the output is exactly 0 or u_i.
    """
    n = x.shape[-1]
    pts = torch.sort(torch.cat([x - u, x], dim=-1), dim=-1).values
    lo = torch.zeros_like(total, dtype=torch.long)
    hi = torch.full_like(lo, 2 * n - 1)
    for _ in range(max(1, math.ceil(math.log2(2 * n)) + 1)):  # invariant: g(pts[lo]) >= total
        mid = (lo + hi + 1) // 2
        g = torch.minimum((x - torch.gather(pts, -1, mid)).clamp_min(0.0), u).sum(-1, keepdim=True)
        up = g >= total
        lo = torch.where(up, mid, lo)
        hi = torch.where(up, hi, mid - 1)
    left = torch.gather(pts, -1, lo)
    right = torch.gather(pts, -1, (lo + 1).clamp(max=2 * n - 1))
    centre = 0.5 * (left + right)
    capped = (x - centre) >= u
    active = ((x - centre) > 0) & ~capped
    count = active.sum(-1, keepdim=True)
    s_free = torch.where(active, x, torch.zeros_like(x)).sum(-1, keepdim=True)
    s_cap = torch.where(capped, u, torch.zeros_like(u)).sum(-1, keepdim=True)
    tau = (s_free + s_cap - total) / count.clamp_min(1).to(x.dtype)
    tau = torch.where(count > 0, tau, centre)
    # g already equals the total one breakpoint earlier: the crossing is a flat piece; take its
    # midpoint, so that no entry sits at a breakpoint (where rounding would give 1 − ulp)
    before = torch.gather(pts, -1, (lo - 1).clamp_min(0))
    g_before = torch.minimum((x - before).clamp_min(0.0), u).sum(-1, keepdim=True)
    flat = (lo > 0) & (g_before == total)
    return torch.where(flat, 0.5 * (before + left), tau)


#: The Newton passes of :func:`capped_threshold_unit` start from the threshold of the maxima of at most
#: ``UNIT_GROUPS`` groups per row of at least ``UNIT_GROUP_SIZE`` scores each (and at least 2·⌈max total⌉ + 2
#: groups), a lower bound approached by ``UNIT_START_PASSES`` Newton steps.
UNIT_GROUPS = 64
UNIT_GROUP_SIZE = 4
UNIT_START_PASSES = 5

#: Batches of at most this many scores take the sorted breakpoints instead of the Newton passes: their few
#: operations then cost less than the passes' many small ones (measured on 2 CPU cores: 1.2 to 1.6 times
#: less up to 16k scores, the same at 16k to 32k, and up to 2.5 times more at 128k).
UNIT_SORT_SIZE = 16384

#: Newton passes of :func:`capped_threshold_unit` before the rows still moving are sorted.
UNIT_PASSES = 16

#: Batches of at most this many rows run their Newton passes until every row has settled, without copies.
UNIT_TAIL_ROWS = 64


def finite_min(x: torch.Tensor, finite: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The smallest finite score of each row (last axis, keepdim); +inf for a row with none.
    ``finite`` is ``torch.isfinite(x)`` when the caller has it."""
    finite = torch.isfinite(x) if finite is None else finite
    return torch.where(finite, x, math.inf).amin(-1, keepdim=True)


def _finite_caps(x: torch.Tensor):
    """Scores with −inf replaced by a finite value below the row's other scores, and their caps (1; 0 if masked)."""
    finite = torch.isfinite(x)
    return torch.where(finite, x, finite_min(x, finite) - 1.0), finite.to(x.dtype)


def _group_maxima(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Maxima of the ``groups`` strided groups {j, j + groups, j + 2·groups, ...} of the rows of ``x`` (R, N).

    Strided rather than contiguous groups: the reduction then runs over the middle axis of a
    (R, N/groups, groups) view, which is a few element-wise maxima over contiguous slices.
    """
    rows, n = x.shape
    per = n // groups
    out = x[:, : per * groups].reshape(rows, per, groups).amax(1)
    rest = n - per * groups
    if rest:
        out = torch.cat([torch.maximum(out[:, :rest], x[:, per * groups:]), out[:, rest:]], dim=-1)
    return out


def _newton_step(x: torch.Tensor, total: torch.Tensor, tau: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor,
                 work: torch.Tensor):
    """One safeguarded Newton step on g(τ) = Σ clip(x − τ, 0, 1) = total for the rows of ``x`` (R, N).

    One pass over the rows, through the buffer ``work``, with no boolean masks: c = clip(x − τ, 0, 1)
    gives g = Σ c; then c − c², positive exactly on the free entries F = {0 < c < 1}, gives the slope
    −|F| = −Σ ceil(c − c²) and the wobble Σ c (1 − c), which is about 0 when every free entry sits at
    0 or 1 up to rounding (the end of a flat piece).  A row on a flat piece away from the solution
    (|F| = 0, g ≠ total) jumps to its end (:func:`_leave_flat_pieces`).  g >= total moves the left end
    of the bracket [lo, hi] to τ, g < total the right end; a step that would leave the bracket is
    replaced by bisection.  Written with few operations: on batches of a few hundred thousand scores
    their count, not the arithmetic, sets the time.
    Returns (new τ, g − total, |F|, wobble, lo, hi, whether the step is Newton's: only those can
    settle a row, since a jump or a bisection can be short far from the root).
    """
    c = torch.sub(x, tau, out=work).clamp_(0.0, 1.0)
    resid = c.sum(-1, keepdim=True).sub_(total)
    c = c.addcmul_(c, c, value=-1.0)  # c (1 − c)
    wobble = c.sum(-1, keepdim=True)
    free = c.ceil_().sum(-1, keepdim=True)
    above = resid >= 0
    lo = torch.where(above, tau, lo)
    hi = torch.where(above, hi, tau)
    new = torch.addcdiv(tau, resid, free.clamp_min(1.0))
    flat = free == 0
    jumped = None
    if bool(flat.any()):
        new, jumped = _leave_flat_pieces(x, tau, resid, flat, new)
    # (new = τ: a settled row, whose step rounds to 0; it may sit at either end of the bracket)
    newton = ((new > lo) & (new < hi)) | (new == tau)
    new = torch.where(newton, new, torch.lerp(lo, hi, 0.5))
    if jumped is not None:
        newton &= ~jumped
    return new, resid, free, wobble, lo, hi, newton


def _leave_flat_pieces(x: torch.Tensor, tau: torch.Tensor, resid: torch.Tensor, flat: torch.Tensor,
                       new: torch.Tensor) -> torch.Tensor:
    """Newton's steps ``new``, with rows on a flat piece of g away from the solution sent to its end.

    Returns the steps and which rows jumped.

    With no free entry (``flat``: every score above τ capped) and g ≠ total (``resid`` = g − total),
    Newton has no slope.  g stays the same up to the smallest score above τ, minus 1 (where that
    score starts to fall), and down to the largest score at or below τ (where it starts to rise):
    for g > total the step goes to the former, for g < total to the latter minus the missing mass
    (the bracket corrects an overshoot).  A jump that rounds back to τ comes out as NaN, which the
    bracket test of :func:`_newton_step` turns into bisection.
    """
    stuck = flat & (resid != 0)
    if not bool(stuck.any()):
        return new, stuck
    rows = stuck.view(-1).nonzero().view(-1)
    xr, tr, rr = x.index_select(0, rows), tau.index_select(0, rows), resid.index_select(0, rows)
    above = xr > tr
    inf = torch.tensor(math.inf, dtype=x.dtype, device=x.device)
    up = torch.where(above, xr, inf).amin(-1, keepdim=True) - 1.0
    down = torch.where(above, -inf, xr).amax(-1, keepdim=True) + rr
    jump = torch.where(rr > 0, up, down)
    # a jump lost to rounding (τ far larger than the scores' spacing) is no step: NaN makes the caller bisect
    jump = torch.where(jump == tr, math.nan, jump)
    return new.index_copy(0, rows, jump), stuck


def _unit_start(x: torch.Tensor, total: torch.Tensor, groups: int, masked: bool):
    """A start and a lower bound for the k-subsets threshold of the rows of ``x`` (R, N), ``total`` (R, 1).

    Dropping scores can only lower g, so the threshold of a subset S of the row is at most the
    row's, and so is any τ with g_S(τ) >= total.  S holds the ``groups`` maxima of strided groups
    (:func:`_group_maxima`); ``UNIT_START_PASSES`` Newton steps on S inside the bracket
    [min S − 1, max S] give their last iterate (S's threshold once they settle) and the largest τ
    they met with g_S(τ) >= total.  With −inf in the batch the bracket of every row starts at its
    smallest finite score − 1 instead, where g counts every finite score (a masked group has no
    maximum, and S may then have fewer than ``total`` scores).  Returns (start, lower bound).
    """
    s = _group_maxima(x, groups)
    if masked:
        lo = finite_min(x) - 1.0
        s = torch.where(torch.isfinite(s), s, lo)
    else:
        lo = s.amin(-1, keepdim=True) - 1.0
    hi = s.amax(-1, keepdim=True)
    tau, work = hi - 1.0, torch.empty_like(s)
    for _ in range(UNIT_START_PASSES):
        tau, _, _, _, lo, hi, _ = _newton_step(s, total, tau, lo, hi, work)
    return tau, lo


def _unit_newton(x: torch.Tensor, total: torch.Tensor, tau: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor,
                 work: torch.Tensor):
    """Safeguarded Newton steps on g(τ) = Σ clip(x − τ, 0, 1) = total for the rows of ``x`` (R, N).

    ``lo`` <= τ <= ``hi`` bracket the solution; ``work`` is a scratch buffer shaped like ``x``
    (:func:`_newton_step`).  Returns τ, the rows left to :func:`_unit_sorted` (their τ is
    meaningless) and the rows that settled at the end of a flat piece (see :func:`capped_threshold_unit`).

    No full-size tensor is allocated: fresh memory costs page faults that can outweigh the passes
    themselves.  Once at most half of the batch is still moving, its rows are copied into the upper
    half of ``work`` (rows [r, 2r) for r moving rows, below the previous copy) and the passes use
    rows [0, r) as scratch.
    """
    out = torch.empty_like(tau)
    rows = torch.arange(x.shape[0], device=x.device)  # the rows still moving
    flats = []
    eps = torch.finfo(x.dtype).eps
    wide = _wide(x.dtype)
    for step in range(UNIT_PASSES):
        r = rows.numel()
        last = step == UNIT_PASSES - 1
        new, resid, free, wobble, lo, hi, newton = _newton_step(x, total, tau, lo, hi, work[:r])
        # settled: a step of at most one ulp of |τ| + 1 (near the root a float τ can only hop between the
        # neighbours of the root) that is Newton's, or inside a bracket that has shrunk to that size (a jump
        # or a bisection can be short far from the root); a settled row stays settled
        scale = tau.abs() + 1.0
        slack = torch.nextafter(scale, scale + 1.0) - scale
        settled = ((new - tau).abs_() <= slack) & (newton | ((hi - lo) <= slack))
        if not last:
            if r > UNIT_TAIL_ROWS:  # keep going until half the batch has settled
                if 2 * int(settled.sum()) < r:
                    tau = new
                    continue
            elif not bool(settled.all()):  # a short batch: no copies until every row has settled
                tau = new
                continue
        # at the end of a flat piece: every free entry within about one ulp of τ of 0 or 1, so that their
        # wobble Σ c (1 − c) is at most that much per entry
        g = resid + total
        flat = settled & (wobble <= torch.addcmul(4 * eps * g, free, slack))
        done = settled.view(-1).nonzero().view(-1)
        # g(τ) = total up to the last step; that step once more, in float64 (for float32 scores), puts τ
        # within half an ulp of the root (the output is x − τ in the scores' dtype).  It stays inside the
        # bracket: a root between two neighbouring floats may sit at a breakpoint that the slope at τ does
        # not see.
        fd = free.index_select(0, done).to(wide)
        td = tau.index_select(0, done)
        polished = torch.addcdiv(td.to(wide), resid.index_select(0, done).to(wide), fd.clamp_min(1.0))
        polished = torch.clamp(polished, lo.index_select(0, done).to(wide), hi.index_select(0, done).to(wide))
        out.index_copy_(0, rows.index_select(0, done), torch.where(fd > 0, polished.to(x.dtype), td))
        flats.append(rows.index_select(0, flat.view(-1).nonzero().view(-1)))
        left = settled.logical_not_().view(-1).nonzero().view(-1)  # (index_select: much faster than t[left])
        m = left.numel()
        if m == 0 or last:
            rows = rows.index_select(0, left)
            break
        x = torch.index_select(x, 0, left, out=work[m: 2 * m])  # 2m <= r: below the rows of x
        rows, total, tau, lo, hi = (t.index_select(0, left) for t in (rows, total, new, lo, hi))
    return out, rows, torch.cat(flats)


def _wide(dtype: torch.dtype) -> torch.dtype:
    """float64 for float32, else ``dtype``: where a threshold is computed so that τ is correctly rounded."""
    return torch.float64 if dtype == torch.float32 else dtype


def _unit_sorted(x: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
    """The k-subsets threshold of the rows of ``x`` (R, N) by sorted breakpoints: :func:`capped_threshold`
    with caps 1 (0 on masked entries), in float64 for float32 scores so that τ is correctly rounded."""
    wide = _wide(x.dtype)
    return capped_threshold(*_finite_caps(x.to(wide)), total.to(wide)).to(x.dtype)


def _unit_threshold(x: torch.Tensor, total: torch.Tensor, tau: torch.Tensor, lo: torch.Tensor,
                    hi: torch.Tensor, work: torch.Tensor):
    """:func:`_unit_newton` from τ in [lo, hi], with its leftover rows solved by :func:`_unit_sorted`."""
    tau, sort, flat = _unit_newton(x, total, tau, lo, hi, work)
    if sort.numel():
        tau.index_copy_(0, sort, _unit_sorted(x.index_select(0, sort), total.index_select(0, sort)))
    return tau, flat


def capped_threshold_unit(x: torch.Tensor, total: torch.Tensor, work: Optional[torch.Tensor] = None,
                          masked: Optional[bool] = None, top: Optional[torch.Tensor] = None):
    """τ with Σ_i clip(x_i − τ, 0, 1) = total per row (last axis): the k-subsets threshold (eq-ksubsets-map).

    ``x`` (..., N) may hold −inf (masked entries); ``total`` (..., 1) with 0 < total < the number of
    finite entries.  g(τ) = Σ clip(x − τ, 0, 1) is piecewise linear and non-increasing, with slope −|F|
    on the piece around τ, F = {0 < x_i − τ < 1}, so Newton's step τ ← τ + (g(τ) − total)/|F| is exact
    once τ is on the solution's piece.  Neither a sort nor a top-k of the row is needed:

    1. The start is a lower bound (:func:`_unit_start`): the threshold of the row's group maxima (up to
       ``UNIT_GROUPS`` groups of at least ``UNIT_GROUP_SIZE`` scores, and at least 2·⌈total⌉ + 2
       groups), found by Newton steps on them; rows too short for two scores per group are their own
       group maxima.  Small batches (at most ``UNIT_SORT_SIZE`` scores) are sorted outright
       (:func:`_unit_sorted`).
    2. Newton steps from there (:func:`_newton_step`: one pass of float operations over the row into
       one work buffer, no boolean masks, with the exact slope), inside a bracket whose right end is first the
       largest score.  A row on a flat piece away from the solution jumps to its end
       (:func:`_leave_flat_pieces`), and a step that would leave the bracket is replaced by bisection.
       A row has settled when a Newton step, or its bracket, is at most one ulp of |τ| + 1; its τ then
       takes that step once more in float64 (for float32 scores), inside the bracket.  Settled rows
       leave the batch once they are half of it.  Rows still moving after ``UNIT_PASSES`` passes are
       sorted.
    3. A settled row whose free entries sit within an ulp of τ each of 0 or 1 (Σ c (1 − c) ≈ 0) has
       settled at the end of a flat piece: its output is integral up to rounding (e.g. 1 − 1 ulp where
       x_i − τ should be exactly 1).  These rows are returned, for the caller to round their output
       (where the rounded output still sums to ``total``).

    ``work``, if given, is a scratch buffer shaped and typed like ``x`` (e.g. the caller's output);
    ``masked`` (whether ``x`` holds −inf) and ``top`` (the row maxima, (..., 1)) save passes over
    ``x`` when the caller knows them.  Returns τ (..., 1) and the flattened indices of the rows to round.
    """
    n = x.shape[-1]
    shape = total.expand(*x.shape[:-1], 1).shape
    xs = x.reshape(-1, n)
    goal = total.expand(shape).reshape(-1, 1)
    none = torch.zeros(0, dtype=torch.long, device=x.device)
    if xs.numel() <= UNIT_SORT_SIZE:
        return _unit_sorted(xs, goal).reshape(shape), none
    groups = max(2 * int(math.ceil(float(total.max()))) + 2, min(UNIT_GROUPS, n // UNIT_GROUP_SIZE))
    if n < 2 * groups:  # rows too short for groups of two: every score is a group (the start solves the row)
        groups = n
    masked = bool(torch.isneginf(xs.amin())) if masked is None else masked
    top = xs.amax(-1, keepdim=True) if top is None else top.reshape(-1, 1)
    start, lower = _unit_start(xs, goal, groups, masked)
    work = torch.empty_like(xs) if work is None else work.reshape(-1, n)
    tau, flat = _unit_threshold(xs, goal, start, lower, top, work)
    return tau.reshape(shape), flat


#: Candidate-set sizes for capped-simplex projections (see :func:`capped_threshold`): the first, and the
#: factor by which it grows for the rows whose support does not fit.
CAPPED_TOPK = 32
CAPPED_TOPK_GROWTH = 4


def capped_threshold(x: torch.Tensor, u: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
    """τ of the capped-simplex projection clip(x − τ, 0, u), Σ = total, per row (last axis).

    Masked entries must carry u_i = 0 (their x_i may be anything finite).  Only
    the largest scores can be above the threshold, so each row is first solved
    on its top ``CAPPED_TOPK`` scores; if the smallest of those ends at or below
    the threshold, every other entry does too and the answer is exact.  Small
    caps spread the mass over many entries (caps of about 1/100 need a hundred),
    so the candidate sets have at least twice total/mean(u) entries of the
    median row (the support of a row whose support is capped); rows where they
    fail are solved again on ``CAPPED_TOPK_GROWTH`` times as many top scores,
    and so on, up to the whole row.  Sorting the candidates is many times
    cheaper than sorting all N.
    """
    n = x.shape[-1]
    shape = total.expand(*x.shape[:-1], 1).shape
    xs, us, ts = x.reshape(-1, n), u.reshape(-1, n), total.expand(shape).reshape(-1, 1)
    tau = torch.empty_like(ts)
    rows = None  # the rows left (None: all)
    if ts.numel() == 0:  # an empty batch
        return tau.reshape(shape)
    # total / mean cap for the median row (inf or NaN: sort all); the rows above it grow their candidates
    spread = float(torch.nanmedian(ts * n / us.sum(-1, keepdim=True)))
    m = max(CAPPED_TOPK, 1, 2 * math.ceil(spread)) if spread < n else n
    while m < n:
        xr, ur, tr = (xs, us, ts) if rows is None else (xs[rows], us[rows], ts[rows])
        vals, idx = torch.topk(xr, m, dim=-1, sorted=False)
        caps = torch.gather(ur, -1, idx)
        t = capped_threshold_sorted(vals, caps, tr)
        # exact unless an entry outside the top m could be above τ, or the top m cannot carry the total
        ok = ((vals.amin(-1, keepdim=True) <= t) & (caps.sum(-1, keepdim=True) > tr)).view(-1)
        if rows is None and bool(ok.all()):
            return t.reshape(shape)
        done = ok.nonzero().view(-1)
        tau.index_copy_(0, done if rows is None else rows[done], t[done])
        left = (~ok).nonzero().view(-1)
        rows = left if rows is None else rows[left]
        if rows.numel() == 0:
            return tau.reshape(shape)
        m *= max(CAPPED_TOPK_GROWTH, 2)
    if rows is None:
        return capped_threshold_sorted(x, u, total)
    tau.index_copy_(0, rows, capped_threshold_sorted(xs[rows], us[rows], ts[rows]))
    return tau.reshape(shape)
