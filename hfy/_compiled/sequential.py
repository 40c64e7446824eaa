"""Sequential k-subsets SparseMAP on the CPU, compiled with numba: the active set of one row at a time.

The batched torch solver (:mod:`hfy._torch.sparsemap`) runs a few hundred tensor operations per
active-set iteration whatever the batch, which a CPU spends mostly in dispatching them.  Here the same
primal active-set algorithm runs row by row in compiled loops, on the structures' positions (a k-subset
is k integers) instead of dense 0/1 vectors:

* MAP: the budgeted Viterbi recursion over the number of selections (eq-sequential_ksubsets-viterbi),
  O(N k) per call; windows (w = inf) are the best running sum of k consecutive scores;
* the QP on the active set: a Cholesky factor of the lifted Gram matrix M = AAᵀ + 11ᵀ, recomputed after
  each change (the active sets hold a few dozen structures), solved for the scores and for 1;
* structures that enter in the affine hull of the active ones are swapped in, so every active set stays
  affinely independent and M positive definite, as in the batched solver;
* the warm start is the k-subsets projection written as a mixture of k-subsets by systematic sampling,
  with the layout of :func:`hfy._torch.sequential_ksubsets.chain_layout`, decided row by row.

The solution μ is unique, so both solvers agree to rounding; the active sets they end on may differ
where the optimal mixture is not unique (the Jacobian is the same on either, except at ties).
"""

from __future__ import annotations

import numpy as np
from numba import njit

#: the structures: exactly k selections, at most k, or windows of k consecutive positions
EXACTLY, AT_MOST, WINDOWS = 0, 1, 2

#: what a row's solve returns instead of its number of structures when it stops short: ``max_iter``
#: reached; the slots are full (the caller grows them and solves the row again); the lifted Gram matrix
#: lost positive definiteness to rounding (the batched solver takes the batch)
UNCONVERGED, FULL, SINGULAR = -1, -2, -3

#: the slots for the active set of a row to start with (they double when full, up to N + 2)
SLOTS = 64

# The rules shared with the batched solver come in as ``rules`` = (dependent, fill_steps, max_rounds,
# max_fractional, max_bonus), from :func:`hfy._torch.sequential_ksubsets.compiled_rules`: a structure in the
# affine hull of the active ones has distance² below ``dependent`` to it; the chain layout fills at most
# ``max_rounds`` boundaries with at most ``fill_steps`` singletons each; a row starts from the mixture when
# its projection has at most ``max_fractional`` fractional entries F and |w|·F <= ``max_bonus``.  (numba
# would freeze copies of them into its cache, which does not see a change in another module.)


@njit(cache=True)
def _map(v, k, w, mode, E, P, out):
    """The MAP structure of scores ``v``: its positions in ``out[:count]`` (ascending); returns (count, b)."""
    n = v.shape[0]
    if mode == WINDOWS:
        s = 0.0
        for i in range(k):
            s += v[i]
        best, first = s, 0
        for i in range(k, n):
            s += v[i] - v[i - k]
            if s > best:
                best, first = s, i - k + 1
        for j in range(k):
            out[j] = first + j
        return k, k - 1
    for i in range(n):
        E[0, i] = v[i]
    for c in range(1, k):  # E[c, i]: the best score of c + 1 selections, the last one at i
        pm, pj = -np.inf, -1
        for i in range(n):
            if i >= 2 and E[c - 1, i - 2] >= pm:
                pm, pj = E[c - 1, i - 2], i - 2
            adj = E[c - 1, i - 1] + w if i >= 1 else -np.inf
            if adj > pm:
                E[c, i], P[c, i] = v[i] + adj, i - 1
            else:
                E[c, i], P[c, i] = v[i] + pm, pj
    count, end = 0, -1
    if mode == EXACTLY:
        best = -np.inf
        for i in range(n):
            if E[k - 1, i] > best:
                best, end = E[k - 1, i], i
        count = k
    else:  # the empty structure scores 0; ties go to fewer selections
        best = 0.0
        for c in range(k):
            for i in range(n):
                if E[c, i] > best:
                    best, end, count = E[c, i], i, c + 1
    p = end
    for c in range(count - 1, -1, -1):
        out[c] = p
        if c > 0:
            p = P[c, p]
    b = 0
    for j in range(count - 1):
        if out[j + 1] == out[j] + 1:
            b += 1
    return count, b


