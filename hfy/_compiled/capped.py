"""The k-subsets projection on the CPU, compiled with numba: one pass over each row and a few over its
candidates.

μ = clip(x − τ, 0, 1) with Σ μ = t (eq-ksubsets-map).  With m = ⌈t⌉ and x_(m) the m-th largest score,
g(τ) = Σ clip(x_i − τ, 0, 1) is at least m >= t at x_(m) − 1 (the m largest are capped there) and at
most m − 1 < t at x_(m), so τ lies in [x_(m) − 1, x_(m)], and only the candidates x_i > x_(m) − 1 can
be above it.  On the candidates, τ is found by Newton steps on the piecewise-linear g inside that
bracket (each step solves g = t on the current piece: exact once on the solution's piece), with
bisection where a step would leave the bracket.  Everything is computed in float64, whatever the dtype
of x, and μ is written in the dtype of x: integral rows come out exactly 0/1.
"""

from __future__ import annotations

import numpy as np
from numba import njit

#: the size of the groups whose maxima bound the m-th largest score from below (see :func:`candidates`)
GROUP = 32

#: Newton and bisection steps on the candidates before their breakpoints are sorted and walked instead
#: (bisection alone halves the bracket of width 1 to the resolution of float64 in about 60 steps)
MAX_STEPS = 100


@njit(cache=True)
def _kth_largest(values, count, m, scratch):
    """The m-th largest of ``values[:count]`` (count >= m): a running list of the m largest for small m, a
    partition otherwise."""
    if m <= 32:
        size = 0
        for i in range(count):
            t = values[i]
            if size < m:
                j = size
                size += 1
            elif t > scratch[m - 1]:
                j = m - 1
            else:
                continue
            while j > 0 and scratch[j - 1] < t:
                scratch[j] = scratch[j - 1]
                j -= 1
            scratch[j] = t
        return scratch[m - 1]
    scratch[:count] = values[:count]
    return np.partition(scratch[:count], count - m)[count - m]


@njit(cache=True)
def candidates(x, m, cand, scratch):
    """The entries of the row ``x`` at or above x_(m) − 1 (x_(m): its m-th largest; −inf counts as the smallest)
    into ``cand`` (float64, of size N + 1).  Returns x_(m) and the number of candidates.

    The maxima of groups of ``GROUP`` scores bound x_(m) from below (their m-th largest has m scores at or
    above it), so one pass keeps the scores above that bound minus 1 (a compaction without branches:
    every score is written, and the count only moves for the kept ones); x_(m) is then found among those.
    """
    n = x.shape[0]
    groups = n // GROUP
    bound = -np.inf
    if groups >= 2 * m:  # (otherwise every finite score is a candidate)
        for b in range(groups):
            top = x[b * GROUP]
            for i in range(b * GROUP + 1, (b + 1) * GROUP):
                top = max(top, x[i])
            cand[b] = top
        bound = _kth_largest(cand, groups, m, scratch)
    low = bound - 1.0
    nc = 0
    for i in range(n):
        v = np.float64(x[i])
        cand[nc] = v
        nc += v >= low
    xm = _kth_largest(cand, nc, m, scratch)
    kept = 0
    low = xm - 1.0
    for j in range(nc):
        v = cand[j]
        cand[kept] = v
        kept += v >= low
    return xm, kept


@njit(cache=True)
def _walk(cand, nc, total):
    """tau by a walk down the sorted breakpoints of the candidates (the fallback of :func:`unit_threshold`).

    Going down, an entry becomes free at x_i and capped at x_i - 1; g = capped + sum_free x_i - |free| tau
    is kept as those counts and sums (not as slopes times distances, which lose a capped entry whose
    two breakpoints round to one number)."""
    points = np.empty(2 * nc)
    for j in range(nc):
        points[2 * j] = cand[j]
        points[2 * j + 1] = cand[j] - 1.0
    order = np.argsort(-points, kind="mergesort")  # (an entry's x_i before its x_i - 1 when they tie)
    capped, free, s = 0, 0, 0.0
    for j in range(2 * nc):
        t = points[order[j]]
        if free and capped + s - free * t >= total:  # the root lies on the piece above t
            return (capped + s - total) / free
        i = order[j] // 2
        if order[j] % 2 == 0:
            free += 1
            s += cand[i]
        else:
            free -= 1
            s -= cand[i]
            capped += 1
    return points[order[2 * nc - 1]]


