"""Smoke tests of the 2-D landscape harness (experiments E2 contours and E3 basins)."""

import math

import numpy as np
import pytest
import torch

import hfy
import hfy.reference as ref
from hfy.experiments import landscapes as L
from hfy.experiments._tidy import COLUMNS
from hfy.testing import PROPERTY_ATOL, REFERENCE_ATOL


def test_draws_follow_the_global_generator_order():
    torch.manual_seed(L.SEED)
    expected = []
    for _ in range(10):
        pattern = torch.randn(5, 2, dtype=torch.float64)
        query = torch.randn(2, 1, dtype=torch.float64)
        expected.append((pattern, query[:, 0]))
    raw = L.draw_raw_sets()
    for i in range(1, 10):
        assert torch.equal(raw[i][0], expected[i][0]) and torch.equal(raw[i][1], expected[i][1])
    assert raw[0][0].tolist() == [[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0]]
    assert not raw[0][1].any()


@pytest.mark.parametrize("psi", L.PSIS)
def test_pattern_sets_lie_in_the_image_of_psi(psi):
    sets = L.pattern_sets(psi)
    assert [s.index for s in sets] == list(L.SETS_SHOWN)
    post = L.make_psi(psi)
    for s in sets:
        d = 3 if psi == "layernorm" else 2
        assert s.X.shape == ((3 if s.index == 0 else 5), d) and s.query.shape == (d,)
        norms = torch.linalg.vector_norm(s.X, dim=-1)
        torch.testing.assert_close(norms, torch.full_like(norms, math.sqrt(d) if psi == "layernorm" else 1.0),
                                   atol=PROPERTY_ATOL, rtol=0)
        if psi != "identity":  # idempotent Ψ: the patterns are fixed by ŷ_Ψ
            torch.testing.assert_close(post.predict(s.X), s.X, atol=PROPERTY_ATOL, rtol=0)


def test_grid_covers_the_box_and_lifts_for_layernorm():
    s = L.pattern_sets("layernorm", which=(3,))[0]
    g = L.make_grid(s.X, n=7)
    assert g.points.shape == (49, 3) and g.shape == (7, 7)
    assert torch.allclose(g.points.sum(-1), torch.zeros(49, dtype=torch.float64), atol=PROPERTY_ATOL)
    assert float(g.xx[0]) == pytest.approx(float(s.X[:, 0].min()) - 0.1)
    assert float(g.yy[-1]) == pytest.approx(float(s.X[:, 1].max()) + 0.1)


@pytest.mark.parametrize("psi", L.PSIS)
@pytest.mark.parametrize("method", L.METHODS)
def test_trajectory_energy_never_increases(psi, method):
    s = L.pattern_sets(psi, which=(3,))[0]
    tr = L.trajectory(s.start(), s.X, method, psi, max_iter=200)
    assert torch.isfinite(tr.energies).all()
    assert float((tr.energies[1:] - tr.energies[:-1]).max()) <= PROPERTY_ATOL


def test_energy_matches_the_reference():
    s = L.pattern_sets("identity", which=(8,))[0]
    g = L.make_grid(s.X, n=6)
    for method in L.METHODS:
        e = L.landscape_energy(g.points, s.X, method)
        e_ref = ref.energy(g.points.numpy(), s.X.numpy(), 1.0, L.method_omega(method, "reference"), "identity",
                           constant="sshn")
        np.testing.assert_allclose(e.numpy(), e_ref, atol=REFERENCE_ATOL, rtol=0)
        assert float(e.min()) >= -PROPERTY_ATOL  # the sparse-Hopfield form is non-negative


def test_parity_entropy_is_the_scripts_formula():
    """The 'normmax_entropy_l2' energy, written out as in the papers' plotting code."""
    s = L.pattern_sets("identity", which=(9,))[0]
    q = L.make_grid(s.X, n=5).points
    X, beta, gamma = s.X, 1.0, 5.0
    theta = beta * q @ X.T
    p = hfy.normmax(theta, gamma)
    n = X.shape[0]
    gold = -(1 - math.sqrt(n) / n) - theta.mean(-1)
    pred = -(1 - p.norm(dim=-1)) - (theta * p).sum(-1)
    expected = -(gold - pred) / beta - q @ X.mean(0) + 0.5 * (q * q).sum(-1) + 0.5 * (X * X).sum(-1).max()
    got = L.landscape_energy(q, X, "5-normmax", parity_entropy=True)
    torch.testing.assert_close(got, expected, atol=PROPERTY_ATOL, rtol=0)
    # for gamma = 2 the parity energy is the correct one
    torch.testing.assert_close(L.landscape_energy(q, X, "2-normmax", parity_entropy=True),
                               L.landscape_energy(q, X, "2-normmax"), atol=PROPERTY_ATOL, rtol=0)


def test_basin_labels_match_the_reference_dynamics():
    s = L.pattern_sets("identity", which=(3,))[0]
    g = L.make_grid(s.X, n=6)
    for method in ("2-entmax", "5-normmax"):
        labels, res = L.basin_labels(g.points, s.X, method, "identity", beta=4.0)
        r = ref.retrieve(g.points.numpy(), s.X.numpy(), 4.0, L.method_omega(method, "reference"), "identity",
                         max_iter=50, tol=0.0)
        np.testing.assert_allclose(res.q.numpy(), r.q, atol=REFERENCE_ATOL, rtol=0)
        d = np.linalg.norm(r.q[:, None, :] - s.X.numpy()[None], axis=-1)
        expected = np.where(d.min(-1) < L.BASIN_RADIUS, d.argmin(-1), -1)
        assert labels.tolist() == expected.tolist()


def test_basin_sweep_smoke():
    maps = L.basin_sweep("smoke")
    cfg = L.tier_settings("smoke")
    assert len(maps) == len(cfg["psis"]) * len(cfg["which"]) * len(cfg["betas"]) * len(L.METHODS)
    for m in maps:
        assert m.labels.shape == (cfg["n"], cfg["n"])
        assert int(m.labels.min()) >= -1 and int(m.labels.max()) < m.X.shape[0]
        assert 0.0 <= m.single_fraction <= 1.0
    table = L.basin_table(maps)
    assert set(table) == {(4.0, psi) for psi in cfg["psis"]}
    rows = L.basin_rows(maps, tier="smoke")
    assert len(rows) == len(maps) and {r["metric"] for r in rows} == {"single_pattern_fraction"}
    assert all(tuple(r) == COLUMNS and math.isnan(r["sigma"]) for r in rows)
    with pytest.raises(ValueError):
        L.basin_sweep("smoke", grid=3)
    with pytest.raises(ValueError):
        L.tier_settings("huge")