@njit(cache=True)
def _factor(G, S, L):
    """The Cholesky factor of M = G + 11ᵀ on the first S slots into ``L``; False if M is not positive definite."""
    for i in range(S):
        for j in range(i + 1):
            s = G[i, j] + 1.0
            for t in range(j):
                s -= L[i, t] * L[j, t]
            if i == j:
                if s <= 0.0:
                    return False
                L[i, i] = np.sqrt(s)
            else:
                L[i, j] = s / L[j, j]
    return True


@njit(cache=True)
def _cho_solve(L, S, b, x):
    """x = M⁻¹ b from the factor ``L`` (first S slots)."""
    for i in range(S):
        s = b[i]
        for t in range(i):
            s -= L[i, t] * x[t]
        x[i] = s / L[i, i]
    for i in range(S - 1, -1, -1):
        s = x[i]
        for t in range(i + 1, S):
            s -= L[t, i] * x[t]
        x[i] = s / L[i, i]


@njit(cache=True)
def _bordered(L, S, top, q, sq, x):
    """x with [[G, 1], [1ᵀ, 0]] [x; τ] = [top; 1], from p = M⁻¹top and q = M⁻¹1 (sum sq); returns τ."""
    _cho_solve(L, S, top, x)
    sp = 0.0
    for s in range(S):
        sp += x[s]
    alpha = (1.0 - sp) / sq
    for s in range(S):
        x[s] += alpha * q[s]
    return 1.0 - alpha


@njit(cache=True)
def _remove(s, S, pos, cnt, feat, c, pi, G, ay):
    """Drop slot ``s`` of the S active ones (the last takes its place); returns S − 1."""
    last = S - 1
    if s != last:
        pos[s, :] = pos[last, :]
        cnt[s], feat[s], c[s], pi[s], ay[s] = cnt[last], feat[last], c[last], pi[last], ay[last]
        for t in range(S):
            G[s, t] = G[last, t]
        for t in range(S):
            G[t, s] = G[t, last]
        G[s, s] = G[last, last]
    return last


@njit(cache=True)
def _overlaps(pos, cnt, S, mark, ay):
    """ay[s] = |a_s ∩ y| for the structure y marked in ``mark``."""
    for s in range(S):
        o = 0
        for j in range(cnt[s]):
            o += mark[pos[s, j]]
        ay[s] = o


@njit(cache=True)
def _projection(theta, k, mode, mu, bp):
    """The k-subsets projection μ = clip(θ − τ, 0, 1), Σ μ = k (or the clip of θ when that sums to at most k,
    with ``mode`` AT_MOST), by a walk down the sorted breakpoints θ_i and θ_i − 1."""
    n = theta.shape[0]
    if mode == AT_MOST:
        total = 0.0
        for i in range(n):
            mu[i] = min(max(theta[i], 0.0), 1.0)
            total += mu[i]
        if total <= k:
            return
    # τ lies in [θ_(k) − 1, θ_(k)] (θ_(k) the k-th largest score): entries at or below θ_(k) − 1 stay at 0,
    # so only the others' breakpoints are sorted.  θ_(k) from a running list of the k largest.
    top = bp[:k]
    m = 0
    for i in range(n):
        t = theta[i]
        if m < k:
            j = m
            m += 1
        elif t > top[k - 1]:
            j = k - 1
        else:
            continue
        while j > 0 and top[j - 1] < t:
            top[j] = top[j - 1]
            j -= 1
        top[j] = t
    floor = top[k - 1] - 1.0
    nc = 0
    for i in range(n):
        if theta[i] > floor:
            bp[nc] = theta[i]
            bp[nc + 1] = theta[i] - 1.0
            nc += 2
    points = bp[:nc]
    order = np.argsort(points)[::-1]
    # going down from the largest score, Σ clip(θ − τ, 0, 1) grows with slope the number of free entries:
    # +1 when τ passes θ_i (i becomes free), −1 when it passes θ_i − 1 (i reaches its cap)
    f, slope, tau = 0.0, 0, points[order[0]]
    for j in range(nc):
        t = points[order[j]]
        nxt = f + slope * (tau - t)
        if nxt >= k and slope > 0:
            tau = tau - (k - f) / slope
            break
        f, tau = nxt, t
        slope += 1 if order[j] % 2 == 0 else -1
    for i in range(n):
        mu[i] = min(max(theta[i] - tau, 0.0), 1.0)