@njit(cache=True)
def unit_threshold(cand, nc, xm, total):
    """τ with Σ clip(x_i − τ, 0, 1) = ``total`` from the candidates of a row (:func:`candidates`), 0 < total
    < the row's finite entries; float64."""
    lo, hi = xm - 1.0, xm
    tau = lo
    for _ in range(MAX_STEPS):
        capped, free, s = 0.0, 0.0, 0.0
        for j in range(nc):  # (without branches: the loop vectorises)
            d = cand[j] - tau
            c = d >= 1.0
            f = (d > 0.0) & ~c
            capped += c
            free += f
            s += cand[j] * f
        g = capped + s - free * tau
        if g == total:
            return tau
        if g > total:
            lo = tau
        else:
            hi = tau
        new = (capped + s - total) / free if free else 0.5 * (lo + hi)
        if not lo < new < hi:  # (a step to the end of the bracket, already evaluated, bisects instead)
            new = 0.5 * (lo + hi)
        if new == tau:  # the piece's root, to rounding
            return tau
        tau = new
    return _walk(cand, nc, total)


@njit(cache=True)
def ksubsets_rows(x, total, out):
    """out = clip(x - tau, 0, 1) row by row, with sum ``total`` (R,) over each row of ``x`` (R, N) (-inf: masked,
    0); rows whose total reaches their number of finite entries are 1 on them.

    A row with an integer total m whose m largest scores exceed all others by at least 1 (the structured
    margin) is written as the exact indicator of its m largest: its tau sits on a flat piece of g whose
    end x_(m) - 1 can round (x_i - tau would come out 1 - ulp, or, for scores beyond 2^53, x_(m) - 1 is
    x_(m) itself).
    """
    rows, n = x.shape
    cand = np.empty(n + 1)
    scratch = np.empty(n + 1)
    for r in range(rows):
        row = x[r]
        finite = 0
        for i in range(n):
            finite += row[i] > -np.inf
        if total[r] >= finite:
            for i in range(n):
                out[r, i] = 1.0 if row[i] > -np.inf else 0.0
            continue
        m = int(np.ceil(total[r]))
        xm, nc = candidates(row, m, cand, scratch)
        if total[r] == m:  # integral when exactly m scores reach x_(m) and none lies in (x_(m) - 1, x_(m))
            top, between = 0, 0
            for j in range(nc):
                top += cand[j] >= xm
                between += (cand[j] < xm) & (cand[j] > xm - 1.0)
            if top == m and between == 0:  # the indicator of the m largest (the structured margin holds)
                for i in range(n):
                    out[r, i] = 1.0 if row[i] >= xm else 0.0
                continue
        tau = unit_threshold(cand, nc, xm, total[r])
        for i in range(n):
            out[r, i] = min(max(row[i] - tau, 0.0), 1.0)


@njit(cache=True)
def ksubsets_backward(mu, g, out):
    """The product with the Jacobian of the k-subsets projection, row by row: out = 1_F ⊙ (g − ḡ_F), F the free
    entries 0 < μ_i < 1 and ḡ_F the mean of g over them (0 where F is empty)."""
    rows, n = mu.shape
    for r in range(rows):
        count, total = 0.0, 0.0
        for i in range(n):  # (without branches: the loop vectorises)
            f = (mu[r, i] > 0.0) & (mu[r, i] < 1.0)
            count += f
            total += f * np.float64(g[r, i])
        mean = total / count if count else 0.0
        for i in range(n):
            f = (mu[r, i] > 0.0) & (mu[r, i] < 1.0)
            out[r, i] = f * (g[r, i] - mean)
