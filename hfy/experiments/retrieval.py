"""Exact retrieval as figures: experiments E11.1-E11.2 (chapter ``book/theory/retrieval``) and E11.4
(:func:`kgap_sweep`, chapter ``book/models/sparsemap``).

Two checks of the retrieval propositions (eq-retrieval-margins, eq-retrieval-basin),
run on the torch fast path in float64:

* :func:`gap_sweep` (E11.1): random queries, each rescaled so that the score
  gap of its top memory, β(x_iᵀq − max_{j≠i} x_jᵀq), covers a range; for
  each query, whether one update lands on x_i bit for bit, and the weight left
  on the other memories.
* :func:`empirical_basin_radius` (E11.2): states sampled around each memory at
  growing distances; the empirical one-step basin radius is the distance of the
  closest state that is *not* sent exactly to the memory.  It is compared with
  the guarantee (Δ_i − m/β)/(2M) of :func:`hfy.certify` and with the exact
  inradius of the one-step basin, :func:`exact_inradius`.

:func:`run` bundles both with sizes chosen by ``tier``: 'smoke' (tests),
'book' (the chapter, seconds) or 'full' (larger samples, behind ``HFY_FULL=1``).
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Union

import torch

import hfy

#: The maps of the retrieval propositions: name -> regulariser (margins 2, 1, 1, 1).
SPARSE_MAPS = {
    "1.5-entmax": lambda: hfy.Tsallis(1.5),
    "sparsemax": lambda: hfy.Tsallis(2.0),
    "2-normmax": lambda: hfy.NormEntropy(2.0),
    "5-normmax": lambda: hfy.NormEntropy(5.0),
}

TIERS: Dict[str, dict] = {
    "smoke": dict(n_memories=8, dim=6, n_queries=200, n_instances=2, betas=(2.0, 8.0), n_samples=300),
    "book": dict(n_memories=16, dim=32, n_queries=2000, n_instances=3, betas=(1.0, 10.0), n_samples=1000),
    "full": dict(n_memories=64, dim=64, n_queries=100000, n_instances=40, betas=(0.5, 1.0, 3.0, 10.0, 30.0),
                 n_samples=50000),
}


def uniform_sphere(n: int, dim: int, radius: float = 1.0, generator: Optional[torch.Generator] = None,
                   dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``n`` points drawn uniformly on the sphere of radius ``radius`` in R^dim.

    Returns
    -------
    Tensor, shape (n, dim)
    """
    g = torch.randn(n, dim, generator=generator, dtype=dtype)
    return radius * g / torch.linalg.vector_norm(g, dim=-1, keepdim=True)