@njit(cache=True)
def _layout(mu, tol, key, order, fill_steps, max_rounds):
    """The order of the entries for the systematic sampling (:func:`hfy._torch.sequential_ksubsets.chain_layout`,
    one row) into ``order``: whole entries, the runs of fractional neighbours with singletons laid out
    between two neighbours until their arcs nest, the singletons left, the zeros.  ``key`` is scratch."""
    n = mu.shape[0]
    lim = 1.0 - tol
    single_key, zero_key = 3 * n + 1, 3 * n + 2
    nb, ns = 0, 0
    for i in range(n):
        f = tol < mu[i] < lim
        left = i > 0 and tol < mu[i - 1] < lim
        right = i < n - 1 and tol < mu[i + 1] < lim
        if mu[i] >= lim:
            key[i] = 0
        elif f and (left or right):
            key[i] = 1 + 3 * i
        elif f:
            key[i] = single_key
            ns += 1
        else:
            key[i] = zero_key
        if f and right:
            nb += 1
    if nb and ns:
        singles = np.empty(ns, dtype=np.int64)
        j = 0
        for i in range(n):
            if key[i] == single_key:
                singles[j] = i
                j += 1
        at = np.empty(nb, dtype=np.int64)
        need = np.empty(nb)
        j = 0
        for i in range(n - 1):
            if tol < mu[i] < lim and tol < mu[i + 1] < lim:
                at[j] = i
                need[j] = 1.0 - max(mu[i], mu[i + 1])
                j += 1
        by_need = np.argsort(need, kind="mergesort")  # the boundaries that need the least first
        free = ns
        for r in range(min(nb, max_rounds)):
            if free == 0:
                break
            i = at[by_need[r]]
            lo, hi = need[by_need[r]], 1.0 - min(mu[i], mu[i + 1])
            got = 0.0
            for _ in range(fill_steps):
                if got >= lo:
                    break
                room, best, pick = hi - got, 0.0, -1
                for j in range(ns):  # the largest free singleton that fits
                    s = singles[j]
                    if key[s] == single_key and best < mu[s] <= room:
                        best, pick = mu[s], s
                if pick < 0:
                    break
                got += best
                key[pick] = 2 + 3 * i
                free -= 1
    # a counting sort on the keys, stable in the positions
    counts = np.zeros(zero_key + 2, dtype=np.int64)
    for i in range(n):
        counts[key[i] + 1] += 1
    for j in range(1, zero_key + 2):
        counts[j] += counts[j - 1]
    for i in range(n):
        order[counts[key[i]]] = i
        counts[key[i]] += 1


