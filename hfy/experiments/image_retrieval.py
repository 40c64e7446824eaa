"""Experiment E4: image retrieval from half-masked, noisy queries (book chapter ``experiments/image_retrieval``).

Query i is built from memory x_i: add Gaussian noise of standard deviation σ,
clamp to [−1, 1], set the bottom half of the image rows to 0 and flatten.
Every model then runs 5 updates from the query, and the retrieval counts as a
success when cos(q⁽⁵⁾, x_i) > 0.9.  Two sweeps:

* capacity: σ = 0 and a growing number of memories N;
* robustness: N = 100 and a growing σ;

each at the two temperatures β ∈ {1, 0.1}.

Models (the legend labels of the papers' figures).  For the HFY models β
multiplies the scores, q ← ŷ_Ψ(Xᵀ ŷ_Ω(βXq)); the classical and dense models
of the reference scripts put β in a tanh instead, q ← tanh(β Xᵀ F'(β_s Xq)):

=====================  ==========================================  ==============  ============
label                  Ω                                           score β         Ψ
=====================  ==========================================  ==============  ============
Classic HNs            ``Quadratic()`` (weights Xq)                1               ``Tanh(β)``
10-Poly DAM            ``PolynomialDAM(11, convex=False)``         1               ``Tanh(β)``
                       (weights (Xq)^10, parity ``poly_weights``)
Exp DAM                ``ExponentialDAM()`` (weights e^{β_in Xq})  β_in            ``Tanh(β)``
1-entmax               ``Shannon()`` (softmax)                     β               identity
2-entmax               ``Tsallis(2)`` (sparsemax)                  β               identity
2-normmax, 5-normmax   ``NormEntropy(γ)``                          β               identity
norm 2-entmax          ``Tsallis(2)``                              β               ℓ2 (unit sphere)
norm 2-entmax (β=20)   ``Tsallis(2)``, parity ``l2_beta20``        20              ℓ2
lnorm 2-entmax         ``Tsallis(2)``                              β               LayerNorm (biased, ε = 0)
=====================  ==========================================  ==============  ============

β_in is 0.05 for mnist_5k, as in the reference scripts for MNIST, and 0.8 for
the 8×8 digits: β_in times the mean squared pattern norm is then about the
same (≈ 36) on both datasets.  When Ψ normalises (ℓ2, LayerNorm) memories and
queries are pre-transformed with ŷ_Ψ and success is measured against the
transformed memory.

Metrics, as fractions of the N memories: ``success`` (cos > 0.9, the papers'
rate), ``index_accuracy`` (the memory most cosine-similar to q⁽⁵⁾ is x_i: it
guards against near-duplicate images) and ``exact`` (‖q⁽⁵⁾ − x_i‖_∞ < 1e-6).

RNG order (parity with the reference scripts): for trial i,
``torch.manual_seed(i)``, then ``torch.randperm(n_images)[:N]`` picks the
memories and the query noise is the next draw of the same global generator
(float32).  The harness runs this inside :func:`torch.random.fork_rng`, so the
caller's global generator is left untouched.

Tiers
-----
* ``'smoke'``: digits, N ∈ {2, 8, 32}, σ ∈ {0, 5} with N = 32, two models, one trial;
* ``'book'``: digits, N ∈ {2, 4, …, 512}, N = 100 for σ ∈ {0, 2.5, …, 15}, all models, one trial (seconds);
* ``'full'``: mnist_5k, N ∈ {2, 4, …, 4096}, trials 0–4, all models (hours on two CPU cores).

Run ``python -m hfy.experiments.image_retrieval --tier full --out FILE.csv`` to write tidy rows.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

import hfy

from ._tidy import COLUMNS, read_csv, row, select, stored_path, write_csv

#: Image height and width of each dataset.
SHAPES: Dict[str, Tuple[int, int]] = {"digits": (8, 8), "mnist_5k": (28, 28)}

#: Inner temperature of the exponential DAM per dataset (see the module docstring).
EXP_DAM_BETA_IN: Dict[str, float] = {"mnist_5k": 0.05, "digits": 0.8}

#: Success threshold on cos(q⁽⁵⁾, x_i).
COS_THRESHOLD = 0.9

#: Exact retrieval: ‖q − x_i‖_∞ below this.
EXACT_ATOL = 1e-6

#: Updates per query.
N_ITER = 5

#: Fraction of image rows (from the bottom) set to 0 in a query.
MASK_FRACTION = 0.5

#: Metrics recorded per (model, β, N, σ, trial).
METRICS: Tuple[str, ...] = ("success", "index_accuracy", "exact")


@dataclass(frozen=True)
class Method:
    """One model of the comparison.

    Attributes
    ----------
    label : str
        Legend label.
    omega : callable
        Returns the score-side regulariser Ω.
    psi : {'tanh', 'identity', 'l2', 'layernorm'}
        State-side map; 'tanh' carries the sweep's β as its temperature.
    score_beta : {'sweep', 'one', 'beta_in', 'twenty'}
        Where the score-side β comes from: the sweep's β, 1, the dataset's
        β_in (:data:`EXP_DAM_BETA_IN`) or the fixed 20 of the parity switch ``l2_beta20``.
    parity : str
        Parity switches this model turns on ('' in correct mode).
    """

    label: str
    omega: Callable[[], hfy.Regularizer]
    psi: str
    score_beta: str = "sweep"
    parity: str = ""

    @property
    def normalises(self) -> bool:
        """True when Ψ is an idempotent normalisation (memories and queries are pre-transformed)."""
        return self.psi in ("l2", "layernorm")


_ALL = (
    Method("Classic HNs", hfy.Quadratic, "tanh", "one"),
    Method("10-Poly DAM", lambda: hfy.PolynomialDAM(11, convex=False), "tanh", "one", "poly_weights"),
    Method("Exp DAM", hfy.ExponentialDAM, "tanh", "beta_in"),
    Method("1-entmax", hfy.Shannon, "identity"),
    Method("2-entmax", lambda: hfy.Tsallis(2.0), "identity"),
    Method("2-normmax", lambda: hfy.NormEntropy(2.0), "identity"),
    Method("5-normmax", lambda: hfy.NormEntropy(5.0), "identity"),
    Method("norm 2-entmax", lambda: hfy.Tsallis(2.0), "l2"),
    Method("norm 2-entmax (β=20)", lambda: hfy.Tsallis(2.0), "l2", "twenty", "l2_beta20"),
    Method("lnorm 2-entmax", lambda: hfy.Tsallis(2.0), "layernorm"),
)

#: Every model, by label, in legend order.
METHODS: Dict[str, Method] = {m.label: m for m in _ALL}

#: Labels of the classical and dense (tanh) models.
CLASSICAL: Tuple[str, ...] = ("Classic HNs", "10-Poly DAM", "Exp DAM")

#: Labels of the sparse HFY maps with identity Ψ.
SPARSE_HFY: Tuple[str, ...] = ("2-entmax", "2-normmax", "5-normmax")

BETAS: Tuple[float, ...] = (1.0, 0.1)
SIGMAS: Tuple[float, ...] = (0.0, 2.5, 5.0, 7.5, 10.0, 12.5, 15.0)

TIERS: Dict[str, Dict[str, object]] = {
    "smoke": dict(dataset="digits", capacity_N=(2, 8, 32), robust_N=32, sigmas=(0.0, 5.0), trials=(0,),
                  methods=("1-entmax", "2-entmax"), dtype=torch.float64),
    "book": dict(dataset="digits", capacity_N=tuple(2 ** k for k in range(1, 10)), robust_N=100, sigmas=SIGMAS,
                 trials=(0,), methods=tuple(METHODS), dtype=torch.float64),
    "full": dict(dataset="mnist_5k", capacity_N=tuple(2 ** k for k in range(1, 13)), robust_N=100, sigmas=SIGMAS,
                 trials=(0, 1, 2, 3, 4), methods=tuple(METHODS), dtype=torch.float64),
}


def load_images(dataset: str = "digits") -> torch.Tensor:
    """All images of a dataset in [−1, 1], float64, shape (n, H, W): digits (1797, 8, 8), mnist_5k (5000, 28, 28)."""
    import hfy.data

    if dataset == "digits":
        X, _ = hfy.data.load_digits()
    elif dataset == "mnist_5k":
        X, _ = hfy.data.load_mnist_5k()
    else:
        raise ValueError(f"`dataset` must be one of {tuple(SHAPES)}; got {dataset!r}")
    return torch.as_tensor(X, dtype=torch.float64).reshape(-1, *SHAPES[dataset])


def make_queries(images: torch.Tensor, N: int, sigma: float, seed: int,
                 mask_fraction: float = MASK_FRACTION) -> Tuple[torch.Tensor, torch.Tensor]:
    """Draw N memories and their corrupted queries with the reference scripts' RNG order.

    Parameters
    ----------
    images : Tensor, shape (n, H, W)
    N : int
        Number of memories, at most n.
    sigma : float
        Standard deviation of the Gaussian noise added before clamping to [−1, 1].
    seed : int
        Trial seed: ``torch.manual_seed(seed)``, ``torch.randperm(n)[:N]``, then the noise.
    mask_fraction : float
        The bottom ``int(mask_fraction * H)`` rows of each query are set to 0.

    Returns
    -------
    memories : Tensor, shape (N, H·W)
    queries : Tensor, shape (N, H·W)
        Same dtype as ``images``.
    """
    n, height, width = images.shape
    if not 1 <= int(N) <= n:
        raise ValueError(f"`N` must be in [1, {n}]; got {N}")
    if not sigma >= 0:
        raise ValueError(f"`sigma` must be >= 0; got {sigma}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        idx = torch.randperm(n)[: int(N)]
        noise = torch.randn(int(N), height, width)
    clean = images[idx]
    noisy = (clean + float(sigma) * noise.to(images.dtype)).clamp(-1.0, 1.0)
    rows_off = int(mask_fraction * height)
    if rows_off > 0:
        noisy[:, height - rows_off:, :] = 0.0
    return clean.reshape(int(N), -1), noisy.reshape(int(N), -1)


def settings(method: Method, beta: float, dataset: str) -> Tuple[float, hfy.Regularizer, hfy.PostTransform]:
    """The (score β, Ω, Ψ) with which ``method`` runs at the sweep temperature ``beta`` on ``dataset``."""
    score_beta = {"sweep": float(beta), "one": 1.0, "twenty": 20.0,
                  "beta_in": EXP_DAM_BETA_IN.get(dataset, 0.05)}[method.score_beta]
    psi = {"tanh": lambda: hfy.Tanh(beta), "identity": hfy.Identity, "l2": hfy.L2Normalize,
           "layernorm": lambda: hfy.LayerNorm(eps=0.0)}[method.psi]()
    return score_beta, method.omega(), psi


def retrieve_images(memories: torch.Tensor, queries: torch.Tensor, method: Method, beta: float,
                    dataset: str = "digits", n_iter: int = N_ITER) -> Tuple[torch.Tensor, torch.Tensor]:
    """Run ``n_iter`` updates of one model from the queries.

    Parameters
    ----------
    memories, queries : Tensor, shape (N, D)
    method : Method
    beta : float
        The sweep temperature (placed as :func:`settings` says).
    dataset : str
        Selects β_in for the exponential DAM.
    n_iter : int

    Returns
    -------
    states : Tensor, shape (N, D)
        q⁽ⁿ⁾ for every query.
    targets : Tensor, shape (N, D)
        The memories the states are compared with: ŷ_Ψ(x_i) when Ψ normalises, x_i otherwise.

    See Also
    --------
    hfy.update
    """
    score_beta, omega, psi = settings(method, beta, dataset)
    targets = psi.predict(memories) if method.normalises else memories
    q = psi.predict(queries) if method.normalises else queries
    for _ in range(int(n_iter)):
        q = hfy.update(q, targets, score_beta, omega, psi)
    return q, targets


def cosine_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """cos(a_i, b_j), shape (len(a), len(b)); a zero vector has cosine 0 with everything."""
    na = torch.linalg.vector_norm(a, dim=-1, keepdim=True)
    nb = torch.linalg.vector_norm(b, dim=-1, keepdim=True)
    a = torch.where(na > 0, a / torch.where(na > 0, na, torch.ones_like(na)), torch.zeros_like(a))
    b = torch.where(nb > 0, b / torch.where(nb > 0, nb, torch.ones_like(nb)), torch.zeros_like(b))
    return a @ b.transpose(0, 1)


def retrieval_metrics(states: torch.Tensor, targets: torch.Tensor) -> Dict[str, float]:
    """Fractions of queries retrieved: ``success`` (cos > 0.9), ``index_accuracy`` and ``exact``.

    Parameters
    ----------
    states : Tensor, shape (N, D)
        Final states, row i started from the query of memory i.
    targets : Tensor, shape (N, D)
        The (transformed) memories.

    Returns
    -------
    dict of str to float
    """
    cos = cosine_matrix(states, targets)
    own = cos.diagonal()
    idx = torch.arange(states.shape[0], device=states.device)
    exact = (states - targets).abs().amax(-1) < EXACT_ATOL
    return {
        "success": float((own > COS_THRESHOLD).double().mean()),
        "index_accuracy": float((cos.argmax(-1) == idx).double().mean()),
        "exact": float(exact.double().mean()),
    }


def _rows_for(result: Dict[str, float], method: Method, beta: float, N: int, sigma: float, seed: int,
              dataset: str, tier: str, sweep: str) -> List[Dict[str, object]]:
    reg = method.omega()
    param = {"Shannon": 1.0}.get(type(reg).__name__, getattr(reg, "alpha", getattr(reg, "gamma", math.nan)))
    if isinstance(reg, hfy.PolynomialDAM):
        param = float(reg.n)
    if isinstance(reg, hfy.ExponentialDAM):
        param = EXP_DAM_BETA_IN.get(dataset, 0.05)
    psi = {"tanh": "Tanh", "identity": "Identity", "l2": "L2Normalize", "layernorm": "LayerNorm"}[method.psi]
    return [row(experiment=f"E4/{sweep}", dataset=dataset, method=method.label, omega=type(reg).__name__,
                omega_param=float(param), psi=psi, beta=float(beta), N=int(N), sigma=float(sigma), seed=int(seed),
                tier=tier, parity=method.parity, metric=name, value=value) for name, value in result.items()]


def run(tier: str = "book", *, dataset: Optional[str] = None, methods: Optional[Sequence[str]] = None,
        betas: Sequence[float] = BETAS, capacity_N: Optional[Sequence[int]] = None,
        robust_N: Optional[int] = None, sigmas: Optional[Sequence[float]] = None,
        trials: Optional[Sequence[int]] = None, sweeps: Sequence[str] = ("capacity", "robustness"),
        dtype: Optional[torch.dtype] = None, progress: bool = False) -> List[Dict[str, object]]:
    """Run the capacity and robustness sweeps and return tidy rows.

    Parameters
    ----------
    tier : {'smoke', 'book', 'full'}
        Defaults for every other argument (see :data:`TIERS`).
    dataset : {'digits', 'mnist_5k'}, optional
    methods : sequence of str, optional
        Labels from :data:`METHODS`.
    betas : sequence of float
        Sweep temperatures.
    capacity_N : sequence of int, optional
        Memory counts of the capacity sweep (σ = 0).
    robust_N : int, optional
        Memory count of the robustness sweep.
    sigmas : sequence of float, optional
        Noise levels of the robustness sweep.
    trials : sequence of int, optional
        Trial seeds.
    sweeps : sequence of {'capacity', 'robustness'}
    dtype : torch.dtype, optional
        Working precision (float64 by default, so that ``exact`` is meaningful).
    progress : bool
        Print one line per (sweep, N, σ, trial).

    Returns
    -------
    list of dict
        One row per (sweep, model, β, N, σ, trial, metric); ``experiment`` is
        'E4/capacity' or 'E4/robustness', ``beta`` the sweep temperature (for
        'Exp DAM' ``omega_param`` holds β_in; the 'l2_beta20' model runs at
        score β = 20 whatever ``beta`` says).
    """
    if tier not in TIERS:
        raise ValueError(f"`tier` must be one of {tuple(TIERS)}; got {tier!r}")
    cfg = TIERS[tier]
    dataset = dataset or cfg["dataset"]
    labels = tuple(methods or cfg["methods"])
    unknown = [m for m in labels if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {tuple(METHODS)}")
    dtype = dtype or cfg["dtype"]
    trials = tuple(cfg["trials"] if trials is None else trials)
    images = load_images(dataset).to(dtype)
    plan = []
    if "capacity" in sweeps:
        plan += [("capacity", int(N), 0.0) for N in (capacity_N or cfg["capacity_N"])]
    if "robustness" in sweeps:
        plan += [("robustness", int(robust_N or cfg["robust_N"]), float(s)) for s in (sigmas or cfg["sigmas"])]
    rows: List[Dict[str, object]] = []
    for sweep, N, sigma in plan:
        for seed in trials:
            memories, queries = make_queries(images, N, sigma, seed)
            for label in labels:
                for beta in betas:
                    states, targets = retrieve_images(memories, queries, METHODS[label], beta, dataset)
                    rows += _rows_for(retrieval_metrics(states, targets), METHODS[label], beta, N, sigma, seed,
                                      dataset, tier, sweep)
            if progress:
                print(f"{sweep} N={N} sigma={sigma} seed={seed} done", flush=True)
    return rows


#: File name of the stored full-tier rows (``book/experiments/data``), gzip-compressed CSV.
STORED = "image_retrieval_mnist_5k.csv.gz"


def stored_rows() -> Optional[List[Dict[str, object]]]:
    """The stored full-tier rows (mnist_5k, 5 trials, float64) when running from a source checkout; None otherwise.

    They were written by ``python -m hfy.experiments.image_retrieval --tier full --out book/experiments/data/``
    followed by the file name :data:`STORED`.
    """
    path = stored_path(STORED)
    return read_csv(path) if path is not None else None


def summary(rows: Sequence[Dict[str, object]], sweep: str, metric: str = "success"
            ) -> Dict[Tuple[float, str], Dict[str, np.ndarray]]:
    """Median and interquartile range over trials along a sweep.

    Returns
    -------
    dict
        {(β, method): {'x': N or σ values, 'median', 'q25', 'q75': arrays}}.
    """
    xname = "N" if sweep == "capacity" else "sigma"
    groups: Dict[Tuple[float, str], Dict[float, List[float]]] = {}
    for r in rows:
        if r["experiment"] != f"E4/{sweep}" or r["metric"] != metric:
            continue
        groups.setdefault((float(r["beta"]), r["method"]), {}).setdefault(float(r[xname]), []).append(float(r["value"]))
    out = {}
    for key, by_x in groups.items():
        xs = np.array(sorted(by_x))
        vals = [np.array(by_x[x]) for x in xs]
        out[key] = dict(x=xs, median=np.array([np.median(v) for v in vals]),
                        q25=np.array([np.percentile(v, 25) for v in vals]),
                        q75=np.array([np.percentile(v, 75) for v in vals]))
    return out


def _n_reliable(curve: Dict[str, np.ndarray], level: float) -> float:
    """The largest grid value up to which the median stays >= level (0 if it starts below)."""
    below = np.flatnonzero(curve["median"] < level)
    if below.size == 0:
        return float(curve["x"][-1])
    return float(curve["x"][below[0] - 1]) if below[0] > 0 else 0.0


#: Post-transformed models compared with 2-entmax (identity Ψ) by :func:`check`.
POST_TRANSFORMED: Tuple[str, ...] = ("norm 2-entmax", "norm 2-entmax (β=20)", "lnorm 2-entmax")


def check(rows: Sequence[Dict[str, object]], level: float = 0.9, low: float = 0.1,
          betas: Optional[Sequence[float]] = None) -> Dict[str, List[str]]:
    """The qualitative reproduction criteria of E4, as lists of violations (an empty list: the criterion holds).

    Parameters
    ----------
    rows : list of dict
        Output of :func:`run` (any number of trials).
    level : float
        Success level that defines "reliable up to N" for ``classical_degrade_first``.
    low : float
        The β that stands for the papers' 0.1 in the ``low_beta_*`` criteria.
    betas : sequence of float, optional
        Only check these temperatures.

    Returns
    -------
    dict of str to list of str
        Criteria (medians over trials; "within the IQR" means the interquartile bands overlap):

        * ``sparse_ge_softmax``: at σ = 0 every sparse HFY map with identity Ψ is >= 1-entmax at every N;
        * ``low_beta_softmax_degrades``: at β = ``low``, 1-entmax ends lower than it starts;
        * ``low_beta_sparse_hold``: at β = ``low``, 2-entmax and 2-normmax stay >= 0.95 up to the largest N;
        * ``classical_degrade_first``: every classical or dense model stays at or above ``level`` up to a
          smaller N than every sparse HFY map;
        * ``post_ge_identity: <model>``: the post-transformed model is >= 2-entmax at every point of both
          sweeps, within the IQR (one entry per model of :data:`POST_TRANSFORMED`);
        * ``robust_monotone``: success does not increase with σ for any model, within the IQR.

        A criterion the rows cannot decide (a model or a sweep missing, β = ``low`` not run) is left out.
    """
    out: Dict[str, List[str]] = {k: [] for k in ("sparse_ge_softmax", "low_beta_softmax_degrades",
                                                  "low_beta_sparse_hold", "classical_degrade_first")}
    for m in POST_TRANSFORMED:
        out[f"post_ge_identity: {m}"] = []
    out["robust_monotone"] = []
    evaluated = set()
    keep = None if betas is None else {float(b) for b in betas}
    cap = {k: v for k, v in summary(rows, "capacity").items() if keep is None or k[0] in keep}
    rob = {k: v for k, v in summary(rows, "robustness").items() if keep is None or k[0] in keep}
    for beta in sorted({b for b, _ in cap} | {b for b, _ in rob}):
        soft = cap.get((beta, "1-entmax"))
        for m in SPARSE_HFY:
            cur = cap.get((beta, m))
            if soft is None or cur is None:
                continue
            evaluated.add("sparse_ge_softmax")
            for x, a, b in zip(cur["x"], cur["median"], soft["median"]):
                if a < b:
                    out["sparse_ge_softmax"].append(f"β={beta:.3g} {m} N={x:g}: {a:.3f} < 1-entmax {b:.3f}")
        if beta == low and soft is not None:
            evaluated.add("low_beta_softmax_degrades")
            if not soft["median"][-1] < soft["median"][0]:
                out["low_beta_softmax_degrades"].append(
                    f"1-entmax {soft['median'][0]:.3f} at N={soft['x'][0]:g}, "
                    f"{soft['median'][-1]:.3f} at N={soft['x'][-1]:g}")
            for m in ("2-entmax", "2-normmax"):
                cur = cap.get((beta, m))
                if cur is not None:
                    evaluated.add("low_beta_sparse_hold")
                    for x, a in zip(cur["x"], cur["median"]):
                        if a < 0.95:
                            out["low_beta_sparse_hold"].append(f"{m} N={x:g}: {a:.3f} < 0.95")
        classical = {m: _n_reliable(cap[(beta, m)], level) for m in CLASSICAL if (beta, m) in cap}
        sparse = {m: _n_reliable(cap[(beta, m)], level) for m in SPARSE_HFY if (beta, m) in cap}
        if classical and sparse:
            evaluated.add("classical_degrade_first")
        if classical and sparse and not max(classical.values()) < min(sparse.values()):
            out["classical_degrade_first"].append(
                f"β={beta:.3g}: success >= {level} up to N = {classical} (classical/dense) vs {sparse} (sparse HFY)")
        for data, name in ((cap, "capacity"), (rob, "robustness")):
            ref = data.get((beta, "2-entmax"))
            for m in POST_TRANSFORMED:
                cur = data.get((beta, m))
                if ref is None or cur is None:
                    continue
                evaluated.add(f"post_ge_identity: {m}")
                for i, x in enumerate(cur["x"]):
                    if cur["q75"][i] < ref["q25"][i]:
                        out[f"post_ge_identity: {m}"].append(
                            f"{name} β={beta:.3g} at {x:g}: {cur['median'][i]:.3f} < 2-entmax {ref['median'][i]:.3f}")
    for (beta, m), cur in rob.items():
        evaluated.add("robust_monotone")
        for k in range(1, len(cur["x"])):
            if cur["q25"][k] > cur["q75"][k - 1]:
                out["robust_monotone"].append(
                    f"β={beta:.3g} {m}: σ={cur['x'][k - 1]:g} → {cur['x'][k]:g}: "
                    f"{cur['median'][k - 1]:.3f} → {cur['median'][k]:.3f}")
    return {k: v for k, v in out.items() if k in evaluated}


_STYLES = {
    "Classic HNs": ("tab:gray", ":"), "10-Poly DAM": ("tab:brown", ":"), "Exp DAM": ("tab:pink", ":"),
    "1-entmax": ("tab:blue", "-"), "2-entmax": ("tab:orange", "-"), "2-normmax": ("tab:green", "-"),
    "5-normmax": ("tab:red", "-"), "norm 2-entmax": ("tab:purple", "--"),
    "norm 2-entmax (β=20)": ("tab:purple", "-."), "lnorm 2-entmax": ("tab:olive", "--"),
}


def plot_sweep(rows: Sequence[Dict[str, object]], sweep: str, metrics: Sequence[str] = METRICS, axes=None):
    """Curves of a sweep: one row of panels per β, one column per metric; bands = IQR over trials.

    Needs matplotlib.  Returns the array of axes.
    """
    import matplotlib.pyplot as plt

    data = {m: summary(rows, sweep, m) for m in metrics}
    betas = sorted({b for b, _ in data[metrics[0]]}, reverse=True)
    if axes is None:
        _, axes = plt.subplots(len(betas), len(metrics), figsize=(3.2 * len(metrics), 2.6 * len(betas)),
                               sharex=True, sharey=True, squeeze=False)
    labels = [m for m in METHODS if any(k[1] == m for k in data[metrics[0]])]
    for i, beta in enumerate(betas):
        for j, metric in enumerate(metrics):
            ax = axes[i][j]
            for label in labels:
                cur = data[metric].get((beta, label))
                if cur is None:
                    continue
                colour, style = _STYLES.get(label, ("black", "-"))
                ax.plot(cur["x"], cur["median"], style, color=colour, lw=1.3, marker=".", ms=4, label=label)
                if np.any(cur["q75"] > cur["q25"]):
                    ax.fill_between(cur["x"], cur["q25"], cur["q75"], color=colour, alpha=0.15, lw=0)
            if sweep == "capacity":
                ax.set_xscale("log", base=2)
            ax.set_ylim(-0.03, 1.03)
            ax.set_title(f"{metric.replace('_', ' ')}, β = {beta:g}", fontsize=9)
            if i == len(betas) - 1:
                ax.set_xlabel("N (memories)" if sweep == "capacity" else "σ (noise std)")
            if j == 0:
                ax.set_ylabel("fraction retrieved")
    handles, names = axes[0][0].get_legend_handles_labels()
    axes[0][0].figure.legend(handles, names, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return axes


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Command line: ``python -m hfy.experiments.image_retrieval --tier full --out rows.csv``.

    Rows are appended to ``--out`` (plain CSV) after every grid point, so an interrupted run keeps its results.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tier", choices=tuple(TIERS), default="full")
    parser.add_argument("--dataset", choices=tuple(SHAPES), default=None)
    parser.add_argument("--trials", type=int, nargs="*", default=None)
    parser.add_argument("--min-n", type=int, default=None, help="cut the capacity grid below this N")
    parser.add_argument("--max-n", type=int, default=None, help="cut the capacity grid above this N")
    parser.add_argument("--sweeps", nargs="*", default=("robustness", "capacity"))
    parser.add_argument("--float32", action="store_true", help="work in float32 (exact rates become approximate)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", default=None, help="CSV file the tidy rows are appended to")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = TIERS[args.tier]
    grid = [n for n in cfg["capacity_N"] if (args.min_n or 0) <= n <= (args.max_n or n)]
    points = []
    for sweep in args.sweeps:
        if sweep == "capacity":
            points += [dict(sweeps=("capacity",), capacity_N=(n,)) for n in grid]
        elif sweep == "robustness":
            points += [dict(sweeps=("robustness",), sigmas=(s,)) for s in cfg["sigmas"]]
        else:
            parser.error(f"unknown sweep {sweep!r}")
    rows: List[Dict[str, object]] = []
    for point in points:
        new = run(args.tier, dataset=args.dataset, trials=args.trials,
                  dtype=torch.float32 if args.float32 else None, progress=True, **point)
        rows += new
        if args.out:
            fresh = not os.path.exists(args.out)
            with open(args.out, "a", newline="", encoding="utf-8") as fh:
                writer = csv.DictWriter(fh, fieldnames=COLUMNS)
                if fresh:
                    writer.writeheader()
                writer.writerows(new)
    for name, bad in check(rows).items():
        print(f"{name}: {'holds' if not bad else 'fails: ' + '; '.join(bad[:5])}")


__all__ = ["SHAPES", "EXP_DAM_BETA_IN", "COS_THRESHOLD", "EXACT_ATOL", "N_ITER", "METRICS", "Method", "METHODS",
           "CLASSICAL", "SPARSE_HFY", "POST_TRANSFORMED", "BETAS", "SIGMAS", "TIERS", "load_images", "make_queries",
           "settings", "retrieve_images", "cosine_matrix", "retrieval_metrics", "run", "summary", "check", "plot_sweep",
           "main", "read_csv", "write_csv", "select", "STORED", "stored_rows"]

if __name__ == "__main__":  # pragma: no cover
    main()