def uniform_ball(center: torch.Tensor, radius: Union[float, torch.Tensor], n: int,
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """``n`` points drawn uniformly in the ball(s) of radius ``radius`` around ``center``.

    Parameters
    ----------
    center : Tensor, shape (K, D) or (D,)
    radius : float or Tensor, shape (K,)
    n : int
        Points per ball.

    Returns
    -------
    Tensor, shape (K, n, D) (or (n, D) for a single centre)
    """
    single = center.dim() == 1
    c = center[None] if single else center
    k, d = c.shape
    u = uniform_sphere(k * n, d, 1.0, generator, c.dtype).reshape(k, n, d)
    # the distance to the centre of a uniform point of the D-ball has density ∝ t^(D−1) on [0, 1]
    t = torch.rand(k, n, 1, generator=generator, dtype=c.dtype) ** (1.0 / d)
    rad = torch.as_tensor(radius, dtype=c.dtype).reshape(-1, 1, 1)
    out = c[:, None, :] + rad * t * u
    return out[0] if single else out


def score_gap(theta: torch.Tensor) -> torch.Tensor:
    """Top score minus the runner-up along the last axis, θ_(1) − θ_(2)."""
    top2 = theta.topk(2, dim=-1).values
    return top2[..., 0] - top2[..., 1]


def gap_sweep(X: torch.Tensor, omega, n_queries: int, max_gap: float,
              generator: Optional[torch.Generator] = None, beta: float = 1.0) -> Dict[str, torch.Tensor]:
    """One update from random queries whose score gaps are spread uniformly on [0, ``max_gap``].

    Each Gaussian query q is rescaled, q <- c q with c = s/(β (x_iᵀq − max_{j≠i} x_jᵀq)),
    s uniform on [0, max_gap] and i its top memory, so that the scores βXq have a
    gap of about s (rescaling q is the same as rescaling β, query by query).  The
    score gap is then re-measured on the scores θ = β Xq formed exactly as
    :func:`hfy.update` forms them.

    Parameters
    ----------
    X : Tensor, shape (N, D)
    omega : Regularizer or str
    n_queries : int
    max_gap : float
    beta : float
        The inverse temperature passed to :func:`hfy.update`.

    Returns
    -------
    dict with Tensors of shape (n_queries,): ``gap`` (score gap of βXq), ``exact``
    (``hfy.update(q) == x_i`` in every coordinate), ``one_hot`` (p = e_i exactly),
    ``off_mass`` (Σ_{j≠i} p_j), ``error`` (‖q⁺ − x_i‖_∞) and ``target`` (i).
    """
    n, d = X.shape
    q = torch.randn(n_queries, d, generator=generator, dtype=X.dtype)
    s = q @ X.T
    target = s.argmax(-1)
    wanted = max_gap * torch.rand(n_queries, generator=generator, dtype=X.dtype)
    q = (wanted / (beta * score_gap(s)))[:, None] * q
    theta = beta * (q @ X.transpose(0, 1))  # the scores as hfy.update forms them
    q_next = hfy.update(q, X, beta, omega)
    _, p = hfy.update(q, X, beta, omega, return_weights=True)
    xi = X[target]
    p_target = p.gather(-1, target[:, None])[:, 0]
    off = p.masked_fill(torch.nn.functional.one_hot(target, n).bool(), 0.0).sum(-1)
    return {
        "gap": score_gap(theta),
        "exact": (q_next == xi).all(-1),
        "one_hot": (p_target == 1.0) & (off == 0.0),
        "off_mass": off,
        "error": (q_next - xi).abs().amax(-1),
        "target": target,
    }


def kgap_sweep(X: torch.Tensor, k: int, n_queries: int, max_gap: float,
               generator: Optional[torch.Generator] = None, beta: float = 1.0) -> Dict[str, torch.Tensor]:
    """E11.4: one k-subsets update from random queries whose k-gaps are spread uniformly on [0, ``max_gap``].

    The structured twin of :func:`gap_sweep`: each Gaussian query is rescaled so that the k-th largest
    of the scores βXq leads the (k+1)-th by about s, s uniform on [0, ``max_gap``]; the k-gap is
    re-measured on the scores as :func:`hfy.update` forms them.  One update with ``hfy.KSubsets(k)``
    returns Σ_{top-k} x_i exactly when the k-gap is at least 1 (association retrieval).

    Returns
    -------
    dict with Tensors of shape (n_queries,): ``gap`` (k-gap of βXq), ``exact`` (the marginals are the
    0/1 indicator of the top k, bit for bit), ``fractional`` (how many marginals lie strictly in
    (0, 1)) and ``error`` (‖q⁺ − Σ_{top-k} x_i‖_∞, the rounding of the sum).
    """
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k < X.shape[0]:
        raise ValueError(f"`k` must be an int in [1, N) for N = {X.shape[0]} memories; got {k!r}")
    q = torch.randn(n_queries, X.shape[1], generator=generator, dtype=X.dtype)
    s = (q @ X.T).topk(k + 1, dim=-1).values
    wanted = max_gap * torch.rand(n_queries, generator=generator, dtype=X.dtype)
    q = (wanted / (beta * (s[:, k - 1] - s[:, k])))[:, None] * q
    theta = beta * (q @ X.transpose(0, 1))  # the scores as hfy.update forms them
    top = theta.topk(k + 1, dim=-1)
    omega = hfy.KSubsets(k)
    q_next, mu = hfy.update(q, X, beta, omega, return_weights=True)
    indicator = torch.zeros_like(mu).scatter(-1, top.indices[:, :k], 1.0)
    return {
        "gap": top.values[:, k - 1] - top.values[:, k],
        "exact": (mu == indicator).all(-1),
        "fractional": ((mu > 0) & (mu < 1)).sum(-1),
        "error": (q_next - X[top.indices[:, :k]].sum(1)).abs().amax(-1),
    }


def exact_inradius(X: torch.Tensor, beta: float, margin: float) -> torch.Tensor:
    """Radius of the largest ball around each memory sent exactly to it in one update.

    For a map whose output is e_i exactly when the score gap is at least m, the
    one-step basin of x_i contains the polyhedron {q : β(x_i − x_j)ᵀq >= m, j ≠ i};
    the distance from x_i to its nearest face is

        ρ_i = min_{j≠i} (x_iᵀ(x_i − x_j) − m/β) / ‖x_i − x_j‖,

    which is at least the guarantee (Δ_i − m/β)/(2M).  Negative values (x_i not a
    fixed point, or a duplicate memory) are clipped to 0.

    Returns
    -------
    Tensor, shape (N,)
    """
    diff = X[:, None, :] - X[None, :, :]  # x_i − x_j
    num = (diff * X[:, None, :]).sum(-1) - margin / beta
    den = torch.linalg.vector_norm(diff, dim=-1)
    ratio = torch.where(den > 0, num / den.clamp_min(torch.finfo(X.dtype).tiny), torch.full_like(num, -math.inf))
    ratio.fill_diagonal_(math.inf)
    return ratio.amin(-1).clamp_min(0.0)


def empirical_basin_radius(X: torch.Tensor, beta: float, omega, r_max: torch.Tensor, n_samples: int,
                           generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Smallest distance from x_i of a sampled state that one update does not send exactly to x_i.

    For each memory, states x_i + t u are drawn with u uniform on the unit sphere
    and t uniform on [0, r_max_i]; the result is the smallest t among the failures,
    or r_max_i if every sampled state lands exactly on x_i.  Every state closer
    than the returned radius was retrieved exactly, so it is an empirical upper
    estimate of the one-step basin's inradius.

    Parameters
    ----------
    X : Tensor, shape (N, D)
    beta : float
    omega : Regularizer or str
    r_max : Tensor, shape (N,)
        Largest distance sampled around each memory.
    n_samples : int
        States per memory.

    Returns
    -------
    Tensor, shape (N,)
    """
    n, d = X.shape
    u = uniform_sphere(n * n_samples, d, 1.0, generator, X.dtype).reshape(n, n_samples, d)
    t = torch.rand(n, n_samples, 1, generator=generator, dtype=X.dtype) * r_max.reshape(n, 1, 1)
    q = X[:, None, :] + t * u
    q_next = hfy.update(q, X, beta, omega)
    fail = ~(q_next == X[:, None, :]).all(-1)
    dist = torch.where(fail, t[..., 0], torch.full_like(t[..., 0], math.inf)).amin(-1)
    return torch.minimum(dist, r_max)


def _config(tier: str) -> dict:
    if tier not in TIERS:
        raise ValueError(f"`tier` must be one of {sorted(TIERS)}; got {tier!r}")
    return TIERS[tier]


def sweep_experiment(tier: str = "book", seed: int = 0) -> Dict[str, Dict[str, torch.Tensor]]:
    """E11.1: :func:`gap_sweep` on Gaussian memories for every map of :data:`SPARSE_MAPS` and softmax.

    Sparse maps get score gaps up to 3m, softmax up to 60.
    """
    cfg = _config(tier)
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(cfg["n_memories"], cfg["dim"], generator=g, dtype=torch.float64)
    sweep = {}
    for name, make in SPARSE_MAPS.items():
        omega = make()
        sweep[name] = gap_sweep(X, omega, cfg["n_queries"], 3.0 * omega.margin, g)
    sweep["softmax"] = gap_sweep(X, hfy.Shannon(), cfg["n_queries"], 60.0, g)
    return sweep


def basin_experiment(tier: str = "book", seed: int = 0) -> List[dict]:
    """E11.2: guaranteed, exact and empirical one-step basin radii of the certified memories.

    Each instance has six Gaussian memories in three dimensions with unequal norms
    (few dimensions, so that the sampled directions cover the sphere).

    Returns
    -------
    list of dicts with keys ``map``, ``beta`` and Tensors ``guaranteed`` (r_i of
    :func:`hfy.certify`), ``inradius`` (:func:`exact_inradius`) and ``empirical``
    (:func:`empirical_basin_radius`), over the certified memories of each
    (instance, β, map).
    """
    cfg = _config(tier)
    g = torch.Generator().manual_seed(seed)
    basins = []
    for _ in range(cfg["n_instances"]):
        X = torch.randn(6, 3, generator=g, dtype=torch.float64)
        X = X * (0.5 + torch.rand(6, 1, generator=g, dtype=torch.float64))
        for beta in cfg["betas"]:
            for name, make in SPARSE_MAPS.items():
                omega = make()
                cert = hfy.certify(X, beta, omega)
                keep = cert.fixed_point
                if not bool(keep.any()):
                    continue
                rho = exact_inradius(X, beta, omega.margin)
                emp = empirical_basin_radius(X, beta, omega, 3.0 * rho + 1e-3, cfg["n_samples"], g)
                basins.append(dict(map=name, beta=beta, guaranteed=cert.basin_radius[keep],
                                   inradius=rho[keep], empirical=emp[keep]))
    return basins


def run(tier: str = "book", seed: int = 0) -> Dict[str, object]:
    """Experiment E11.1-E11.2: ``{"sweep": sweep_experiment(...), "basins": basin_experiment(...)}``."""
    return {"sweep": sweep_experiment(tier, seed), "basins": basin_experiment(tier, seed)}