@njit(cache=True)
def _start(theta, k, mode, tol, pos, cnt, feat, pi, mu, bp, key, used, fill_steps, max_rounds):
    """The k-subsets projection of θ written as a mixture of k-subsets by systematic sampling
    (:func:`hfy._torch.sequential_ksubsets.ksubsets_start`): the structures into the first slots; returns
    their number and the number of fractional entries of the projection."""
    n = theta.shape[0]
    _projection(theta, k, mode, mu, bp)
    nfrac = 0
    for i in range(n):
        if tol < mu[i] < 1.0 - tol:
            nfrac += 1
    order = used
    _layout(mu, tol, key, order, fill_steps, max_rounds)
    ends = np.empty(n)
    cuts = np.empty(nfrac + 2)  # the fractional parts of the ends of the fractional entries: where the
    cuts[0], cuts[nfrac + 1] = 0.0, 1.0  # selection changes as the offset t sweeps [0, 1)
    acc, m = 0.0, 1
    for j in range(n):
        acc += mu[order[j]]
        ends[j] = acc
        if tol < mu[order[j]] < 1.0 - tol:
            cuts[m] = acc - np.floor(acc)
            m += 1
    cuts.sort()
    S = 0
    sel = np.empty(k, dtype=np.int64)
    at = np.zeros(k, dtype=np.int64)  # the interval of the point t + j: non-decreasing in t
    for p in range(nfrac + 1):
        width = cuts[p + 1] - cuts[p]
        if width <= tol:
            continue
        t = 0.5 * (cuts[p] + cuts[p + 1])
        m = 0
        for j in range(k):
            point = t + j
            if point >= ends[n - 1]:
                break
            while at[j] < n - 1 and ends[at[j]] <= point:
                at[j] += 1
            e = order[at[j]]
            i = m  # insertion into the sorted selection
            while i > 0 and sel[i - 1] > e:
                sel[i] = sel[i - 1]
                i -= 1
            sel[i] = e
            m += 1
        if mode == EXACTLY and m < k:
            continue
        ok = True
        for j in range(m - 1):
            if sel[j + 1] == sel[j]:
                ok = False
        if ok and S > 0 and cnt[S - 1] == m:  # the same selection as the previous piece
            same = True
            for j in range(m):
                if pos[S - 1, j] != sel[j]:
                    same = False
            if same:
                pi[S - 1] += width
                continue
        if not ok:
            continue
        if S == pos.shape[0]:  # more pieces than slots: the caller grows them
            return -1, nfrac
        b = 0
        for j in range(m):
            pos[S, j] = sel[j]
            if j and sel[j] == sel[j - 1] + 1:
                b += 1
        cnt[S], feat[S], pi[S] = m, b, width
        S += 1
    return S, nfrac


