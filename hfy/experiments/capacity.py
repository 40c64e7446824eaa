"""Exponential storage capacity: experiment E11.3 (chapter ``book/theory/capacity``).

Random patterns on the sphere S^{D−1} whose pairwise angles are all at least 60°
are retrieved exactly in one update from anywhere within radius r < M/4, once
β >= m/(M²/2 − 2Mr) (eq-capacity-beta).  A union bound over pairs with the
spherical-cap inequality σ(cap_θ) <= ½ sin^{D−1}θ (eq-capacity-cap) gives

    P(min pairwise angle < 60°) <= (N²/4) (√3/2)^{D−1}                  (eq-capacity-union)

so N = 2√p (2/√3)^{(D−1)/2} random patterns are well separated with probability
at least 1 − p (eq-capacity-n).  This module estimates these probabilities by Monte
Carlo and checks exact retrieval on the well-separated draws.

Sizes come from ``tier``: 'smoke' (tests), 'book' (the chapter, seconds) and
'full' (more trials and dimensions, behind ``HFY_FULL=1``).
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Sequence

import numpy as np
import torch
from scipy.special import betainc
from scipy.stats import beta as beta_distribution

import hfy
from hfy._torch.energy import as_omega

from .retrieval import uniform_ball, uniform_sphere

#: cos 60°: two unit vectors are "well separated" when their inner product is at most this.
COS_60 = 0.5

TIERS: Dict[str, dict] = {
    "smoke": dict(dims=(8, 16), trials=200, p=0.1, cap_samples=20000, retrieval_dims=(16,), configs=2,
                  queries=16),
    "book": dict(dims=(8, 16, 24, 32, 40, 48, 56, 64), trials=400, p=0.1, cap_samples=200000,
                 retrieval_dims=(32, 64), configs=4, queries=32),
    "full": dict(dims=(8, 16, 24, 32, 40, 48, 56, 64, 72, 80), trials=2000, p=0.1, cap_samples=5000000,
                 retrieval_dims=(32, 64, 80), configs=50, queries=256),
}


def cap_measure(theta, dim: int) -> np.ndarray:
    """Normalised surface measure of a spherical cap of angular radius ``theta`` on S^{dim−1}.

    σ(cap_θ) = P(angle(x, e_1) <= θ) for x uniform on the sphere, computed with the
    regularised incomplete beta function: ½ I_{sin²θ}((D−1)/2, ½) for θ <= π/2, and
    1 − σ(cap_{π−θ}) beyond.
    """
    theta = np.asarray(theta, dtype=np.float64)
    if dim < 2:
        raise ValueError(f"`dim` must be >= 2; got {dim}")
    half = 0.5 * betainc((dim - 1) / 2.0, 0.5, np.sin(np.minimum(theta, np.pi - theta)) ** 2)
    return np.where(theta <= np.pi / 2, half, 1.0 - half)


def cap_bound(theta, dim: int) -> np.ndarray:
    """The cap inequality's right-hand side ½ sin^{D−1}θ (valid for 0 <= θ <= π/2), eq-capacity-cap."""
    return 0.5 * np.sin(np.asarray(theta, dtype=np.float64)) ** (dim - 1)


def union_bound(n, dim: int) -> np.ndarray:
    """Lower bound on P(N random points of S^{D−1} have all pairwise angles >= 60°): 1 − (N²/4)(√3/2)^{D−1}.

    Clipped at 0 (eq-capacity-union).
    """
    n = np.asarray(n, dtype=np.float64)
    return np.maximum(0.0, 1.0 - n**2 / 4.0 * (math.sqrt(3) / 2.0) ** (dim - 1))


def capacity_bound(dim, p: float) -> np.ndarray:
    """N = 2√p (2/√3)^{(D−1)/2}: this many random patterns are 60°-separated with probability >= 1 − p (eq-capacity-n)."""
    dim = np.asarray(dim, dtype=np.float64)
    return 2.0 * math.sqrt(p) * (2.0 / math.sqrt(3)) ** ((dim - 1) / 2.0)


