"""The HFY energy and its CCCP dynamics: triangle, fast paths, descent, bounds, stationarity, limits, constants, API.

The energy is E(q) = Ψ(q) − β⁻¹Ω*(βXq) + const and one update is q ← ŷ_Ψ(Xᵀŷ_Ω(βXq))
(book/foundations/energy.md).  The oracle solves both programs with cvxpy, the reference is numpy
float64, the fast path is torch; they must agree, and the propositions of that chapter
(monotone decrease, the bounds eq-energy-bounds, fixed points = stationary points, the β
limits, the constant conventions) must hold numerically.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import hfy
import hfy.oracle as oracle
import hfy.reference as ref
from hfy.testing import (
    GRADCHECK,
    ORACLE_ATOL,
    ORACLE_POWER_ATOL,
    ORACLE_VALUE_ATOL,
    PROPERTY_ATOL,
    REFERENCE_ATOL,
    dtype_atol,
    random_scores,
)

# --- the maps under test -----------------------------------------------------------------------------------
#
# Score side: (id, torch Ω, reference Ω, oracle Ω, tolerance of the oracle's maximiser).  Shannon is an
# exponential-cone program and sparsemax a QP (ORACLE_ATOL); α-entmax with α ∉ {1, 2} is a power-cone program
# and γ-normmax a p-norm program (ORACLE_POWER_ATOL).
OMEGAS = [
    ("softmax", hfy.Shannon(), ref.Shannon(), oracle.Shannon(), ORACLE_ATOL),
    ("entmax15", hfy.Tsallis(1.5), ref.Tsallis(1.5), oracle.Tsallis(1.5), ORACLE_POWER_ATOL),
    ("sparsemax", hfy.Tsallis(2.0), ref.Tsallis(2.0), oracle.Tsallis(2.0), ORACLE_ATOL),
    ("entmax1.3", hfy.Tsallis(1.3), ref.Tsallis(1.3), oracle.Tsallis(1.3), ORACLE_POWER_ATOL),
    ("normmax2", hfy.NormEntropy(2.0), ref.NormEntropy(2.0), oracle.NormEntropy(2.0), ORACLE_POWER_ATOL),
    ("normmax5", hfy.NormEntropy(5.0), ref.NormEntropy(5.0), oracle.NormEntropy(5.0), ORACLE_POWER_ATOL),
]
#: ∞-normmax (an LP: not strictly convex, set-valued at ties) joins the property tests but not the oracle.
INF_NORMMAX = ("normmax-inf", hfy.NormEntropy(math.inf), ref.NormEntropy(math.inf), None, None)
SIMPLEX_OMEGAS = OMEGAS + [INF_NORMMAX]
THRESHOLD_OMEGAS = [o for o in OMEGAS if o[0] != "softmax"]

# State side: (id, torch Ψ, reference Ψ, oracle Ψ, tolerance of the oracle's maximiser).  The ball, the centred
# ball and the cube are SOC/LP programs (ORACLE_ATOL); the tanh entropy is looser (ORACLE_POWER_ATOL).
PSIS = [
    ("identity", hfy.Identity(), ref.Identity(), oracle.Identity(), ORACLE_ATOL),
    ("l2", hfy.L2Normalize(), ref.L2Normalize(), oracle.L2Normalize(), ORACLE_ATOL),
    ("layernorm", hfy.LayerNorm(), ref.LayerNorm(), oracle.LayerNorm(), ORACLE_ATOL),
    ("sign", hfy.Sign(), ref.Sign(), oracle.Sign(), ORACLE_ATOL),
    ("tanh", hfy.Tanh(0.7), ref.Tanh(0.7), oracle.Tanh(0.7), ORACLE_POWER_ATOL),
]
SMOOTH_PSIS = [p for p in PSIS if p[0] in ("identity", "tanh")]


def pairs(omegas, psis):
    return [pytest.param(o, p, id=f"{o[0]}-{p[0]}") for o in omegas for p in psis]


def memories(n, d, seed, scale=1.0):
    """Random memories with rows of norm ~ scale."""
    return random_scores((n, d), scale / math.sqrt(d), seed)


def states(psi_ref, shape, seed, scale=1.0):
    """Random states, pre-transformed into dom Ψ (the energy is +inf outside it)."""
    return psi_ref.predict(random_scores(shape, scale, seed))


def random_mask(shape, seed):
    """A random boolean mask with at least one True per row."""
    rng = np.random.default_rng(seed)
    m = rng.random(shape) < 0.6
    flat = m.reshape(-1, shape[-1])
    flat[np.arange(flat.shape[0]), rng.integers(shape[-1], size=flat.shape[0])] = True
    return flat.reshape(shape)


def T(a):
    return torch.from_numpy(np.asarray(a))


# --- the triangle: oracle ≈ reference ≈ torch ----------------------------------------------------------------

#: tiny instances for cvxpy: (N, D, β, number of queries, seed)
ORACLE_INSTANCES = [(5, 4, 1.3, 2, 0), (3, 5, 0.4, 1, 1)]


@pytest.mark.parametrize("om,ps", pairs(OMEGAS, PSIS))
def test_oracle_agrees_with_reference(om, ps):
    _, _, r_om, o_om, om_tol = om
    _, _, r_ps, o_ps, ps_tol = ps
    for n, d, beta, b, seed in ORACLE_INSTANCES:
        X = memories(n, d, seed, scale=1.5)
        q = states(r_ps, (b, d), seed + 10)
        for constant in ("fy", "none"):
            e_or = oracle.energy(q, X, beta, o_om, o_ps, constant)
            e_ref = ref.energy(q, X, beta, r_om, r_ps, constant)
            np.testing.assert_allclose(e_or, e_ref, rtol=0, atol=ORACLE_VALUE_ATOL)
        q_or, p_or = oracle.update(q, X, beta, o_om, o_ps)
        q_ref, p_ref = ref.update(q, X, beta, r_om, r_ps)
        np.testing.assert_allclose(p_or, p_ref, rtol=0, atol=om_tol)
        np.testing.assert_allclose(q_or, q_ref, rtol=0, atol=max(om_tol, ps_tol))


BATCHES = [(), (3,), (2, 3)]


@pytest.mark.parametrize("om,ps", pairs(SIMPLEX_OMEGAS, PSIS))
def test_reference_agrees_with_torch_float64(om, ps):
    name, t_om, r_om, _, _ = om
    _, t_ps, r_ps, _, _ = ps
    n, d, beta = 7, 5, 1.7
    X = memories(n, d, 3, scale=2.0)
    constants = ["fy", "none"] + (["sshn"] if ps[0] == "identity" else [])
    for batch in BATCHES:
        q = states(r_ps, batch + (d,), seed=len(batch))
        flat_q = q.reshape(-1, d)
        masks = [None, random_mask((n,), 5)] + ([random_mask(batch + (n,), 6)] if batch else [])
        for mask in masks:
            mt = None if mask is None else T(mask)
            per_query = mask is not None and mask.ndim > 1
            rows = mask.reshape(-1, n) if per_query else [mask] * flat_q.shape[0]
            for constant in constants:
                e_t = hfy.energy(T(q), T(X), beta, t_om, t_ps, constant, mt)
                assert e_t.shape == batch
                if per_query:  # the reference takes one mask per call: query by query
                    e_r = np.array([ref.energy(qq, X, beta, r_om, r_ps, constant, mm) for qq, mm in zip(flat_q, rows)])
                else:  # the reference batched like the fast path
                    e_r = np.asarray(ref.energy(q, X, beta, r_om, r_ps, constant, mask)).reshape(-1)
                np.testing.assert_allclose(e_t.numpy().reshape(-1), e_r, rtol=0, atol=REFERENCE_ATOL)
            q_t, p_t = hfy.update(T(q), T(X), beta, t_om, t_ps, mt, return_weights=True)
            assert q_t.shape == batch + (d,) and p_t.shape == batch + (n,)
            q_fast = hfy.update(T(q), T(X), beta, t_om, t_ps, mt)
            if per_query:
                ref_rows = [ref.update(qq, X, beta, r_om, r_ps, mm) for qq, mm in zip(flat_q, rows)]
                q_r = np.stack([r[0] for r in ref_rows])
                p_r = np.stack([r[1] for r in ref_rows])
            else:
                q_r, p_r = ref.update(q, X, beta, r_om, r_ps, mask)
                assert q_r.shape == batch + (d,) and p_r.shape == batch + (n,)
                q_r, p_r = q_r.reshape(-1, d), p_r.reshape(-1, n)
            np.testing.assert_allclose(q_t.numpy().reshape(-1, d), q_r, rtol=0, atol=REFERENCE_ATOL)
            np.testing.assert_allclose(q_fast.numpy().reshape(-1, d), q_r, rtol=0, atol=REFERENCE_ATOL)
            np.testing.assert_allclose(p_t.numpy().reshape(-1, n), p_r, rtol=0, atol=REFERENCE_ATOL)
            if mask is not None:  # masked memories get exactly zero weight
                assert bool((p_t.reshape(-1, n)[~T(np.asarray(rows))] == 0).all())


@pytest.mark.parametrize("om,ps", pairs(OMEGAS, PSIS))
def test_float32_agrees_with_float64(om, ps):
    _, t_om, _, _, _ = om
    _, t_ps, r_ps, _, _ = ps
    X = T(memories(9, 6, 7, scale=1.5))
    q = T(states(r_ps, (2, 3, 6), 8))
    atol = dtype_atol(torch.float32)
    e64 = hfy.energy(q, X, 1.5, t_om, t_ps)
    e32 = hfy.energy(q.float(), X.float(), 1.5, t_om, t_ps)
    assert e32.dtype == torch.float32
    assert bool(((e32.double() - e64).abs() <= atol * (1 + e64.abs())).all())
    q64, p64 = hfy.update(q, X, 1.5, t_om, t_ps, return_weights=True)
    q32, p32 = hfy.update(q.float(), X.float(), 1.5, t_om, t_ps, return_weights=True)
    assert q32.dtype == p32.dtype == torch.float32
    np.testing.assert_allclose(p32.double().numpy(), p64.numpy(), rtol=0, atol=atol)
    np.testing.assert_allclose(q32.double().numpy(), q64.numpy(), rtol=0, atol=atol)


# --- the fast paths of hfy.update ---------------------------------------------------------------------------


@pytest.mark.parametrize("ps", PSIS, ids=[p[0] for p in PSIS])
@pytest.mark.parametrize("n", [6, 300])
@pytest.mark.parametrize("in_place", [True, False], ids=["in-place", "sdpa"])
def test_softmax_attention_path_equals_dense(ps, n, in_place, monkeypatch):
    """Without ``return_weights`` softmax forms its weights in place in the score buffer (CPU, up to a size)
    or calls scaled_dot_product_attention; either must equal the dense path."""
    from hfy._torch import energy as fast

    if not in_place:
        monkeypatch.setattr(fast, "IN_PLACE_SOFTMAX_MAX", 0)
    _, t_ps, r_ps, _, _ = ps
    d, beta = 8, 2.3
    X = T(memories(n, d, 11, scale=2.0))
    for batch in BATCHES:
        q = T(states(r_ps, batch + (d,), 12))
        for mask in [None, random_mask((n,), 13)] + ([random_mask(batch + (n,), 14)] if batch else []):
            mt = None if mask is None else T(mask)
            fast = hfy.update(q, X, beta, "softmax", t_ps, mt)
            dense, _ = hfy.update(q, X, beta, "softmax", t_ps, mt, return_weights=True)
            np.testing.assert_allclose(fast.numpy(), dense.numpy(), rtol=0, atol=REFERENCE_ATOL)


@pytest.mark.parametrize("om", THRESHOLD_OMEGAS, ids=[o[0] for o in THRESHOLD_OMEGAS])
@pytest.mark.parametrize("psi", ["identity", "l2", "tanh"])
def test_sparse_top64_path_equals_dense(om, psi):
    """N > 256: the update keeps the top 64 scores per query and falls back to the dense map for rows whose
    support does not fit.  Rows are built on both sides: near-uniform scores (tiny β·‖q‖) spill, peaked ones do not."""
    _, t_om, _, _, _ = om
    n, d = 300, 16
    X = T(memories(n, d, 21, scale=4.0))
    base = T(random_scores((2, 3, d), 1.0, 22))
    scales = torch.tensor([[1e-4, 1e-3, 3.0], [1e-2, 10.0, 0.3]], dtype=torch.float64)
    q = base * scales[..., None]
    for beta, mask in [(1.0, None), (1.0, T(random_mask((n,), 23))), (1.0, T(random_mask((2, 3, n), 24))),
                       (1e-3, None)]:  # with a small β every row is near-uniform and spills
        fast = hfy.update(q, X, beta, t_om, psi, mask)
        dense, p = hfy.update(q, X, beta, t_om, psi, mask, return_weights=True)
        np.testing.assert_allclose(fast.numpy(), dense.numpy(), rtol=0, atol=REFERENCE_ATOL)
        # the construction really exercises both branches: some rows spill out of the top 64, some do not
        theta = beta * (q @ X.T)
        if mask is not None:
            theta = theta.masked_fill(~mask, -math.inf)
        kth = theta.topk(64, dim=-1).values[..., -1:]
        weight_at_kth = torch.where(theta == kth, p, torch.zeros_like(p)).amax(-1)
        support = (p > 0).sum(-1)
        assert bool((weight_at_kth > 0).any()) and bool((support > 64).any())
        assert bool((support < 64).any()) or beta < 1


def _subsample_bounds(theta, omega):
    """The threshold bound of the large-support path, recomputed: per row, the largest score with zero weight on
    the top 64 plus every SUBSAMPLE-th score below them (−inf when that subset has no zero weight)."""
    from hfy._torch import energy as fast

    flat = theta.reshape(-1, theta.shape[-1])
    top = flat.topk(fast.TOPK, dim=-1).values
    sub = flat[:, :: fast.SUBSAMPLE]
    sub = torch.where(sub < top[:, -1:], sub, torch.full_like(sub, -math.inf))
    subset = torch.cat([top, sub], dim=-1)
    return torch.where(omega.predict(subset) == 0, subset, torch.full_like(subset, -math.inf)).amax(-1)


@pytest.mark.parametrize("om", THRESHOLD_OMEGAS, ids=[o[0] for o in THRESHOLD_OMEGAS])
@pytest.mark.parametrize("product", ["sparse", "dense"])
def test_large_support_path_equals_dense(om, product, monkeypatch):
    """Rows whose support exceeds the top 64 get a threshold bound from a column subsample, the map on the scores
    above it (certified by a sentinel at the bound) and a sparse (CSR) or dense product with X; rows with no
    bound use the dense map.  Every branch must equal the dense update in float64: all rows or some rows spilling,
    certified and uncertified rows in one batch, 1-D and per-query masks."""
    from hfy._torch import energy as fast

    _, t_om, _, _, _ = om
    monkeypatch.setattr(fast, "SPARSE_PRODUCT_RATIO", 1 if product == "sparse" else 10**9)
    n, d = 2048, 16
    X = T(memories(n, d, 31, scale=4.0))
    base = T(random_scores((3, 4, d), 1.0, 32))
    # from near-uniform (support = N, no usable bound) through hundreds of memories to a handful
    scales = torch.tensor([[1e-4, 0.05, 0.1, 0.2], [0.3, 0.5, 1.0, 2.0], [4.0, 8.0, 0.08, 0.15]],
                          dtype=torch.float64)
    q = base * scales[..., None]
    seen_certified = seen_unbounded = False
    for beta, mask in [(1.0, None), (1.0, T(random_mask((n,), 33))), (1.0, T(random_mask((3, 4, n), 34))),
                       (1e-3, None)]:  # the last: every row spills
        fast_q = hfy.update(q, X, beta, t_om, "identity", mask)
        dense_q, p = hfy.update(q, X, beta, t_om, "identity", mask, return_weights=True)
        np.testing.assert_allclose(fast_q.numpy(), dense_q.numpy(), rtol=0, atol=REFERENCE_ATOL)
        theta = fast.scores(q, X, beta, mask)
        support = (p > 0).sum(-1).flatten()
        bounds = _subsample_bounds(theta, t_om)
        spill = support > fast.TOPK
        seen_certified |= bool((spill & torch.isfinite(bounds)).any())
        seen_unbounded |= bool((spill & torch.isinf(bounds)).any())
        if beta == 1e-3:
            assert bool(spill.all())
    assert seen_certified and seen_unbounded


def test_large_support_path_low_precision():
    """The top-64 and large-support paths in float32, float16 and bfloat16 (on CPU the products below float32
    are gathered, not CSR) agree with the dense update in the same precision, and in float32 with float64.
    (Half-precision scores of size ~50 are rounded by ~0.2, so their comparison with float64 says nothing
    about the path.)"""
    n, d = 2048, 16
    X = T(memories(n, d, 41, scale=4.0))
    q = T(random_scores((8, d), 1.0, 42)) * torch.linspace(0.05, 4.0, 8, dtype=torch.float64)[:, None]
    for omega in (hfy.Tsallis(1.5), hfy.NormEntropy(2.0)):
        want64 = hfy.update(q, X, 1.0, omega)
        for dtype in (torch.float32, torch.float16, torch.bfloat16):
            got = hfy.update(q.to(dtype), X.to(dtype), 1.0, omega)
            want, _ = hfy.update(q.to(dtype), X.to(dtype), 1.0, omega, return_weights=True)
            assert got.dtype == dtype
            scale = 1 + float(want64.abs().max())
            np.testing.assert_allclose(got.double().numpy(), want.double().numpy(), rtol=0,
                                       atol=dtype_atol(dtype) * scale)
            if dtype == torch.float32:
                np.testing.assert_allclose(got.double().numpy(), want64.numpy(), rtol=0,
                                           atol=dtype_atol(dtype) * scale)


# --- monotone decrease -----------------------------------------------------------------------------------------

#: random configurations (N, D, scale, β) per model and queries per configuration; each query is one
#: trajectory of up to MONOTONE_STEPS updates, checked at every step.
MONOTONE_CONFIGS = 4
MONOTONE_QUERIES = 100
MONOTONE_STEPS = 30

#: classical and dense memories on the cube: (id, torch Ω, Ψ); ±1 patterns, states start at sign(random).
CUBE_MODELS = [
    ("classical-sign", hfy.Quadratic(), "sign"),
    ("classical-tanh", hfy.Quadratic(), "tanh"),
    ("poly2-sign", hfy.PolynomialDAM(2), "sign"),
    ("poly4-sign", hfy.PolynomialDAM(4), "sign"),
    ("poly3-rectified-sign", hfy.PolynomialDAM(3, rectified=True), "sign"),
    ("poly5-rectified-sign", hfy.PolynomialDAM(5, rectified=True), "sign"),
    ("exp-sign", hfy.ExponentialDAM(), "sign"),
    ("exp-shift-sign", hfy.ExponentialDAM(shift=True), "sign"),
]
MONOTONE_HFY = [(o, p) for o in SIMPLEX_OMEGAS for p in PSIS]

#: every trajectory the monotone-decrease tests check (at least 10 000 are required).
MONOTONE_TRAJECTORIES = (len(MONOTONE_HFY) + len(CUBE_MODELS)) * MONOTONE_CONFIGS * MONOTONE_QUERIES


def test_monotone_trajectory_count():
    print(f"\nmonotone decrease: {MONOTONE_TRAJECTORIES} trajectories "
          f"({len(MONOTONE_HFY)} Ω×Ψ pairs + {len(CUBE_MODELS)} cube models) × {MONOTONE_CONFIGS} configurations "
          f"× {MONOTONE_QUERIES} queries, up to {MONOTONE_STEPS} steps each")
    assert MONOTONE_TRAJECTORIES >= 10_000


def assert_monotone(energies):
    """E(q_{t+1}) <= E(q_t) + tol·(1 + |E(q_t)|) along every trajectory.

    Returns (trajectories checked, trajectories whose energy went down by more than the tolerance).

    tol is PROPERTY_ATOL (1e-9): the book states the bound with 1e-10, which is below the rounding of
    energies of size ~10 in float64 sums; observed relative increases are < 1e-14.
    """
    assert energies.dtype == torch.float64
    assert bool(torch.isfinite(energies).all())
    prev, nxt = energies[:-1], energies[1:]
    assert bool((nxt <= prev + PROPERTY_ATOL * (1 + prev.abs())).all()), float((nxt - prev).max())
    moved = energies[0] - energies[-1] > PROPERTY_ATOL * (1 + energies[0].abs())
    return energies.shape[1], int(moved.sum())


@pytest.mark.parametrize("om,ps", [pytest.param(o, p, id=f"{o[0]}-{p[0]}") for o, p in MONOTONE_HFY])
def test_monotone_decrease(om, ps):
    _, t_om, _, _, _ = om
    _, t_ps, _, _, _ = ps
    seed = sum(map(ord, om[0] + ps[0]))
    g = np.random.default_rng(seed)
    checked = moved = 0
    for c in range(MONOTONE_CONFIGS):
        n, d = int(g.integers(2, 41)), int(g.integers(2, 17))
        scale = float(g.choice([0.3, 1.0, 3.0]))
        beta = float(np.exp(g.uniform(np.log(0.1), np.log(10.0))))
        X = T(memories(n, d, seed * 10 + c, scale))
        q0 = t_ps.predict(T(random_scores((MONOTONE_QUERIES, d), scale, seed * 10 + c + 5)))
        r = hfy.retrieve(q0, X, beta, t_om, t_ps, max_iter=MONOTONE_STEPS, tol=0.0, trace=True)
        assert r.energies.shape[1:] == (MONOTONE_QUERIES,)
        n_checked, n_moved = assert_monotone(r.energies)
        checked, moved = checked + n_checked, moved + n_moved
        # the trace ends at the energy of the returned states
        np.testing.assert_allclose(r.energies[-1].numpy(), hfy.energy(r.q, X, beta, t_om, t_ps).numpy(),
                                   rtol=0, atol=REFERENCE_ATOL)
    assert checked == MONOTONE_CONFIGS * MONOTONE_QUERIES
    assert moved > checked // 4  # most trajectories are not trivially at rest


@pytest.mark.parametrize("name,omega,psi", CUBE_MODELS, ids=[m[0] for m in CUBE_MODELS])
def test_monotone_decrease_on_the_cube(name, omega, psi):
    seed = sum(map(ord, name))
    g = np.random.default_rng(seed)
    checked = moved = 0
    for c in range(MONOTONE_CONFIGS):
        n, d = int(g.integers(2, 30)), int(g.integers(4, 33))
        beta = float(np.exp(g.uniform(np.log(0.02), np.log(0.5))))
        X = T(np.sign(g.standard_normal((n, d))))
        q0 = T(np.sign(g.standard_normal((MONOTONE_QUERIES, d))))
        if psi == "tanh":
            q0 = 0.9 * q0
        r = hfy.retrieve(q0, X, beta, omega, psi, max_iter=MONOTONE_STEPS, tol=0.0, trace=True)
        n_checked, n_moved = assert_monotone(r.energies)
        checked, moved = checked + n_checked, moved + n_moved
    assert checked == MONOTONE_CONFIGS * MONOTONE_QUERIES
    assert moved > checked // 4  # most trajectories are not trivially at rest


# --- bounds (eq-energy-bounds) -------------------------------------------------------------------------------


@pytest.mark.parametrize("om", SIMPLEX_OMEGAS, ids=[o[0] for o in SIMPLEX_OMEGAS])
def test_energy_bounds(om):
    """0 <= ½(‖q‖ − M)² <= E_L <= E <= min(E_convex, E_L + H(u)/β) for the SSHN form (constant 'sshn')."""
    _, t_om, r_om, _, _ = om
    g = np.random.default_rng(31)
    for c in range(6):
        n, d = int(g.integers(1, 30)), int(g.integers(1, 12))
        beta = float(np.exp(g.uniform(np.log(0.05), np.log(50.0))))
        X = memories(n, d, 40 + c, scale=float(g.choice([0.2, 1.0, 5.0])))
        q = random_scores((150, d), 1.0, 50 + c) * np.exp(g.uniform(-3, 2, (150, 1)))
        q[:10] = X[g.integers(n, size=10)] + 1e-3 * q[:10]  # near the patterns, where the bounds are tight
        big_m = np.linalg.norm(X, axis=1).max()
        mu = X.mean(0)
        norm_q = np.linalg.norm(q, axis=-1)
        e_l = 0.5 * norm_q**2 - (q @ X.T).max(-1) + 0.5 * big_m**2
        e_convex = 0.5 * np.sum((q - mu) ** 2, -1) + 0.5 * (big_m**2 - mu @ mu)
        lower = 0.5 * (norm_q - big_m) ** 2
        upper = np.minimum(e_convex, e_l + r_om.max_entropy(n) / beta)
        e_t = hfy.energy(T(q), T(X), beta, t_om, "identity", "sshn").numpy()
        e_r = ref.energy(q[:30], X, beta, r_om, "identity", "sshn")
        for e, sl in ((e_t, slice(None)), (e_r, slice(0, 30))):
            tol = PROPERTY_ATOL * (1 + np.abs(e) + e_convex[sl])
            assert np.all(lower[sl] >= 0)
            assert np.all(lower[sl] <= e_l[sl] + tol)
            assert np.all(e_l[sl] <= e + tol)
            assert np.all(e <= upper[sl] + tol)


# --- fixed points and stationarity ------------------------------------------------------------------------------


@pytest.mark.parametrize("om,ps", pairs(SIMPLEX_OMEGAS, PSIS))
def test_fixed_points_at_termination(om, ps):
    _, t_om, _, _, _ = om
    _, t_ps, _, _, _ = ps
    X = T(memories(8, 6, 61, scale=2.0))
    for beta in (0.5, 2.0):
        q0 = t_ps.predict(T(random_scores((40, 6), 1.0, 62)))
        r = hfy.retrieve(q0, X, beta, t_om, t_ps, max_iter=2000, tol=REFERENCE_ATOL)
        assert bool(r.converged.all())
        assert bool((r.n_iter >= 1).all()) and bool((r.n_iter <= 2000).all())
        residual = (hfy.update(r.q, X, beta, t_om, t_ps) - r.q).abs().amax(-1)
        assert float(residual.max()) <= PROPERTY_ATOL
        # the returned weights are those of the returned states
        _, p = hfy.update(r.q, X, beta, t_om, t_ps, return_weights=True)
        np.testing.assert_allclose(r.p.numpy(), p.numpy(), rtol=0, atol=REFERENCE_ATOL)


def grad_psi(name, psi, q):
    """∇Ψ(q) for the smooth post-transformations: q (identity), artanh(q)/β_Ψ (tanh)."""
    return q if name == "identity" else torch.atanh(q) / psi.beta


@pytest.mark.parametrize("om,ps", pairs(SIMPLEX_OMEGAS, SMOOTH_PSIS))
def test_gradient_is_danskin(om, ps):
    """Autograd of E is ∇Ψ(q) − Xᵀŷ_Ω(βXq) (eq-energy-gradient) everywhere, and vanishes at fixed points."""
    _, t_om, _, _, _ = om
    name, t_ps, _, _, _ = ps
    X = T(memories(7, 5, 71, scale=2.0))
    beta = 1.3
    q = t_ps.predict(T(random_scores((3, 4, 5), 1.5, 72))).requires_grad_()
    for constant in ("fy", "none"):
        (grad,) = torch.autograd.grad(hfy.energy(q, X, beta, t_om, t_ps, constant).sum(), q)
        _, p = hfy.update(q.detach(), X, beta, t_om, t_ps, return_weights=True)
        want = grad_psi(name, t_ps, q.detach()) - p @ X
        np.testing.assert_allclose(grad.numpy(), want.numpy(), rtol=0, atol=REFERENCE_ATOL)
    r = hfy.retrieve(q.detach(), X, beta, t_om, t_ps, max_iter=2000, tol=REFERENCE_ATOL)
    assert bool(r.converged.all())
    q_star = r.q.clone().requires_grad_()
    (grad,) = torch.autograd.grad(hfy.energy(q_star, X, beta, t_om, t_ps).sum(), q_star)
    assert float(grad.abs().max()) <= PROPERTY_ATOL


@pytest.mark.parametrize("om,ps", pairs(SIMPLEX_OMEGAS, SMOOTH_PSIS))
def test_gradcheck_energy(om, ps):
    _, t_om, _, _, _ = om
    _, t_ps, _, _, _ = ps
    X = T(memories(6, 4, 81, scale=2.0))
    q = t_ps.predict(T(random_scores((3, 4), 1.0, 82))).requires_grad_()
    assert torch.autograd.gradcheck(lambda v: hfy.energy(v, X, 0.8, t_om, t_ps), (q,), **GRADCHECK)


# --- limits in β -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("om", SIMPLEX_OMEGAS, ids=[o[0] for o in SIMPLEX_OMEGAS])
def test_large_beta_limit(om):
    """β → ∞: E → E_L (gap at most H(u)/β) and the update jumps to the pattern with the largest x_iᵀq."""
    _, t_om, r_om, _, _ = om
    n, d = 9, 6
    X = memories(n, d, 91, scale=2.0)
    q = random_scores((50, d), 1.0, 92)
    s = q @ X.T
    big_m = np.linalg.norm(X, axis=1).max()
    e_l = 0.5 * np.sum(q * q, -1) - s.max(-1) + 0.5 * big_m**2
    previous = np.inf
    for beta in (1e1, 1e3, 1e5, 1e7):
        e = hfy.energy(T(q), T(X), beta, t_om, "identity", "sshn").numpy()
        gap = e - e_l
        assert np.all(gap >= -PROPERTY_ATOL * (1 + np.abs(e)))
        assert np.all(gap <= r_om.max_entropy(n) / beta + PROPERTY_ATOL * (1 + np.abs(e)))
        assert gap.max() <= previous + PROPERTY_ATOL
        previous = gap.max()
    nearest = X[s.argmax(-1)]
    top2 = np.sort(s, -1)[:, -2:]
    beta = 1e3 / (top2[:, 1] - top2[:, 0]).min()  # every query leads by at least 1e3/β: past every margin
    out = hfy.update(T(q), T(X), beta, t_om, "identity").numpy()
    np.testing.assert_allclose(out, nearest, rtol=0, atol=PROPERTY_ATOL)


@pytest.mark.parametrize("om", SIMPLEX_OMEGAS, ids=[o[0] for o in SIMPLEX_OMEGAS])
def test_small_beta_limit(om):
    """β → 0: ŷ_Ω(βXq) → u, so the first update goes to the mean pattern μ_X."""
    _, t_om, _, _, _ = om
    X = memories(9, 6, 93, scale=2.0)
    q = random_scores((50, 6), 1.0, 94)
    mu = X.mean(0)
    errors = []
    for beta in (1e-1, 1e-4, 1e-8, 1e-12):
        fast = hfy.update(T(q), T(X), beta, t_om, "identity").numpy()
        dense = hfy.update(T(q), T(X), beta, t_om, "identity", return_weights=True)[0].numpy()
        errors.append(max(np.abs(fast - mu).max(), np.abs(dense - mu).max()))
    assert all(b <= a + PROPERTY_ATOL for a, b in zip(errors, errors[1:]))
    assert errors[-1] <= PROPERTY_ATOL


# --- constant conventions ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("om,ps", pairs(SIMPLEX_OMEGAS, PSIS))
def test_constant_conventions(om, ps):
    """'fy' − 'none' = Ψ*(Xᵀu) − Ω(u)/β;  'sshn' − 'none' = H(u)/β + ½M² (identity Ψ only)."""
    _, t_om, r_om, _, _ = om
    _, t_ps, r_ps, _, _ = ps
    n, d, beta = 8, 5, 0.7
    X = memories(n, d, 101, scale=2.0)
    q = states(r_ps, (4, d), 102)
    u = np.full(n, 1.0 / n)
    fy_const = r_ps.conjugate(X.T @ u) - r_om.omega(u) / beta
    sshn_const = r_om.max_entropy(n) / beta + 0.5 * np.max(np.sum(X * X, 1))
    for layer, qq, XX in ((hfy, T(q), T(X)), (ref, q, X)):
        omega = t_om if layer is hfy else r_om
        psi = t_ps if layer is hfy else r_ps
        none = np.asarray(layer.energy(qq, XX, beta, omega, psi, "none"))
        fy = np.asarray(layer.energy(qq, XX, beta, omega, psi, "fy"))
        np.testing.assert_allclose(fy - none, fy_const, rtol=0, atol=PROPERTY_ATOL * (1 + np.abs(fy).max()))
        if ps[0] == "identity":
            sshn = np.asarray(layer.energy(qq, XX, beta, omega, psi, "sshn"))
            np.testing.assert_allclose(sshn - none, sshn_const, rtol=0, atol=PROPERTY_ATOL * (1 + np.abs(sshn).max()))
        else:
            with pytest.raises(ValueError, match="sshn"):
                layer.energy(qq, XX, beta, omega, psi, "sshn")


NON_SIMPLEX = [
    ("quadratic", hfy.Quadratic(), ref.Quadratic()),
    ("poly4", hfy.PolynomialDAM(4), ref.PolynomialDAM(4)),
    ("exp", hfy.ExponentialDAM(), ref.ExponentialDAM()),
]


@pytest.mark.parametrize("name,fast,reference", NON_SIMPLEX, ids=[c[0] for c in NON_SIMPLEX])
def test_sshn_rejects_non_simplex_omega(name, fast, reference):
    q, X = np.ones(3), np.eye(3)
    with pytest.raises(ValueError, match="sshn"):
        hfy.energy(T(q), T(X), 1.0, fast, "identity", "sshn")
    with pytest.raises(ValueError, match="sshn"):
        ref.energy(q, X, 1.0, reference, "identity", "sshn")


def test_shannon_sshn_is_the_modern_hopfield_energy():
    X = memories(12, 7, 111, scale=3.0)
    q = random_scores((5, 7), 2.0, 112)
    for beta in (0.1, 1.0, 8.0):
        want = ref.lse_energy(q, X, beta)
        got_ref = ref.energy(q, X, beta, "softmax", "identity", "sshn")
        got_t = hfy.energy(T(q), T(X), beta, "softmax", "identity", "sshn").numpy()
        for got in (got_ref, got_t):
            np.testing.assert_allclose(got, want, rtol=0, atol=PROPERTY_ATOL * (1 + np.abs(want).max()))


# --- API: errors, per-query stopping, the HFY object, the trace ----------------------------------------------

X_API = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
Q_API = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))

BAD_CALLS = [
    ("X-1d", lambda: hfy.energy(Q_API, X_API[0]), "`X`"),
    ("X-empty", lambda: hfy.update(Q_API, X_API[:0]), "`X`"),
    ("X-int", lambda: hfy.update(Q_API, torch.ones(5, 3, dtype=torch.long)), "`X`"),
    ("q-dim", lambda: hfy.energy(Q_API[:, :2], X_API), "`q`"),
    ("q-dim-update", lambda: hfy.update(torch.zeros(3, 4, dtype=torch.float64), X_API), "`q`"),
    ("q-dim-retrieve", lambda: hfy.retrieve(torch.zeros(4, dtype=torch.float64), X_API), "`q`"),
    ("beta-zero", lambda: hfy.energy(Q_API, X_API, 0.0), "`beta`"),
    ("beta-negative", lambda: hfy.update(Q_API, X_API, -1.0), "`beta`"),
    ("beta-nan", lambda: hfy.retrieve(Q_API, X_API, math.nan), "`beta`"),
    ("beta-inf", lambda: hfy.energy(Q_API, X_API, math.inf), "`beta`"),
    ("beta-tensor", lambda: hfy.update(Q_API, X_API, torch.tensor(-2.0)), "`beta`"),
    ("constant", lambda: hfy.energy(Q_API, X_API, 1.0, constant="ramsauer"), "`constant`"),
    ("omega-name", lambda: hfy.energy(Q_API, X_API, 1.0, "entmax"), "`omega`"),
    ("omega-type", lambda: hfy.update(Q_API, X_API, 1.0, 3), "`omega`"),
    ("psi-name", lambda: hfy.update(Q_API, X_API, 1.0, "softmax", "l1"), "`psi`"),
    ("psi-type", lambda: hfy.energy(Q_API, X_API, 1.0, "softmax", torch.tanh), "`psi`"),
    ("mask-dtype", lambda: hfy.energy(Q_API, X_API, mask=torch.ones(5)), "`mask`"),
    ("mask-size", lambda: hfy.update(Q_API, X_API, mask=torch.ones(4, dtype=torch.bool)), "`mask`"),
    ("mask-empty", lambda: hfy.energy(Q_API, X_API, mask=torch.zeros(5, dtype=torch.bool)), "`mask`"),
    ("mask-empty-update", lambda: hfy.update(Q_API, X_API, 1.0, "sparsemax", mask=torch.zeros(5, dtype=torch.bool)),
     "`mask`"),
    ("mask-per-query-quadratic",
     lambda: hfy.update(Q_API, X_API, 1.0, "identity", "sign", mask=torch.ones(4, 5, dtype=torch.bool)), "`mask`"),
    ("max_iter", lambda: hfy.retrieve(Q_API, X_API, max_iter=0), "`max_iter`"),
    ("tol", lambda: hfy.retrieve(Q_API, X_API, tol=-1.0), "`tol`"),
    ("hfy-beta", lambda: hfy.HFY(X_API, beta=0.0), "`beta`"),
    ("hfy-omega", lambda: hfy.HFY(X_API, omega="sparse"), "`omega`"),
    ("ref-X", lambda: ref.energy(Q_API.numpy(), X_API[0].numpy()), "`X`"),
    ("ref-q", lambda: ref.update(Q_API[:, :2].numpy(), X_API.numpy()), "`q`"),
    ("ref-beta", lambda: ref.energy(Q_API.numpy(), X_API.numpy(), math.nan), "`beta`"),
    ("ref-constant", lambda: ref.energy(Q_API.numpy(), X_API.numpy(), 1.0, constant="x"), "`constant`"),
    ("ref-omega", lambda: ref.update(Q_API.numpy(), X_API.numpy(), 1.0, "gauss"), "`omega`"),
    ("ref-psi", lambda: ref.update(Q_API.numpy(), X_API.numpy(), 1.0, "softmax", "relu"), "`psi`"),
    ("ref-mask", lambda: ref.energy(Q_API.numpy(), X_API.numpy(), mask=np.zeros(5, bool)), "`mask`"),
    ("ref-max_iter", lambda: ref.retrieve(Q_API.numpy(), X_API.numpy(), max_iter=0), "`max_iter`"),
]


@pytest.mark.parametrize("name,call,match", BAD_CALLS, ids=[b[0] for b in BAD_CALLS])
def test_errors_name_the_argument(name, call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


@pytest.mark.parametrize("omega", ["softmax", "sparsemax"])
def test_per_query_mask_leaving_no_memory_is_never_nan(omega):
    """A per-query mask that leaves some query with no memory must be rejected naming `mask`, or give
    finite/inf energies (never NaN, never an unrelated exception); the update maps that query to 0."""
    mask = torch.ones(4, 5, dtype=torch.bool)
    mask[1] = False
    q_next = hfy.update(Q_API, X_API, 1.0, omega, "identity", mask)
    assert bool(torch.isfinite(q_next).all()) and bool((q_next[1] == 0).all())
    for constant in ("fy", "none", "sshn"):
        try:
            e = hfy.energy(Q_API, X_API, 1.0, omega, "identity", constant, mask)
        except ValueError as err:
            assert "`mask`" in str(err)
        else:
            assert not bool(torch.isnan(e).any()), (constant, e)


def test_per_query_stopping():
    """Each query stops on its own; a converged query is not updated again and its energy trace is flat."""
    d = 6
    X = T(memories(10, d, 121, scale=3.0))
    q0 = T(random_scores((12, d), 1.0, 122))
    q0[:3] = X[:3]  # memories: converge at once for some queries, later for others
    beta, tol = 1.5, 1e-3
    r = hfy.retrieve(q0, X, beta, "softmax", "identity", max_iter=200, tol=tol, trace=True)
    assert bool(r.converged.all())
    assert len(set(r.n_iter.tolist())) > 1
    for k in range(q0.shape[0]):
        q = q0[k]
        for _ in range(int(r.n_iter[k])):
            q_prev, q = q, hfy.update(q, X, beta, "softmax", "identity")
        np.testing.assert_allclose(r.q[k].numpy(), q.numpy(), rtol=0, atol=REFERENCE_ATOL)
        # the stopping rule held at the last update, and one more update would still have moved it
        _, p_prev = hfy.update(q_prev, X, beta, "softmax", "identity", return_weights=True)
        _, p_last = hfy.update(q, X, beta, "softmax", "identity", return_weights=True)
        moved = hfy.update(q, X, beta, "softmax", "identity")
        assert float((q - q_prev).abs().max()) <= tol or float((p_last - p_prev).abs().max()) <= tol
        assert float((moved - r.q[k]).abs().max()) > REFERENCE_ATOL
        flat = r.energies[int(r.n_iter[k]):, k]
        assert bool((flat == flat[0]).all())
    # with too few iterations some queries are reported as not converged, after exactly max_iter updates
    short = hfy.retrieve(q0, X, beta, "softmax", "identity", max_iter=2, tol=tol)
    assert bool((~short.converged).any()) and bool((short.n_iter[~short.converged] == 2).all())
    assert bool((short.n_iter <= 2).all())


def test_reference_retrieve_agrees_with_torch():
    X = memories(8, 5, 131, scale=2.0)
    q0 = random_scores((2, 3, 5), 1.0, 132)
    for omega, psi in (("sparsemax", "identity"), ("entmax15", "l2"), ("softmax", "tanh")):
        rr = ref.retrieve(q0, X, 1.2, omega, psi, max_iter=50, tol=1e-9, trace=True)
        rt = hfy.retrieve(T(q0), T(X), 1.2, omega, psi, max_iter=50, tol=1e-9, trace=True)
        np.testing.assert_allclose(rt.q.numpy(), rr.q, rtol=0, atol=PROPERTY_ATOL)
        np.testing.assert_allclose(rt.p.numpy(), rr.p, rtol=0, atol=PROPERTY_ATOL)
        np.testing.assert_array_equal(rt.n_iter.numpy(), rr.n_iter)
        np.testing.assert_array_equal(rt.converged.numpy(), rr.converged)
        np.testing.assert_allclose(rt.energies.numpy(), np.stack(rr.energies).reshape(rt.energies.shape), rtol=0,
                                   atol=PROPERTY_ATOL)


@pytest.mark.parametrize("batch", BATCHES, ids=str)
def test_trace_shape(batch):
    X = T(memories(6, 4, 141))
    q0 = T(random_scores(batch + (4,), 1.0, 142))
    for max_iter in (1, 3, 500):
        r = hfy.retrieve(q0, X, 2.0, "sparsemax", "identity", max_iter=max_iter, tol=1e-9, trace=True)
        steps = int(r.n_iter.max())
        assert r.energies.shape == (steps + 1,) + batch
        assert r.q.shape == batch + (4,) and r.p.shape == batch + (6,)
        assert r.n_iter.shape == batch and r.converged.shape == batch and r.converged.dtype == torch.bool
        assert steps <= max_iter
        np.testing.assert_allclose(r.energies[0].numpy(), hfy.energy(q0, X, 2.0, "sparsemax").numpy(), rtol=0,
                                   atol=REFERENCE_ATOL)
    assert hfy.retrieve(q0, X, 2.0, "sparsemax").energies is None


@pytest.mark.parametrize("ps", PSIS, ids=[p[0] for p in PSIS])
def test_hfy_object_equals_the_functions(ps):
    _, t_ps, r_ps, _, _ = ps
    X = T(memories(7, 5, 151, scale=2.0))
    q = T(states(r_ps, (3, 5), 152))
    mask = T(random_mask((7,), 153))
    for m in (None, mask):
        model = hfy.HFY(X, 1.4, "entmax15", t_ps, mask=m)
        assert torch.equal(model.energy(q), hfy.energy(q, X, 1.4, "entmax15", t_ps, "fy", m))
        assert torch.equal(model.energy(q, "none"), hfy.energy(q, X, 1.4, "entmax15", t_ps, "none", m))
        assert torch.equal(model.update(q), hfy.update(q, X, 1.4, "entmax15", t_ps, m))
        assert torch.equal(model(q), hfy.update(q, X, 1.4, "entmax15", t_ps, m))
        q1, p1 = model.update(q, return_weights=True)
        q2, p2 = hfy.update(q, X, 1.4, "entmax15", t_ps, m, return_weights=True)
        assert torch.equal(q1, q2) and torch.equal(p1, p2)
        a = model.retrieve(q, max_iter=7, tol=1e-8, trace=True)
        b = hfy.retrieve(q, X, 1.4, "entmax15", t_ps, m, max_iter=7, tol=1e-8, trace=True)
        for field in ("q", "p", "n_iter", "converged", "energies"):
            assert torch.equal(getattr(a, field), getattr(b, field))


@pytest.mark.parametrize("ps", PSIS, ids=[p[0] for p in PSIS])
def test_hfy_pretransform_stores_the_images(ps):
    _, t_ps, _, _, _ = ps
    X = T(memories(7, 5, 161, scale=2.0))
    model = hfy.HFY(X, 2.0, "sparsemax", t_ps, pretransform=True)
    assert torch.equal(model.X, t_ps.predict(X))
    assert torch.equal(hfy.HFY(X, 2.0, "sparsemax", t_ps).X, X)


@pytest.mark.parametrize("om", SIMPLEX_OMEGAS, ids=[o[0] for o in SIMPLEX_OMEGAS])
def test_tensor_beta(om):
    """A 0-d tensor β gives the same energy and update as the float, and dE/dβ = (Ω(u) − Ω(p))/β² (constant 'fy')."""
    _, t_om, _, _, _ = om
    n = 7
    X = T(memories(n, 5, 211, scale=2.0))
    q = T(random_scores((4, 5), 1.0, 212))
    beta = torch.tensor(1.7, dtype=torch.float64, requires_grad=True)
    for constant in CONSTANTS_ALL:
        assert torch.equal(hfy.energy(q, X, beta, t_om, "identity", constant).detach(),
                           hfy.energy(q, X, 1.7, t_om, "identity", constant))
    np.testing.assert_allclose(hfy.update(q, X, beta.detach(), t_om).numpy(), hfy.update(q, X, 1.7, t_om).numpy(),
                               rtol=0, atol=REFERENCE_ATOL)
    (grad,) = torch.autograd.grad(hfy.energy(q, X, beta, t_om).sum(), beta)
    _, p = hfy.update(q, X, 1.7, t_om, return_weights=True)
    u = torch.full((n,), 1.0 / n, dtype=torch.float64)
    want = ((t_om.omega(u) - t_om.omega(p)) / 1.7**2).sum()
    np.testing.assert_allclose(float(grad), float(want), rtol=0, atol=PROPERTY_ATOL)


CONSTANTS_ALL = ("fy", "none", "sshn")


# --- special cases of the modern family ---------------------------------------------------------------------------


@pytest.mark.parametrize("beta", [0.3, 1.0, 6.0])
def test_modern_hopfield_update_is_attention(beta):
    """Shannon + identity Ψ (Ramsauer et al.): one update is attention with keys = values = X and scale β."""
    X = T(memories(11, 8, 171, scale=3.0))
    q = T(random_scores((2, 5, 8), 1.0, 172))
    mask = T(random_mask((2, 5, 11), 173))
    for m in (None, mask):
        attn_mask = None if m is None else m.reshape(1, 10, 11)
        want = torch.nn.functional.scaled_dot_product_attention(q.reshape(1, 10, 8), X[None], X[None],
                                                                attn_mask=attn_mask, scale=beta).reshape(2, 5, 8)
        dense, _ = hfy.update(q, X, beta, "softmax", "identity", m, return_weights=True)
        fast = hfy.update(q, X, beta, hfy.Shannon(), "identity", m)
        np.testing.assert_allclose(dense.numpy(), want.numpy(), rtol=0, atol=REFERENCE_ATOL)
        np.testing.assert_allclose(fast.numpy(), want.numpy(), rtol=0, atol=REFERENCE_ATOL)
        if m is None:
            np.testing.assert_allclose(ref.update(q.numpy(), X.numpy(), beta, "softmax", "identity")[0],
                                       want.numpy(), rtol=0, atol=REFERENCE_ATOL)


@pytest.mark.parametrize("beta", [0.2, 1.0, 9.0])
def test_sparse_modern_hopfield_energy_is_tsallis2(beta):
    """Hu et al.'s sparse modern Hopfield energy, ½‖q‖² − β⁻¹Ω*(βXq) with the Gini conjugate written through the
    projection, Ω*(θ) = ½‖θ‖² − ½‖sparsemax(θ) − θ‖² + ½, is the HFY energy with Tsallis α = 2 (sparsemax)."""
    n = 10
    X = memories(n, 6, 181, scale=3.0)
    q = random_scores((20, 6), 2.0, 182)
    theta = beta * q @ X.T
    conj = 0.5 * np.sum(theta**2, -1) - 0.5 * np.sum((ref.sparsemax(theta) - theta) ** 2, -1) + 0.5
    hu = 0.5 * np.sum(q * q, -1) - conj / beta
    sshn = hu + 0.5 * (1 - 1 / n) / beta + 0.5 * np.max(np.sum(X * X, 1))
    for omega in ("sparsemax", hfy.Tsallis(2.0)):
        none = hfy.energy(T(q), T(X), beta, omega, "identity", "none").numpy()
        full = hfy.energy(T(q), T(X), beta, omega, "identity", "sshn").numpy()
        np.testing.assert_allclose(none, hu, rtol=0, atol=PROPERTY_ATOL * (1 + np.abs(hu).max()))
        np.testing.assert_allclose(full, sshn, rtol=0, atol=PROPERTY_ATOL * (1 + np.abs(sshn).max()))
    np.testing.assert_allclose(ref.energy(q, X, beta, "sparsemax", "identity", "sshn"), sshn, rtol=0,
                               atol=PROPERTY_ATOL * (1 + np.abs(sshn).max()))
    # and its update is q ← Xᵀ sparsemax(βXq)
    np.testing.assert_allclose(hfy.update(T(q), T(X), beta, "sparsemax").numpy(), ref.sparsemax(theta) @ X, rtol=0,
                               atol=REFERENCE_ATOL)


# --- CUDA ------------------------------------------------------------------------------------------------------

cuda = pytest.mark.cuda
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def check_device_matches_cpu(device, om, ps):
    """energy, update (dense, attention, top-64 and large-support paths) and retrieve on ``device`` vs CPU float64."""
    _, t_om, _, _, _ = om
    _, t_ps, r_ps, _, _ = ps
    for n in (9, 300, 2048):
        X = T(memories(n, 6, 191, scale=3.0))
        base = T(states(r_ps, (2, 3, 6), 192))
        q = t_ps.predict(base * torch.tensor([1e-3, 1.0, 5.0], dtype=torch.float64)[:, None])
        mask = T(random_mask((2, 3, n), 193))
        for m in (None, mask):
            md = None if m is None else m.to(device)
            for dtype in (torch.float64, torch.float32):
                atol = REFERENCE_ATOL if dtype == torch.float64 else dtype_atol(dtype)
                Xd, qd = X.to(device, dtype), q.to(device, dtype)
                e = hfy.energy(qd, Xd, 1.3, t_om, t_ps, "fy", md)
                assert e.device.type == device and e.dtype == dtype
                e_cpu = hfy.energy(q, X, 1.3, t_om, t_ps, "fy", m)
                assert bool(((e.cpu().double() - e_cpu).abs() <= atol * (1 + e_cpu.abs())).all())
                q1, p1 = hfy.update(qd, Xd, 1.3, t_om, t_ps, md, return_weights=True)
                q1_fast = hfy.update(qd, Xd, 1.3, t_om, t_ps, md)
                q_cpu, p_cpu = hfy.update(q, X, 1.3, t_om, t_ps, m, return_weights=True)
                np.testing.assert_allclose(p1.cpu().double().numpy(), p_cpu.numpy(), rtol=0, atol=atol)
                np.testing.assert_allclose(q1.cpu().double().numpy(), q_cpu.numpy(), rtol=0, atol=atol)
                np.testing.assert_allclose(q1_fast.cpu().double().numpy(), q_cpu.numpy(), rtol=0, atol=atol)
        r = hfy.retrieve(q.to(device), X.to(device), 1.3, t_om, t_ps, max_iter=10, tol=0.0, trace=True)
        r_cpu = hfy.retrieve(q, X, 1.3, t_om, t_ps, max_iter=10, tol=0.0, trace=True)
        assert r.q.device.type == device
        assert_monotone(r.energies.cpu())
        np.testing.assert_allclose(r.energies.cpu().numpy(), r_cpu.energies.numpy(), rtol=0,
                                   atol=PROPERTY_ATOL * (1 + float(r_cpu.energies.abs().max())))


@cuda
@needs_cuda
@pytest.mark.parametrize("om,ps", pairs(SIMPLEX_OMEGAS, PSIS))
def test_cuda_matches_cpu(om, ps):
    check_device_matches_cpu("cuda", om, ps)


@cuda
@needs_cuda
@pytest.mark.parametrize("om", SIMPLEX_OMEGAS, ids=[o[0] for o in SIMPLEX_OMEGAS])
def test_cuda_gradient_is_danskin(om):
    _, t_om, _, _, _ = om
    X = T(memories(7, 5, 201, scale=2.0)).cuda()
    q = T(random_scores((4, 5), 1.0, 202)).cuda().requires_grad_()
    (grad,) = torch.autograd.grad(hfy.energy(q, X, 1.1, t_om).sum(), q)
    _, p = hfy.update(q.detach(), X, 1.1, t_om, return_weights=True)
    np.testing.assert_allclose(grad.cpu().numpy(), (q.detach() - p @ X).cpu().numpy(), rtol=0, atol=REFERENCE_ATOL)