@njit(cache=True)
def _solve_row(theta, k, w, mode, max_iter, tol, start, tol_start, rules, pos, cnt, feat, pi, mu, E, P, G, L, c, q,
               x, ay, ones, ybuf, mark, v, bp, key, used):
    """The active set of one row; returns (number of structures, τ, iterations), or a status (UNCONVERGED,
    FULL, SINGULAR) instead of the number of structures when it stops short.  μ is written into ``mu``."""
    dependent, fill_steps, max_rounds, max_fractional, max_bonus = rules
    n = theta.shape[0]
    wf = 0.0 if mode == WINDOWS else w
    S = 0
    if mode != WINDOWS and start:
        S, nfrac = _start(theta, k, mode, tol_start, pos, cnt, feat, pi, mu, bp, key, used, fill_steps, max_rounds)
        if S < 0:
            return FULL, 0.0, 0
        if w != 0.0 and (nfrac > max_fractional or abs(w) * nfrac > max_bonus):
            S = 0
        for s in range(S):  # the overlaps of the start's structures
            for j in range(cnt[s]):
                used[pos[s, j]] = 1
            for t in range(s + 1):
                o = 0
                for j in range(cnt[t]):
                    o += used[pos[t, j]]
                G[s, t] = o
                G[t, s] = o
            for j in range(cnt[s]):
                used[pos[s, j]] = 0
        if S and not _factor(G, S, L):
            S = 0
    if S == 0:  # from the MAP structure
        count, b = _map(theta, k, w, mode, E, P, ybuf)
        S = 1
        for j in range(count):
            pos[0, j] = ybuf[j]
        cnt[0], feat[0], pi[0] = count, b, 1.0
        G[0, 0] = count
    total = 0.0
    for s in range(S):
        cs = wf * feat[s]
        for j in range(cnt[s]):
            cs += theta[pos[s, j]]
        c[s] = cs
        total += pi[s]
    for s in range(S):
        pi[s] /= total
    tau = 0.0
    for it in range(1, max_iter + 1):
        # the QP on the active set, dropping structures whose weight would turn negative
        while True:
            if not _factor(G, S, L):  # (affinely independent active sets keep M positive definite)
                return SINGULAR, tau, it
            _cho_solve(L, S, ones, q)
            sq = 0.0
            for s in range(S):
                sq += q[s]
            tau = _bordered(L, S, c, q, sq, x)
            first, step = -1, np.inf
            for s in range(S):
                if x[s] < -tol:
                    r = pi[s] / (pi[s] - x[s])
                    if r < step:
                        step, first = r, s
            if first < 0:
                break
            for s in range(S):
                pi[s] = max(pi[s] + step * (x[s] - pi[s]), 0.0)
            pi[first] = 0.0
            s = S - 1
            while s >= 0:  # drop the structures the step brought to zero
                if s == first or (pi[s] <= tol and x[s] < -tol):
                    S = _remove(s, S, pos, cnt, feat, c, pi, G, ay)
                s -= 1
            total = 0.0
            for s in range(S):
                total += pi[s]
            for s in range(S):
                pi[s] /= total
        total = 0.0
        for s in range(S):
            pi[s] = max(x[s], 0.0)
            total += pi[s]
        for i in range(n):
            mu[i] = 0.0
        for s in range(S):
            pi[s] /= total
            for j in range(cnt[s]):
                mu[pos[s, j]] += pi[s]
        for i in range(n):
            v[i] = theta[i] - mu[i]
        count, b = _map(v, k, w, mode, E, P, ybuf)
        gain = wf * b
        for j in range(count):
            gain += v[ybuf[j]]
            mark[ybuf[j]] = 1
        _overlaps(pos, cnt, S, mark, ay)
        for j in range(count):
            mark[ybuf[j]] = 0
        known = False
        for s in range(S):
            if cnt[s] == count and ay[s] == count:
                known = True
        if known or gain <= tau + tol * (1.0 + abs(tau)):
            return S, tau, it
        # is y in the affine hull of the active structures?  λ solves the QP with top = A y
        tau_lam = _bordered(L, S, ay, q, sq, x)
        dist = count - tau_lam
        for s in range(S):
            dist -= x[s] * ay[s]
        new_pi = 0.0
        if dist < dependent:  # swap y in along π ← π + t (e_y − λ) until the first weight reaches zero
            first, step = -1, np.inf
            for s in range(S):
                if x[s] > tol:
                    r = pi[s] / x[s]
                    if r < step:
                        step, first = r, s
            if first < 0:  # (Σ λ = 1: some λ_s > tol, unless rounding broke the factorisation)
                return SINGULAR, tau, it
            for s in range(S):
                pi[s] = max(pi[s] - step * x[s], 0.0)
            S = _remove(first, S, pos, cnt, feat, c, pi, G, ay)
            new_pi = step
        if S == pos.shape[0]:
            return FULL, tau, it
        for j in range(count):
            pos[S, j] = ybuf[j]
        cnt[S], feat[S], pi[S] = count, b, new_pi
        cy = wf * b
        for j in range(count):
            cy += theta[ybuf[j]]
        c[S] = cy
        for s in range(S):
            G[S, s] = ay[s]
            G[s, S] = ay[s]
        G[S, S] = count
        S += 1
        total = 0.0
        for s in range(S):
            total += pi[s]
        for s in range(S):
            pi[s] /= total
    return UNCONVERGED, tau, max_iter


@njit(cache=True)
def _grown(a, used, size):
    """``a`` with room for ``size`` rows, its first ``used`` rows kept."""
    out = np.zeros((size,) + a.shape[1:], dtype=a.dtype)
    out[:used] = a[:used]
    return out


