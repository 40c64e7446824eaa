"""SparseMAP over sequential k-subsets, batched (torch fast path).

Structures: k-hot vectors y scored θᵀy + w·b(y), b(y) = Σ_i y_i y_{i+1}
(eq-sequential_ksubsets-map).  MAP is the budgeted Viterbi recursion, run
over the number of selections and vectorised over positions and the batch
(the Python loop runs k times, never over examples); w = inf restricts the
structures to contiguous windows, whose MAP is a running sum.  SparseMAP is
the batched active set of :mod:`hfy._torch.sparsemap`, warm-started, for a
small bonus on narrow supports, from the k-subsets projection written as a
mixture of k-subsets (:func:`_start`), and otherwise from the MAP structures.
"""

from __future__ import annotations

import math
from typing import Optional, Union

import numpy as np
import torch

from .. import _compiled as compiled
from .._structures import barycentre, mixture_bonus, mixture_bonus_value
from .._validate import check_transition
from ._core import check_scores, compute_dtype, move_back, move_to_last
from .ksubsets import check_in_polytope, ksubsets
from .fenchel_young import Regularizer
from .sparsemap import DEPENDENT, ActiveSets, SparseMAP, active_set, check_weight, resolve_max_iter, sparsemap

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

    The recursion of eq-sequential_ksubsets-viterbi runs over positions; we run the same dynamic
    programme over the *number of selections* instead, which is vectorised over positions.  Let
    E_c(i) be the best score of a structure on positions 1..i with c selections, the last one at i.
    Its predecessor is either i − 1 (adjacent: bonus w) or the best position j <= i − 2 of layer c − 1:

        E_1(i) = θ_i,    E_c(i) = θ_i + max{ max_{j <= i−2} E_{c−1}(j),  E_{c−1}(i−1) + w }.

    The prefix maximum is a cumulative max (which also records where it is attained), so a layer
    costs a few tensor operations on (B, N) and the Python loop runs k − 1 times; backtracking
    follows the recorded predecessors through the k layers.  Ties go to the non-adjacent
    predecessor (any tie-break gives a maximiser).
    """
    if theta.dim() != 2:
        raise ValueError(f"`theta` must be (B, N); got shape {tuple(theta.shape)}")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= theta.shape[1]:
        raise ValueError(f"`k` must be an int in [1, N={theta.shape[1]}]; got {k!r}")
    if math.isinf(w):
        return best_windows(theta, k)
    b, n = theta.shape
    # layer[r, 2 + i] = E_c(i) for row r; the two −inf columns on the left stand for "no position"
    layer = theta.new_empty((b, n + 2))
    layer[:, :2] = -math.inf
    layer[:, 2:] = theta
    spare = torch.empty_like(layer)
    spare[:, :2] = -math.inf
    best = [] if exactly_k else [layer.max(dim=1)]  # at most k: each layer's best score and its position
    left = torch.arange(1, n + 1, device=theta.device)  # the column of position i − 1
    preds = []  # preds[c − 1][r, i]: the column of selection c when selection c + 1 is at position i
    for c in range(1, k):
        prefix, where = torch.cummax(layer, dim=1)  # prefix[:, i]: the best last selection at a position <= i − 2
        adjacent = layer[:, 1:-1] + w  # last selection at position i − 1
        preds.append(torch.where(adjacent > prefix[:, :-2], left, where[:, :-2]))
        torch.maximum(prefix[:, :-2], adjacent, out=spare[:, 2:]).add_(theta)
        layer, spare = spare, layer
        if not exactly_k:
            best.append(layer.max(dim=1))
    if exactly_k:
        count = None
        pos = layer.argmax(dim=1) - 2
    else:  # the empty structure scores 0; ties go to fewer selections
        count = torch.stack([torch.zeros_like(theta[:, 0])] + [v.values for v in best]).argmax(dim=0)
        ends = torch.stack([v.indices for v in best])
        pos = ends.gather(0, (count - 1).clamp_min(0).unsqueeze(0)).squeeze(0) - 2
    chosen = [pos]  # the positions of selections k, k − 1, ..., 1
    for c in range(k - 1, 0, -1):
        back = preds[c - 1].gather(1, pos.unsqueeze(1)).squeeze(1) - 2
        pos = back if count is None else torch.where(count > c, back, pos)
        chosen.append(pos)
    chosen = torch.stack(chosen, dim=1)
    if count is None:
        y = torch.zeros_like(theta).scatter_(1, chosen, 1.0)
    else:  # a row with fewer selections repeats its first one: scatter zeros there
        used = (torch.arange(k, 0, -1, device=theta.device) <= count.unsqueeze(1)).to(theta.dtype)
        y = torch.zeros_like(theta).scatter_add_(1, chosen, used)
    return y, (y[:, :-1] * y[:, 1:]).sum(-1)


#: :func:`chain_layout` lays out at most this many singletons between two neighbours, and fills at most
#: this many boundaries per row (wide supports have hundreds; the rest stay side by side).
LAYOUT_FILL_STEPS = 3
LAYOUT_MAX_ROUNDS = 64


def chain_layout(mu: torch.Tensor, tol: torch.Tensor) -> torch.Tensor:
    """Per row, an order of the entries for the systematic sampling of :func:`ksubsets_start` (B, N).

    An entry laid out on [c, c + μ_i) is selected for the offsets t in an arc of the circle [0, 1) of
    length μ_i that starts at frac(c).  Two fractional neighbours i, i + 1 are then selected together
    for the overlap of their arcs, at most min(μ_i, μ_{i+1}), which is reached when one arc holds the
    other: when the length f laid out between them (from the end of i to the start of i + 1) lies in
    [1 − max(μ_i, μ_{i+1}), 1 − min(μ_i, μ_{i+1})] modulo 1.  Laid out one after the other (f = 0), two
    neighbours with μ_i + μ_{i+1} <= 1 are never selected together.

    The order is: the entries with μ = 1 (a whole unit each, which shifts nothing); the runs of
    fractional neighbours in position order, with up to ``LAYOUT_FILL_STEPS`` fractional entries that
    have no fractional neighbour laid out between two neighbours (each time the largest that fits)
    until f is in that window; the fractional entries left; the zeros.  Those singletons run out, so a
    row fills the boundaries that need the least first.  ``tol`` (B, 1) is the rounding below which μ
    counts as 0 or 1.  Any order gives a valid start; this one gives it the adjacent pairs that a
    positive bonus asks for, which saves most active-set iterations when the supports are sparse.
    """
    # a few hundred operations on small arrays, each of which numpy runs several times faster than torch
    m = mu.detach().cpu().numpy()
    lim = tol.detach().cpu().numpy()
    b, n = m.shape
    frac = (m > lim) & (m < 1.0 - lim)
    linked = frac[:, :-1] & frac[:, 1:]  # a boundary between the fractional neighbours i and i + 1
    member = np.zeros_like(frac)  # in a run of fractional neighbours
    member[:, 1:] = linked
    member[:, :-1] |= linked
    single = frac & ~member
    # sort keys: ones 0, member i 1 + 3i, the entries laid out after member i 2 + 3i, unused singletons
    # 3N + 1, zeros 3N + 2
    pos = np.arange(n)
    key = np.full((b, n), 3 * n + 2, dtype=np.int64)
    key[m >= 1.0 - lim] = 0
    key[single] = 3 * n + 1
    key = np.where(member, 1 + 3 * pos, key)
    rows, at = np.nonzero(linked)  # row-major: the boundaries of a row in position order
    if rows.size:
        a, c = m[rows, at], m[rows, at + 1]
        lo, hi = 1.0 - np.maximum(a, c), 1.0 - np.minimum(a, c)
        by_need = np.lexsort((lo, rows))  # in each row, the boundaries that need the least first
        rows, at, lo, hi = rows[by_need], at[by_need], lo[by_need], hi[by_need]
        rank = np.arange(rows.size) - np.searchsorted(rows, rows)  # the boundary's rank in its row
        left = np.where(single, m, np.inf)  # the singletons still free
        stocked = single.any(1)  # rows with a free singleton
        for r in range(min(int(rank.max()) + 1, LAYOUT_MAX_ROUNDS)):  # a boundary of each row at a time
            sel = np.flatnonzero((rank == r) & stocked[rows])
            if sel.size == 0:
                if not stocked[rows[rank > r]].any():
                    break
                continue
            rr, lo_r, hi_r, key_r = rows[sel], lo[sel], hi[sel], 2 + 3 * at[sel]
            free = left[rr]
            got = np.zeros(sel.size)
            line = np.arange(sel.size)
            for _ in range(LAYOUT_FILL_STEPS):
                room = np.where(got < lo_r, hi_r - got, -1.0)[:, None]
                options = np.where(free <= room, free, -1.0)
                j = options.argmax(1)
                best = options[line, j]
                fits = best > 0
                if not fits.any():
                    break
                got += np.maximum(best, 0.0)
                free[line[fits], j[fits]] = np.inf
                key[rr[fits], j[fits]] = key_r[fits]
            left[rr] = free
            stocked[rr] = np.isfinite(free).any(1)
    order = np.argsort(key * n + pos, axis=1, kind="stable")
    return torch.from_numpy(order).to(mu.device)


def ksubsets_start(theta: torch.Tensor, k: int, exactly_k: bool = True, mu: Optional[torch.Tensor] = None,
                   tol: Optional[torch.Tensor] = None):
    """A warm start for the active set: the k-subsets projection of θ written as a mixture of k-subsets.

    Without the bonus (w = 0) SparseMAP over sequential k-subsets *is* the k-subsets projection
    μ = clip(θ − τ, 0, 1) (eq-ksubsets-map): every k-subset is a structure.  For a small bonus the
    solution moves little, so a mixture of k-subsets with mean μ is a feasible start close to it.
    We take the mixture by systematic sampling: lay the entries out on [0, Σμ) as consecutive
    intervals of lengths μ_i, and for an offset t ∈ [0, 1) select the entries whose interval holds
    one of the points t, t + 1, ...  (at most one each, since μ_i <= 1).  As t sweeps [0, 1) the
    selection changes only where t crosses the fractional part of a cumulative sum, so the distinct
    selections are at most |{0 < μ_i < 1}| + 1, their weights are the lengths of the t-intervals, and
    each change moves one point to the next interval: the changes are edges of a path, hence linearly
    independent, and the selections are affinely independent, as :func:`~hfy._torch.sparsemap.active_set`
    requires.  This holds for any order of the entries; :func:`chain_layout` picks one in which
    fractional neighbours are selected together as often as their marginals allow, because that is
    what the bonus rewards: a mixture without those pairs is far from the solution's active set.

    ``mu`` and ``tol``, if given, are the k-subsets projection of ``theta`` and its rounding
    (:func:`_rounding`; both computed otherwise).  Returns ``(structures (B, S, N), features (B, S),
    weights (B, S))``; unused slots have weight 0 and the weights are not normalised.
    """
    b, n = theta.shape
    mu_full = ksubsets(theta.detach(), k, exactly_k=exactly_k) if mu is None else mu
    tol = _rounding(theta, k) if tol is None else tol
    order = chain_layout(mu_full, tol)
    mu = mu_full.gather(1, order)
    ends = torch.cumsum(mu, dim=1)
    cuts = torch.cat([torch.zeros_like(ends[:, :1]), torch.frac(ends), torch.ones_like(ends[:, :1])], dim=1)
    cuts = cuts.sort(dim=1).values
    width = cuts[:, 1:] - cuts[:, :-1]
    # pieces narrower than the rounding are skipped (μ_i = 0 or 1 repeats a cut): every point then lies
    # clearly inside one interval
    wide = width > tol
    slots = int(wide.sum(1).max())
    pick = torch.argsort((~wide).to(torch.int8), dim=1, stable=True)[:, :slots]  # the wide pieces, in sweep order
    t = 0.5 * (cuts[:, :-1] + cuts[:, 1:]).gather(1, pick)
    weight = (width * wide).gather(1, pick)
    points = t.unsqueeze(-1) + torch.arange(k, dtype=theta.dtype, device=theta.device)  # (B, S, k)
    where = torch.searchsorted(ends, points.reshape(b, -1), right=True).clamp_max(n - 1)
    pos = order.gather(1, where).reshape(b, slots, k)
    # at most k: points beyond Σμ select nothing; park them past the end, two apart (never adjacent)
    beyond = points >= ends[:, -1:].unsqueeze(-1)
    pos = torch.where(beyond, n + 1 + 2 * torch.arange(k, device=theta.device), pos).sort(dim=-1).values
    step = pos[..., 1:] - pos[..., :-1]
    # rounding could still put two points in one interval or repeat a selection: such slots get no weight
    inside = pos < n
    ok = (step > 0).all(-1)
    if exactly_k:
        ok &= inside.sum(-1) == k
    ok[:, 1:] &= (pos[:, 1:] != pos[:, :-1]).any(-1)
    y = torch.zeros(b, slots, n, dtype=theta.dtype, device=theta.device)
    y.scatter_add_(2, torch.where(inside, pos, 0), inside.to(theta.dtype))
    return y, (step == 1).sum(-1).to(theta.dtype), weight * ok


def _rounding(theta: torch.Tensor, k: int) -> torch.Tensor:
    """Per row (B, 1), the rounding of θ − τ, which the k-subsets projection μ carries: below it μ_i counts
    as 0 or 1 (and a piece of :func:`ksubsets_start` as empty)."""
    eps = torch.finfo(theta.dtype).eps
    return eps * (1e3 * k + 8 * theta.shape[-1] * theta.detach().abs().amax(-1, keepdim=True))


#: :func:`_start` uses the mixture of :func:`ksubsets_start` for w = 0 (where it is the solution), and when the
#: rows of the batch have on average at most ``MIXTURE_MAX_FRACTIONAL`` fractional entries F in their k-subsets
#: projection and |w|·F is at most ``MIXTURE_MAX_BONUS``; otherwise the active set starts from each row's MAP
#: structure.
MIXTURE_MAX_FRACTIONAL = 24
MIXTURE_MAX_BONUS = 1.2


def _start(k: int, w: float, exactly_k: bool):
    """The warm start of :func:`sequential_ksubsets`: the mixture of :func:`ksubsets_start`, or none.

    The mixture is the solution for w = 0 and saves most iterations for a small bonus, but its structures
    are the wrong ones when the bonus moves the solution far from the k-subsets projection (the
    solution then selects runs of neighbours together), or when the support is wide (the layout
    finds few nestings).  Dropping them costs more iterations than building the active set from the
    MAP structure, and each iteration costs more with the mixture's many slots (measured on 256 × 128
    batches, see the performance chapter).  One choice for the batch: a batch whose rows start from
    both would carry the mixture's slots into every row's iterations.
    """
    def start(theta: torch.Tensor):
        mu = ksubsets(theta.detach(), k, exactly_k=exactly_k)
        tol = _rounding(theta, k)
        if w != 0.0:
            fractional = float(((mu > tol) & (mu < 1.0 - tol)).sum(-1).to(theta.dtype).mean())
            if fractional > MIXTURE_MAX_FRACTIONAL or abs(w) * fractional > MIXTURE_MAX_BONUS:
                b, n = theta.shape  # no slot: every row starts from its MAP structure
                return theta.new_zeros((b, 0, n)), theta.new_zeros((b, 0)), theta.new_zeros((b, 0))
        return ksubsets_start(theta, k, exactly_k, mu, tol)

    return start


#: Rows with a score above this magnitude go through :func:`saturate` first (it is exact at any magnitude, and
#: skipped where rounding cannot matter).
SATURATE_ABOVE = 1e4

#: Windows (w = inf) have no saturation rule: their scores must stay below this magnitude, where window sums
#: still resolve score differences of about 1e-4; so must the saturated scores of "at most k".
MAX_SCORE = 1e12


def saturate(theta: torch.Tensor, k: int, w: float, exactly_k: bool = True) -> torch.Tensor:
    """Scores of moderate range with the same sequential k-subsets marginals as ``theta`` (B, N), w finite.

    Let m = 1 + 2|w|.  If the top h <= k scores H all exceed every other score by more than m, every
    active structure contains H: a structure that misses i ∈ H holds some j ∉ H (exactly k; for "at
    most k" a structure with room takes i, which needs θ_i > m too), and swapping j for i raises its
    score vᵀa + w·b (v = θ − μ, 0 <= μ <= 1) by at least θ_i − 1 − θ_j − 2|w| > 0, since a swap changes
    the adjacent pairs by at most two.  So μ_H = 1, the objective over the structures that hold H does
    not depend on θ_H, and lowering θ_H to (the largest other score) + m + 1 changes nothing.  Likewise
    the bottom N − p <= N − k scores, if every other score exceeds them by more than m, are never
    selected, and are raised to (the smallest other score) − m − 1.  With the largest usable h and the
    smallest usable p, the scores left in between are spaced by at most m, so after the two clamps a row
    spans at most about N·m; with exactly k it is also shifted (marginals do not change under a shift).
    Then the float64 solver resolves the scores that matter however large the others are (±1e30), unless
    the scores in between are themselves huge ("at most k" cannot shift them: :func:`_saturated` refuses).
    The bounds carry no gradient: the clamped entries' marginals do not depend on them.
    """
    b, n = theta.shape
    m = 1.0 + 2.0 * abs(w)
    s, order = theta.detach().sort(dim=-1, descending=True)
    # a gap after the first p scores, p = 1 .. N (after the last: none below it)
    big = torch.cat([s[:, :-1] - s[:, 1:] > m, torch.ones_like(s[:, :1], dtype=torch.bool)], dim=-1)
    p = torch.arange(1, n + 1, device=theta.device)
    top = big & (p <= k)
    if not exactly_k:
        top &= s > m
    h = (top * p).amax(-1, keepdim=True)
    low = torch.where(big & (p >= k) & (p < n), p, n).amin(-1, keepdim=True)
    inner_max = s.gather(1, h.clamp_max(n - 1))
    inner_min = s.gather(1, (low - 1).clamp_min(0))
    hi = inner_max + (m + 1.0)
    if not exactly_k:
        hi = hi.clamp_min(m + 1.0)
    lo = inner_min - (m + 1.0)
    out = torch.minimum(torch.maximum(theta, lo), hi)
    if exactly_k:
        out = out - inner_max
    # no score in between (exactly the top k saturate): the indicator of the top k, from scores 0 and m + 2
    none = h == low
    if bool(none.any()):
        rank = torch.empty_like(order).scatter_(1, order, torch.arange(n, device=theta.device).expand(b, -1))
        out = torch.where(none, (rank < k).to(theta.dtype) * (m + 2.0), out)
    return out


#: The bonus, relative to 1 + max|θ|, of the solve whose active set :func:`_right_of_zero` starts from.
RIGHT_OF_ZERO = 1e-7


def _right_of_zero(theta: torch.Tensor, k: int, exactly_k: bool, max_iter: int):
    """The start of a solve at w = 0 whose derivative in w is the right derivative.

    At w = 0 the solution is the k-subsets projection, and every mixture of structures with that mean is
    optimal; the derivative in w of the active-set Jacobian (Aᵀ P b) depends on which mixture the solver
    holds, and an arbitrary one gives a value that is neither one-sided derivative.  On a small interval
    (0, ε) the solution moves along a line on one active set, whose closure holds the solution at 0: the
    active set of a slightly positive w, used as the start at w = 0, keeps the solution exact and gives the
    derivative of w -> 0+.
    """
    eps = RIGHT_OF_ZERO * (1.0 + float(theta.detach().abs().amax()))
    sol = active_set(theta.detach(), _oracle(k, eps, exactly_k), eps, max_iter, start=_start(k, eps, exactly_k))

    def start(t: torch.Tensor):
        return sol.structures.clone(), sol.features, sol.weights

    start.pinned = True  # (the active set it holds is the point: the batched solver must start from it)
    return start


def _oracle(k: int, w: float, exactly_k: bool):
    """The batched MAP oracle of the structures; for CPU scores, :func:`hfy._torch.sparsemap.active_set` hands
    the whole solve to the compiled row-by-row solver it carries (``solve_rows``, see :func:`_solve_rows`)."""
    def oracle(v: torch.Tensor):
        return budgeted_viterbi(v, k, w, exactly_k)

    def solve_rows(theta: torch.Tensor, max_iter: int, tol: float, structures: bool, warm: bool):
        return _solve_rows(theta, k, w, exactly_k, max_iter, tol, structures, warm)

    oracle.__name__ = f"budgeted_viterbi(k={k}, w={w}, exactly_k={exactly_k})"
    oracle.solve_rows = solve_rows
    return oracle


def compiled_rules():
    """The constants the compiled solver shares with the batched one, read at each call: the affine-hull
    test, the chain layout's limits and the mixture-start rule (see :mod:`hfy._compiled.sequential`)."""
    return (float(DEPENDENT), int(LAYOUT_FILL_STEPS), int(LAYOUT_MAX_ROUNDS), int(MIXTURE_MAX_FRACTIONAL),
            float(MIXTURE_MAX_BONUS))


def _solve_rows(theta: torch.Tensor, k: int, w: float, exactly_k: bool, max_iter: int, tol: float, structures: bool,
                warm: bool) -> Optional[ActiveSets]:
    """The active set of every row of the float64 CPU scores ``theta`` (B, N), compiled
    (:mod:`hfy._compiled.sequential`); None where the compiled kernels are not available (no numba, or
    ``HFY_JIT=0``), or where rounding stopped them (the batched solver then runs).  ``warm``: start from the mixture of :func:`ksubsets_start` where the bonus is small
    (decided row by row), else from the MAP structure."""
    kernels = compiled.sequential_kernels()
    if kernels is None:
        return None
    mode = kernels.WINDOWS if math.isinf(w) else (kernels.EXACTLY if exactly_k else kernels.AT_MOST)
    theta = theta.detach()
    rows = np.ascontiguousarray(theta.numpy())
    rounding = np.ascontiguousarray(_rounding(theta, k).reshape(-1).numpy())
    mu, tau, n_iter, A, feats, weights, sizes = kernels.solve(rows, int(k), 0.0 if math.isinf(w) else float(w),
                                                              mode, int(max_iter), float(tol), bool(structures),
                                                              bool(warm), rounding, compiled_rules())
    if n_iter == kernels.SINGULAR:  # rounding broke a factorisation (not seen in practice): the batched solver
        return None
    if n_iter < 0:
        raise RuntimeError(f"SparseMAP active set did not converge in {max_iter} iterations; pass a larger "
                           "`max_iter` (a row needs a few iterations per fractional marginal)")
    valid = torch.arange(A.shape[1]).unsqueeze(0) < torch.from_numpy(sizes).unsqueeze(1)
    return ActiveSets(torch.from_numpy(mu), torch.from_numpy(A), torch.from_numpy(feats), valid,
                      torch.from_numpy(weights), torch.from_numpy(tau), int(n_iter))


def _saturated(flat: torch.Tensor, k: int, w: float, exactly_k: bool) -> torch.Tensor:
    """The scores (B, N) the solver sees: saturated (:func:`saturate`) where some are large.  Windows, and
    the saturated scores, must stay below ``MAX_SCORE`` (a clear error otherwise)."""
    if flat.numel() == 0:
        return flat
    largest = float(flat.detach().abs().amax())
    if largest <= SATURATE_ABOVE:
        return flat
    masked = bool(torch.isneginf(flat).any())
    if math.isinf(w):
        out = _unmask_windows(flat, k) if masked else flat
    else:
        out = saturate(flat, k, w, exactly_k)
        if masked and not exactly_k:  # (rows with fewer than k unmasked scores: −inf is below −(1 + 2|w|))
            out = out.clamp_min(-(1.0 + 2.0 * abs(w)))
    largest = float(out.detach().abs().amax())
    if largest > MAX_SCORE:
        raise ValueError(f"`z` holds scores of magnitude {largest:.3g} that the solver cannot set aside (windows, or "
                         f"many huge scores with exactly_k=False); they must stay below {MAX_SCORE:g}, where "
                         "sums of scores still resolve differences of order 1: rescale `z`")
    return out


def _unmask_windows(theta: torch.Tensor, k: int) -> torch.Tensor:
    """Windows (B, N) with −inf masks: masked scores set to a finite value low enough that no active window
    holds them.  A window W with a masked entry j scores at most θ_j + (k − 1)·hi, and a window without
    one at least k·(lo − 1) (v = θ − μ >= θ − 1; lo, hi: the row's smallest and largest unmasked scores),
    so θ_j = k·(lo − 1) − (k − 1)·hi − 2 keeps W out of every active set, as −inf does; the marginals do
    not change."""
    finite = torch.isfinite(theta)
    lo = torch.where(finite, theta, math.inf).amin(-1, keepdim=True)
    hi = torch.where(finite, theta, -math.inf).amax(-1, keepdim=True)
    return torch.where(finite, theta, (k * (lo - 1.0) - (k - 1) * hi - 2.0).detach())


def _checked(z: torch.Tensor, k: int, transition: FloatLike, dim: int, exactly_k: bool = True):
    """The scores (checked), their length N along ``dim`` and the bonus as a float; clear errors otherwise.
    −inf masks an entry; a row needs k unmasked scores (exactly k) or k consecutive ones (windows)."""
    z = check_scores(z, "z", dim)
    n = z.shape[dim]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n:
        raise ValueError(f"`k` must be an int in [1, N={n}]; got {k!r}")
    w_val = check_transition(check_weight(transition, "transition"))
    finite = torch.isfinite(z)
    if not bool(finite.all()):
        if bool((torch.isnan(z) | torch.isposinf(z)).any()):
            raise ValueError("`z` contains NaN or +inf; use -inf to mask an entry")
        if math.isinf(w_val):  # every row needs a window of k unmasked scores
            runs = finite.movedim(dim, -1).to(torch.float64).unfold(-1, k, 1).sum(-1)
            if bool((runs.amax(-1) < k).any()):
                raise ValueError("`k`: with transition = inf some row has no k consecutive unmasked scores")
        elif exactly_k and bool((finite.sum(dim) < k).any()):
            raise ValueError(f"`k`={k} exceeds the number of unmasked scores in some row (`z` has too many -inf entries)")
    if math.isfinite(w_val) and abs(w_val) > MAX_SCORE:
        raise ValueError(f"`transition` = {w_val:g} is beyond {MAX_SCORE:g}, where the active set no longer resolves the "
                         "scores; use float('inf') for windows")
    return z, n, w_val


def sequential_ksubsets(z: torch.Tensor, k: int, transition: FloatLike = 0.0, dim: int = -1,
                        exactly_k: bool = True, max_iter: Optional[int] = None) -> torch.Tensor:
    """SparseMAP marginals over sequential k-subsets along ``dim`` (eq-sequential_ksubsets-map).

    Parameters
    ----------
    z : Tensor, shape (..., N, ...)
        Unary scores; ``-inf`` masks an entry (output exactly 0; adjacent pairs never span it).  A row
        needs k unmasked scores (exactly k), or k consecutive ones (windows).
    k : int
        Number of selected positions, 1 <= k <= N.
    transition : float or 0-dim Tensor
        Bonus w for every pair of adjacent selected positions (may require grad);
        ``float('inf')`` restricts the structures to contiguous windows (implemented
        as a constraint, never as a huge number).
    dim : int
    exactly_k : bool
        Σ μ = k (True) or Σ μ <= k (False).
    max_iter : int, optional
        Cap on the active-set iterations; None: max(1000, 10N).  A row needs a few iterations per
        fractional marginal, so scores of small scale (wide supports) over long rows need the most.

    Returns
    -------
    Tensor
        Unary marginals μ in [0, 1], summing to k (or at most k) along ``dim``.

    See Also
    --------
    hfy.reference.sequential_ksubsets, hfy.oracle.sequential_ksubsets, SequentialKSubsets
    """
    z, n, w_val = _checked(z, k, transition, dim, exactly_k)
    max_iter = resolve_max_iter(max_iter, n)
    zl = move_to_last(z, dim)
    if zl.numel() == 0:  # an empty batch
        return z * 0.0
    flat = _saturated(zl.reshape(-1, n).to(compute_dtype(z.dtype)), k, w_val, exactly_k)
    if math.isinf(w_val):
        mu = sparsemap(flat, _oracle(k, math.inf, exactly_k), 0.0, max_iter)
    else:
        w_arg = transition.to(flat.dtype) if isinstance(transition, torch.Tensor) else w_val
        start = _start(k, w_val, exactly_k)
        if w_val == 0.0 and isinstance(transition, torch.Tensor) and transition.requires_grad:
            start = _right_of_zero(flat, k, exactly_k, max_iter)
        mu = sparsemap(flat, _oracle(k, w_val, exactly_k), w_arg, max_iter, start=start)
    return move_back(mu.reshape(zl.shape).to(z.dtype), dim)


class _MixtureBonus(torch.autograd.Function):
    """V_w(μ) for the rows of ``mu`` (R, N), with the dual of the linear program as its (super)gradient.

    A scipy linear program per row on the CPU in float64 (structures in closed form); the result comes back
    in the dtype and on the device of ``mu``."""

    @staticmethod
    def forward(ctx, mu, k, w, exactly_k):
        tol = math.sqrt(torch.finfo(mu.dtype).eps) * k  # (μ computed in a lower precision misses the polytope more)
        rows = mu.detach().to("cpu", torch.float64).numpy()
        values = [mixture_bonus_value(row, k, w, exactly_k, tol) for row in rows]
        ctx.save_for_backward(mu)
        ctx.args = k, w, exactly_k, tol
        return torch.tensor(values, dtype=mu.dtype, device=mu.device)

    @staticmethod
    def backward(ctx, grad):
        (mu,) = ctx.saved_tensors
        rows = mu.detach().to("cpu", torch.float64).numpy()
        duals = np.stack([mixture_bonus(row, *ctx.args)[1] for row in rows]) if rows.shape[0] else rows
        return grad.unsqueeze(-1) * torch.from_numpy(duals).to(dtype=mu.dtype, device=mu.device), None, None, None


class SequentialKSubsets(SparseMAP):
    """The SparseMAP regulariser over sequential k-subsets with contiguity bonus ``transition``.

    Ω(μ) = ½‖μ‖² − V_w(μ) with V_w(μ) the bonus of the best mixture with marginals μ (see :meth:`omega`).
    The reference point of the HFY energy is the barycentre of the structures, (k/N)·1 for exactly k
    (only constants of the energy depend on it).
    """

    def __init__(self, k: int, transition: float = 0.0, exactly_k: bool = True, max_iter: Optional[int] = None):
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"`k` must be a positive int; got {k!r}")
        self.k, self.transition, self.exactly_k = k, float(transition), bool(exactly_k)
        w = 0.0 if math.isinf(self.transition) else self.transition
        super().__init__(_oracle(k, self.transition, self.exactly_k), w, None, max_iter)
        if not math.isinf(self.transition):
            self.warm_start = _start(k, self.transition, self.exactly_k)

    def predict(self, theta: torch.Tensor, dim: int = -1) -> torch.Tensor:
        return sequential_ksubsets(theta, self.k, self.transition, dim, self.exactly_k, self.max_iter)

    def _predict_for_conjugate(self, theta: torch.Tensor, dim: int):
        if self.w != 0.0:  # (w = 0 and windows go through predict, which checks)
            _checked(theta, self.k, self.transition, dim, self.exactly_k)
            flat, shape = self._flat(theta, dim)
            if flat.shape[0]:  # (μ and the mixture's bonus are those of the saturated scores)
                flat = _saturated(flat.to(compute_dtype(theta.dtype)), self.k, self.w, self.exactly_k)
                mu, omega_mu = super()._predict_for_conjugate(flat.to(theta.dtype).reshape(shape), -1)
                return mu.movedim(-1, dim), omega_mu
        return super()._predict_for_conjugate(theta, dim)

    def omega(self, mu: torch.Tensor, dim: int = -1) -> torch.Tensor:
        """Ω(μ) = ½‖μ‖² − V_w(μ), V_w(μ) = max { w Σ_s π_s b_s : π a mixture of structures with marginals μ }.

        At a structure y, V_w(y) = w·b(y) in closed form; elsewhere V_w is a linear program on the Viterbi
        lattice, solved row by row on the CPU (:func:`hfy._structures.mixture_bonus`): the maps, the
        conjugate and the energy's dynamics never need it, and the energy's constant evaluates it once per
        reference point.  Its gradient in μ is μ minus the program's dual, a supergradient of V_w.  A
        clear error for μ outside the polytope.  Without a bonus, and for windows, Ω(μ) = ½‖μ‖².
        """
        quadratic = 0.5 * (mu * mu).sum(dim)
        if self.w == 0.0:
            return quadratic
        moved = mu.movedim(dim, -1)
        flat = moved.reshape(-1, moved.shape[-1])
        if torch.is_grad_enabled() and flat.requires_grad:  # (the program's dual is the gradient)
            bonus = _MixtureBonus.apply(flat, self.k, self.w, self.exactly_k)
        else:  # structures, the targets of training, in closed form on the batch; a program per other row
            count = flat.sum(-1)
            vertex = ((flat == 0) | (flat == 1)).all(-1) & (count <= self.k) & ((count == self.k) | (not self.exactly_k))
            bonus = self.w * (flat[:, :-1] * flat[:, 1:]).sum(-1)
            if not bool(vertex.all()):
                bonus[~vertex] = _MixtureBonus.apply(flat[~vertex], self.k, self.w, self.exactly_k)
        return quadratic - bonus.reshape(moved.shape[:-1])

    def loss(self, theta: torch.Tensor, y: torch.Tensor, dim: int = -1) -> torch.Tensor:
        """L(θ; y) = Ω*(θ) + Ω(y) − ⟨θ, y⟩ for a target y in the polytope, >= 0 and 0 when the prediction is y;
        at a structure Ω(y) = ½‖y‖² − w·b(y), b(y) its adjacent pairs.  A clear error for y outside the polytope."""
        if y.shape == theta.shape:  # (the base class names a shape mismatch)
            check_in_polytope(y.to(theta.dtype), self.k, self.exactly_k, dim, "y")
        return Regularizer.loss(self, theta, y, dim)

    def reference_point(self, n: int, like: torch.Tensor) -> torch.Tensor:
        """The barycentre of the structures: of the k-subsets (or of at most k), or of the windows."""
        return torch.as_tensor(barycentre(n, self.k, self.transition, self.exactly_k), dtype=like.dtype,
                               device=like.device)

    def __repr__(self) -> str:
        return f"SequentialKSubsets(k={self.k}, transition={self.transition}, exactly_k={self.exactly_k})"
