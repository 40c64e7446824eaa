"""Smoke tests of the exact-retrieval harness (experiment E11.1-E11.2, ``hfy.experiments.retrieval``)."""

from __future__ import annotations

import math

import pytest
import torch

import hfy
from hfy.experiments import retrieval as E
from hfy.testing import PROPERTY_ATOL


def test_uniform_ball_and_sphere():
    g = torch.Generator().manual_seed(0)
    s = E.uniform_sphere(500, 5, 2.0, g)
    assert s.shape == (500, 5)
    assert (torch.linalg.vector_norm(s, dim=-1) - 2.0).abs().max() <= PROPERTY_ATOL
    centres = torch.randn(3, 4, generator=g, dtype=torch.float64)
    radii = torch.tensor([0.1, 1.0, 3.0], dtype=torch.float64)
    b = E.uniform_ball(centres, radii, 200, g)
    assert b.shape == (3, 200, 4)
    dist = torch.linalg.vector_norm(b - centres[:, None], dim=-1)
    assert bool((dist <= radii[:, None] * (1 + PROPERTY_ATOL)).all())
    assert E.uniform_ball(centres[0], 0.5, 10, g).shape == (10, 4)


def test_exact_inradius_is_at_least_the_guarantee():
    g = torch.Generator().manual_seed(1)
    X = torch.randn(7, 4, generator=g, dtype=torch.float64)
    for beta in (0.5, 3.0):
        cert = hfy.certify(X, beta, "sparsemax")
        rho = E.exact_inradius(X, beta, 1.0)
        assert bool((rho[cert.fixed_point] >= cert.basin_radius[cert.fixed_point] - PROPERTY_ATOL).all())
        assert bool((rho[~cert.fixed_point] == 0).all())
    # antipodal pair: the guarantee is the exact inradius
    X2 = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)
    assert abs(float(E.exact_inradius(X2, 4.0, 1.0)[0]) - float(hfy.certify(X2, 4.0, "sparsemax").basin_radius[0])) \
        <= PROPERTY_ATOL


@pytest.mark.parametrize("name", list(E.SPARSE_MAPS))
def test_gap_sweep_one_step_exact(name):
    g = torch.Generator().manual_seed(2)
    X = torch.randn(8, 6, generator=g, dtype=torch.float64)
    reg = E.SPARSE_MAPS[name]()
    out = E.gap_sweep(X, reg, 300, 3.0 * reg.margin, g)
    above = out["gap"] >= reg.margin
    assert int(above.sum()) > 100
    assert bool(out["exact"][above].all()) and bool(out["one_hot"][above].all())
    assert bool((out["off_mass"][above] == 0).all()) and bool((out["error"][above] == 0).all())
    assert not bool(out["one_hot"][~above].any())


def test_softmax_sweep_is_never_one_hot():
    g = torch.Generator().manual_seed(3)
    X = torch.randn(8, 6, generator=g, dtype=torch.float64)
    out = E.gap_sweep(X, hfy.Shannon(), 200, 20.0, g)
    assert not bool(out["one_hot"].any()) and bool((out["off_mass"] > 0).all())


def test_run_smoke():
    res = E.run("smoke")
    assert set(res["sweep"]) == set(E.SPARSE_MAPS) | {"softmax"}
    assert len(res["basins"]) > 0
    for b in res["basins"]:
        assert bool((b["empirical"] >= b["inradius"]).all())
        assert bool((b["inradius"] >= b["guaranteed"] - PROPERTY_ATOL).all())
    with pytest.raises(ValueError):
        E.run("nope")
    assert math.isfinite(E.SPARSE_MAPS["sparsemax"]().margin)


@pytest.mark.parametrize("k", [2, 3])
def test_kgap_sweep_exact_above_the_structured_margin(k):
    """E11.4: every query with a k-gap >= 1 (in βXq) retrieves Σ_top-k x_i in one update, with the 0/1
    indicator as marginals; below it some are fractional."""
    g = torch.Generator().manual_seed(k)
    X = torch.randn(40, 16, generator=g, dtype=torch.float64) / 4.0
    out = E.kgap_sweep(X, k, 600, 3.0, g, beta=2.0)
    above = out["gap"] >= 1.0
    assert 100 < int(above.sum()) < 600
    assert bool(out["exact"][above].all()) and bool((out["error"][above] <= 1e-12).all())
    assert not bool(out["exact"][out["gap"] < 0.9].all())
    assert bool((out["fractional"][~out["exact"]] > 0).all())
    with pytest.raises(ValueError, match="`k`"):
        E.kgap_sweep(X, 40, 10, 3.0, g)