@njit(cache=True)
def solve(theta, k, w, mode, max_iter, tol, keep, start, rounding, rules, slots=SLOTS):
    """SparseMAP over sequential k-subsets for the rows of ``theta`` (B, N), float64.

    ``mode`` is EXACTLY, AT_MOST or WINDOWS (``w`` is then ignored); ``start`` warm-starts the rows
    from the mixture of :func:`_start` (where the bonus is small), as the batched solver does; ``rounding``
    (B,) is each row's rounding of θ − τ, below which a marginal of the start counts as 0 or 1, and
    ``rules`` the batched solver's constants (see above).  The slots
    for a row's active set start at ``slots`` and double when a row fills them (that row is solved again).
    Returns μ (B, N), τ (B,), the iterations of the slowest row, and with ``keep`` the active sets: dense
    structures (B, S, N), features (B, S), weights (B, S) and the number of structures of each row (B,),
    S the largest (0 slots and sizes otherwise).  If a row stops short, the iterations are its status:
    UNCONVERGED (``max_iter`` reached) or SINGULAR (rounding; the caller then uses the batched solver).
    """
    B, n = theta.shape
    mu_out = np.zeros((B, n))
    tau_out = np.zeros(B)
    E = np.empty((k, n))
    P = np.zeros((k, n), dtype=np.int64)
    ybuf = np.zeros(k, dtype=np.int64)
    mark = np.zeros(n, dtype=np.int64)
    v = np.zeros(n)
    bp = np.zeros(2 * n)
    key = np.zeros(n, dtype=np.int64)
    used = np.zeros(n, dtype=np.int64)
    # the active sets, row after row: positions (flat), counts, features, weights, and each row's offset
    size = 4 * B if keep else 0
    all_pos = np.zeros((size, k), dtype=np.int64)
    all_cnt = np.zeros(size, dtype=np.int64)
    all_feat = np.zeros(size, dtype=np.int64)
    all_pi = np.zeros(size)
    offset = np.zeros(B + 1, dtype=np.int64)
    worst = 0
    cap = 0
    r = 0
    while r < B:
        if cap == 0:  # the slots of a row's active set: ``slots`` to start with, doubled when a row fills them
            cap = min(max(slots, 1), n + 2)
        pos = np.zeros((cap, k), dtype=np.int64)
        cnt = np.zeros(cap, dtype=np.int64)
        feat = np.zeros(cap, dtype=np.int64)
        pi = np.zeros(cap)
        G = np.zeros((cap, cap))
        L = np.zeros((cap, cap))
        c = np.zeros(cap)
        q = np.zeros(cap)
        x = np.zeros(cap)
        ay = np.zeros(cap)
        ones = np.ones(cap)
        while r < B:
            S, tau, it = _solve_row(theta[r], k, w, mode, max_iter, tol, start, rounding[r], rules, pos, cnt, feat,
                                    pi, mu_out[r], E, P, G, L, c, q, x, ay, ones, ybuf, mark, v, bp, key, used)
            if S == FULL and cap < n + 2:
                break
            if S < 0:
                return mu_out, tau_out, (SINGULAR if S == FULL else S), np.zeros((B, 0, n)), np.zeros((B, 0)), \
                    np.zeros((B, 0)), offset[1:]
            tau_out[r] = tau
            worst = max(worst, it)
            if keep:
                need = offset[r] + S
                if need > all_pos.shape[0]:
                    grow = max(need, 2 * all_pos.shape[0])
                    all_pos, all_cnt = _grown(all_pos, offset[r], grow), _grown(all_cnt, offset[r], grow)
                    all_feat, all_pi = _grown(all_feat, offset[r], grow), _grown(all_pi, offset[r], grow)
                for s in range(S):
                    all_pos[offset[r] + s] = pos[s]
                    all_cnt[offset[r] + s] = cnt[s]
                    all_feat[offset[r] + s] = feat[s]
                    all_pi[offset[r] + s] = pi[s]
            offset[r + 1] = offset[r] + (S if keep else 0)
            r += 1
        else:
            break
        cap = min(2 * cap, n + 2)  # (the row that filled its slots is solved again)
    sizes = offset[1:] - offset[:-1]
    width = sizes.max() if keep and B else 0
    A = np.zeros((B, width, n))
    F = np.zeros((B, width))
    W = np.zeros((B, width))
    for r in range(B):
        for s in range(sizes[r]):
            at = offset[r] + s
            for j in range(all_cnt[at]):
                A[r, s, all_pos[at, j]] = 1.0
            F[r, s] = all_feat[at]
            W[r, s] = all_pi[at]
    return mu_out, tau_out, worst, A, F, W, sizes