def cap_monte_carlo(dim: int, thetas: Sequence[float], n_samples: int,
                    generator: Optional[torch.Generator] = None) -> np.ndarray:
    """Fraction of uniform points of S^{D−1} within angle θ of a fixed pole, for each θ.

    Only the first coordinate of each point matters: the angle to e_1 is ≤ θ iff x_1 ≥ cos θ.
    """
    x1 = uniform_sphere(n_samples, dim, 1.0, generator)[:, 0]
    cos = torch.cos(torch.as_tensor(np.asarray(thetas), dtype=torch.float64))
    return (x1[None, :] >= cos[:, None]).double().mean(-1).numpy()


def separated_prefix(dim: int, n_max: int, trials: int, generator: Optional[torch.Generator] = None,
                     cos_max: float = COS_60, chunk: Optional[int] = None) -> torch.Tensor:
    """For each trial, how many of n_max uniform points of S^{D−1} (in draw order) stay pairwise ≥ 60° apart.

    Trial t draws x_1, …, x_{n_max} and returns K_t = the largest k such that every
    pair among x_1, …, x_k has inner product <= ``cos_max``.  Then, for every N <= n_max,
    P(N random points are 60°-separated) = P(K >= N), so one Gram matrix per trial
    gives the whole curve in N.  Trials are processed ``chunk`` at a time (by
    default as many as keep a chunk's Gram matrices near 2.5·10^7 entries).

    Returns
    -------
    Tensor of int64, shape (trials,), values in [1, n_max]
    """
    if chunk is None:
        chunk = max(1, min(trials, int(2.5e7 // (n_max * n_max))))
    out = []
    lower = torch.ones(n_max, n_max, dtype=torch.bool).tril(-1)  # pairs (j, i) with i < j
    index = torch.arange(n_max)
    for start in range(0, trials, chunk):
        t = min(chunk, trials - start)
        x = uniform_sphere(t * n_max, dim, 1.0, generator).reshape(t, n_max, dim)
        gram = x @ x.transpose(1, 2)
        clash = ((gram > cos_max) & lower).any(-1)  # point j is too close to an earlier point
        first = torch.where(clash, index, torch.full_like(index, n_max)).amin(-1)
        out.append(first)
    return torch.cat(out)


def prob_separated(k: torch.Tensor, ns) -> np.ndarray:
    """Monte Carlo estimate of P(N points are 60°-separated) = mean(K >= N) for each N in ``ns``."""
    ns = torch.as_tensor(np.asarray(ns))
    return (k[None, :] >= ns[:, None]).double().mean(-1).numpy()


def upper_confidence(k: torch.Tensor, ns, level: float = 1e-6) -> np.ndarray:
    """One-sided Clopper-Pearson upper confidence limit for P(N points are 60°-separated), for each N.

    With s successes in T trials, the limit is the (1 − ``level``) quantile of
    Beta(s + 1, T − s) (1 when s = T).  A Monte Carlo estimate below a lower bound b
    is consistent with the bound as long as this limit is at least b: only then can
    the shortfall be blamed on sampling at significance ``level``.
    """
    trials = k.numel()
    succ = np.rint(prob_separated(k, ns) * trials)
    upper = beta_distribution.ppf(1.0 - level, succ + 1, np.maximum(trials - succ, 1e-300))
    return np.where(succ >= trials, 1.0, upper)


def largest_n(k: torch.Tensor, p: float) -> int:
    """Largest N whose estimated probability of being 60°-separated is at least 1 − p."""
    ks = torch.sort(k).values
    # P(K >= N) >= 1 − p  <=>  at most a fraction p of the trials have K < N
    allowed = int(math.floor(p * k.numel()))
    return int(ks[allowed].item())


def n_max_for(dim: int, level: float = 0.35) -> int:
    """A sample size past which P(separated) has dropped to about ``level`` (Poisson heuristic)."""
    sigma = float(cap_measure(math.pi / 3, dim))
    return max(4, int(math.ceil(math.sqrt(2.0 * math.log(1.0 / level) / sigma))) + 2)


def separated_configs(dim: int, n: int, count: int, radius: float = 1.0,
                      generator: Optional[torch.Generator] = None, max_draws: int = 100000) -> torch.Tensor:
    """``count`` draws of ``n`` uniform points on the sphere of radius ``radius`` whose pairwise angles are all >= 60°.

    Draws failing the angle condition are rejected.

    Returns
    -------
    Tensor, shape (count, n, dim)
    """
    kept, drawn = [], 0
    while len(kept) < count:
        if drawn >= max_draws:
            raise RuntimeError(f"fewer than {count} separated draws of N = {n} in D = {dim} after {drawn} tries")
        x = uniform_sphere(n, dim, 1.0, generator)
        drawn += 1
        gram = x @ x.T
        gram.fill_diagonal_(-1.0)
        if float(gram.max()) <= COS_60:
            kept.append(radius * x)
    return torch.stack(kept)


def retrieval_beta(margin: float, radius: float, r: float) -> float:
    """β = m/(M²/2 − 2Mr), the inverse temperature of eq-capacity-beta (needs r < M/4)."""
    if not 0 <= r < radius / 4:
        raise ValueError(f"`r` must satisfy 0 <= r < M/4 = {radius / 4}; got {r}")
    return margin / (radius**2 / 2.0 - 2.0 * radius * r)


def check_retrieval(X: torch.Tensor, omega, r: float, queries: int,
                    generator: Optional[torch.Generator] = None) -> Dict[str, object]:
    """One update from states within distance r of every pattern, at β of eq-capacity-beta.

    Half of the states are uniform in the ball B(x_i, r) and half on its boundary
    sphere; the patterns themselves are also tried (r = 0).

    Returns
    -------
    dict with ``beta``, ``n_states`` and ``exact`` (number of states sent to their pattern bit for bit).
    """
    n, d = X.shape
    radius = float(torch.linalg.vector_norm(X, dim=-1).max())
    omega = as_omega(omega)
    beta = retrieval_beta(omega.margin, radius, r)
    inside = uniform_ball(X, r, queries // 2, generator)
    shell = X[:, None, :] + uniform_sphere(n * (queries - queries // 2), d, r, generator).reshape(n, -1, d)
    q = torch.cat([X[:, None, :], inside, shell], 1)
    q_next = hfy.update(q, X, beta, omega)
    exact = (q_next == X[:, None, :]).all(-1)
    return {"beta": beta, "n_states": int(exact.numel()), "exact": int(exact.sum())}


def run(tier: str = "book", seed: int = 0) -> Dict[str, object]:
    """Experiment E11.3.

    Returns
    -------
    dict with
        ``cap``: {D: (thetas, Monte Carlo σ, exact σ, bound)} for D in (3, 8, 16, 32);
        ``prefix``: {D: K} (output of :func:`separated_prefix`) for every D of the tier;
        ``largest``: {D: largest N with estimated P >= 1 − p};
        ``retrieval``: list of dicts (D, N, map, β, states, exact) on separated draws.
    """
    if tier not in TIERS:
        raise ValueError(f"`tier` must be one of {sorted(TIERS)}; got {tier!r}")
    cfg = TIERS[tier]
    g = torch.Generator().manual_seed(seed)
    thetas = np.radians([15.0, 30.0, 45.0, 60.0, 75.0, 90.0])
    cap = {}
    for dim in (3, 8, 16, 32):
        mc = cap_monte_carlo(dim, thetas, cfg["cap_samples"], g)
        cap[dim] = (thetas, mc, cap_measure(thetas, dim), cap_bound(thetas, dim))
    prefix, largest = {}, {}
    for dim in cfg["dims"]:
        prefix[dim] = separated_prefix(dim, n_max_for(dim), cfg["trials"], g)
        largest[dim] = largest_n(prefix[dim], cfg["p"])
    retrieval = []
    for dim in cfg["retrieval_dims"]:
        n = max(2, largest[dim])
        configs = separated_configs(dim, n, cfg["configs"], 2.0, g)
        for name, omega in (("sparsemax", hfy.Tsallis(2.0)), ("1.5-entmax", hfy.Tsallis(1.5)),
                            ("2-normmax", hfy.NormEntropy(2.0))):
            for X in configs:
                res = check_retrieval(X, omega, r=2.0 / 8, queries=cfg["queries"], generator=g)
                retrieval.append(dict(D=dim, N=n, map=name, **res))
    return {"cap": cap, "prefix": prefix, "largest": largest, "retrieval": retrieval}
