"""Smoke tests of the storage-capacity harness (experiment E11.3, ``hfy.experiments.capacity``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hfy.experiments import capacity as C
from hfy.testing import PROPERTY_ATOL


def test_cap_measure_closed_form_and_inequality():
    # D = 3: Archimedes, σ(cap_θ) = (1 − cos θ)/2; D = 2: θ/π
    th = np.linspace(0, np.pi, 13)
    assert np.abs(C.cap_measure(th, 3) - (1 - np.cos(th)) / 2).max() <= PROPERTY_ATOL
    assert np.abs(C.cap_measure(th, 2) - th / np.pi).max() <= PROPERTY_ATOL
    half = np.linspace(0, np.pi / 2, 31)
    for d in (2, 3, 5, 10, 50, 200):
        assert np.all(C.cap_measure(half, d) <= C.cap_bound(half, d) + PROPERTY_ATOL)
    with pytest.raises(ValueError):
        C.cap_measure(0.3, 1)


def test_bounds():
    assert C.union_bound(2, 1) == 0.0
    d = 41
    n = C.capacity_bound(d, 0.1)
    # at the capacity, the union bound equals 1 − p
    assert abs(float(C.union_bound(n, d)) - 0.9) <= PROPERTY_ATOL
    assert C.retrieval_beta(1.0, 2.0, 0.25) == 1.0
    with pytest.raises(ValueError):
        C.retrieval_beta(1.0, 2.0, 0.5)


def test_separated_prefix_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    k = C.separated_prefix(6, 12, 30, g, chunk=7)
    assert k.shape == (30,) and int(k.min()) >= 1 and int(k.max()) <= 12
    # replay the same draws and check each K by brute force
    g = torch.Generator().manual_seed(0)
    for start in range(0, 30, 7):
        t = min(7, 30 - start)
        x = C.uniform_sphere(t * 12, 6, 1.0, g).reshape(t, 12, 6)
        for b in range(t):
            gram = x[b] @ x[b].T
            kk = 12
            for j in range(1, 12):
                if bool((gram[j, :j] > C.COS_60).any()):
                    kk = j
                    break
            assert int(k[start + b]) == kk
    est = C.prob_separated(k, [1, 2, 12])
    assert est[0] == 1.0 and est[1] >= est[2]
    assert C.largest_n(k, 0.0) == int(k.min())
    assert np.all(C.upper_confidence(k, [1, 2, 12]) >= est)


def test_check_retrieval_on_separated_draws():
    g = torch.Generator().manual_seed(1)
    X = C.separated_configs(16, 4, 2, 2.0, g)
    assert X.shape == (2, 4, 16)
    cos = (X[0] @ X[0].T) / 4.0
    cos.fill_diagonal_(-1.0)
    assert float(cos.max()) <= C.COS_60
    res = C.check_retrieval(X[0], "sparsemax", 0.25, 10, g)
    assert res["exact"] == res["n_states"] == 4 * 11


def test_run_smoke():
    res = C.run("smoke")
    for d, k in res["prefix"].items():
        ns = np.arange(1, int(k.max()) + 1)
        assert np.all(C.upper_confidence(k, ns) >= C.union_bound(ns, d))
    assert all(r["exact"] == r["n_states"] for r in res["retrieval"])
    assert math.isfinite(res["largest"][8])
    with pytest.raises(ValueError):
        C.run("nope")
