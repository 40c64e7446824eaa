"""Smoke tests of the metastable-state harness (experiment E1, ``hfy.experiments.metastable``)."""

import math

import numpy as np
import pytest
import torch

import hfy
import hfy.reference as ref
from hfy.experiments import metastable as ms
from hfy.experiments._tidy import COLUMNS
from hfy.testing import PROPERTY_ATOL, REFERENCE_ATOL

pytest.importorskip("sklearn")


def test_split_sizes():
    memories, queries = ms.load_split("digits")
    assert memories.shape == (1437, 64) and queries.shape == (360, 64)
    assert memories.min() >= -1 and memories.max() <= 1
    with pytest.raises(ValueError):
        ms.load_split("cifar")


@pytest.mark.parametrize("label", ms.METHODS)
def test_final_weights_match_reference(label):
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(12, 5))
    Q = rng.uniform(-1, 1, size=(4, 5))
    reg = ms.method_omega(label)
    ref_reg = {"softmax": ref.Shannon(), "1.5-entmax": ref.Tsallis(1.5), "sparsemax": ref.Tsallis(2.0),
               "2-normmax": ref.NormEntropy(2.0), "5-normmax": ref.NormEntropy(5.0)}[label]
    q = Q.copy()
    for _ in range(ms.N_ITER):
        q, p = ref.update(q, X, 2.0, ref_reg, "identity")
    got = ms.final_weights(torch.tensor(X), torch.tensor(Q), 2.0, reg)
    np.testing.assert_allclose(got.numpy(), p, atol=REFERENCE_ATOL)


def test_support_histogram_bins():
    sizes = torch.tensor([1, 1, 2, 10, 11, 0, 400])
    pct = ms.support_histogram(sizes)
    assert len(pct) == len(ms.BINS) == 11
    assert math.isclose(sum(pct), 100.0, abs_tol=PROPERTY_ATOL)
    assert math.isclose(pct[0], 200 / 7) and math.isclose(pct[-1], 300 / 7)  # 0 counts as "> 10"
    with pytest.raises(ValueError):
        ms.support_histogram(torch.tensor([], dtype=torch.long))


def test_smoke_run_rows_and_table(tmp_path):
    rows = ms.run("smoke")
    assert {r["method"] for r in rows} == {"softmax", "sparsemax"}
    assert len(rows) == 2 * 2 * (len(ms.BINS) + 3)
    assert all(tuple(r) == COLUMNS for r in rows)
    hist = ms.histogram(rows)
    for cells in hist.values():
        assert math.isclose(sum(cells), 100.0, abs_tol=1e-6)
    # 1,437 memories at β = 0.1: softmax puts no weight above 0.01 on any query
    assert hist[(0.1, "softmax")][-1] == 100.0
    # sparsemax at β = 1 retrieves single digits for most queries
    assert hist[(1.0, "sparsemax")][0] > 80.0
    assert "support" in ms.format_table(rows)
    for name in ("rows.csv", "rows.csv.gz"):
        ms.write_csv(rows, tmp_path / name)
        back = ms.read_csv(tmp_path / name)
        assert ms.histogram(back) == hist


def test_criteria_on_constructed_rows():
    rows = []
    for beta, cells in ((0.1, {"softmax": 10, "1.5-entmax": 1, "sparsemax": 1, "2-normmax": 1, "5-normmax": 2}),
                        (1.0, {m: 1 for m in ms.METHODS})):
        for m, size in cells.items():
            pct = ms.support_histogram(torch.full((10,), 11 if size == 10 else size))
            for name, v in zip(ms.BINS, pct):
                metric = "pct_support_gt10" if name == ">10" else f"pct_support_{name}"
                rows.append(dict(beta=beta, method=m, metric=metric, value=v))
    assert all(ms.criteria(rows).values())
    rows = [dict(r, value=0.0) if (r["method"] == "sparsemax" and r["beta"] == 1.0) else r for r in rows]
    assert not ms.criteria(rows)["high_sparse_singletons"]


def test_bad_arguments():
    with pytest.raises(ValueError):
        ms.run("medium")
    with pytest.raises(ValueError):
        ms.method_omega("3-entmax")
    with pytest.raises(ValueError):
        ms.final_weights(torch.zeros(2, 3), torch.zeros(1, 3), 1.0, "softmax", n_iter=0)


def test_ksubsets_columns_concentrate_at_support_k():
    """The k-subsets columns of E1: KSubsets(k) regularisers, support k for most queries at a high β, and the
    criterion that reads it (it holds in the stored MNIST rows)."""
    for label, k in zip(ms.KSUBSETS, (2, 4, 8)):
        reg = ms.method_omega(label)
        assert isinstance(reg, hfy.KSubsets) and reg.k == k
    rows = ms.run("smoke", methods=ms.KSUBSETS, betas=(1.0, 16.0))
    h = ms.histogram(rows)
    for label, k in zip(ms.KSUBSETS, (2, 4, 8)):
        assert h[(16.0, label)][k - 1] >= 95.0
    stored = ms.stored_rows()
    if stored is not None:
        assert ms.criteria(stored)["high_ksubsets_at_k"]
