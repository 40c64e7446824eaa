"""Sequential k-subsets: the budgeted Viterbi MAP, batched SparseMAP, windows (w = inf), gradients in z and w."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import hfy
import hfy.oracle as oracle
import hfy.reference as ref
from hfy.reference.sparsemap import sparsemap_bonus_derivative, sparsemap_jacobian
from hfy.testing import (
    FD_ATOL,
    FD_STEP,
    GRADCHECK,
    ORACLE_ATOL,
    PROPERTY_ATOL,
    REFERENCE_ATOL,
    dtype_atol,
    finite_difference_jacobian,
    random_scores,
)

#: every test runs with both CPU solvers: compiled and batched (see the fixture in conftest.py)
pytestmark = pytest.mark.usefixtures("sequential_solver")
#: tests of the batched solver's own steps (its start, its drop rounds, its oracle) run with it alone
BATCHED_ONLY = pytest.mark.parametrize("sequential_solver", ["batched"], indirect=True)

INF = math.inf
TRANSITIONS = [-0.5, 0.0, 0.01, 1.0, INF]

cuda = pytest.mark.cuda
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def brute_force_structures(n, k, w, exactly_k):
    """Every admissible structure with its total bonus weight b(y) (adjacent selected pairs)."""
    rows = []
    for c in ([k] if exactly_k or math.isinf(w) else range(k + 1)):
        for subset in itertools.combinations(range(n), c):
            y = np.zeros(n)
            y[list(subset)] = 1.0
            b = float(np.sum(y[:-1] * y[1:]))
            if math.isinf(w) and b != k - 1:
                continue  # w = inf admits only the contiguous windows
            rows.append((y, b))
    A = np.array([r[0] for r in rows])
    b = np.array([r[1] for r in rows])
    return A, b


# --- MAP: the budgeted Viterbi recursion ------------------------------------------------------------------


def viterbi_cases():
    rng = np.random.default_rng(2024)
    cases = []
    for case in range(40):
        n = int(rng.integers(1, 10))
        k = int(rng.integers(1, n + 1))
        w = [-2.0, -0.5, 0.0, 0.3, 1.5, INF][case % 6]
        exactly_k = bool(case % 4 < 2)
        cases.append((n, k, w, exactly_k, int(rng.integers(2**31))))
    return cases


@BATCHED_ONLY
@pytest.mark.parametrize("n,k,w,exactly_k,seed", viterbi_cases())
def test_budgeted_viterbi_matches_brute_force(n, k, w, exactly_k, seed):
    """Ten random rows per case (400 in all): the batched and the reference MAP reach the brute-force optimum."""
    theta = random_scores((10, n), [0.3, 1.0, 3.0][seed % 3], seed)
    A, b = brute_force_structures(n, k, w, exactly_k)
    bonus = 0.0 if math.isinf(w) else w
    best = (theta @ A.T + bonus * b).max(axis=1)
    y, feat = hfy.budgeted_viterbi(torch.from_numpy(theta), k, w, exactly_k)
    y, feat = y.numpy(), feat.numpy()
    assert set(np.unique(y)) <= {0.0, 1.0}
    np.testing.assert_array_equal(feat, np.sum(y[:, :-1] * y[:, 1:], axis=1))
    sizes = y.sum(1)
    assert (sizes == k).all() if exactly_k or math.isinf(w) else (sizes <= k).all()
    if math.isinf(w):
        assert (feat == k - 1).all()
    np.testing.assert_allclose((theta * y).sum(1) + bonus * feat, best, rtol=0, atol=PROPERTY_ATOL)
    for row in range(10):
        yr, br = ref.budgeted_viterbi(theta[row], k, w, exactly_k)
        assert br == np.sum(yr[:-1] * yr[1:])
        assert abs(theta[row] @ yr + bonus * br - best[row]) <= PROPERTY_ATOL


# --- the triangle ----------------------------------------------------------------------------------------


def oracle_cases():
    cases = []
    for seed, (n, k, w, exactly_k) in enumerate([(5, 2, 0.5, True), (6, 3, -0.5, True), (7, 2, INF, True),
                                                 (8, 3, 1.0, True), (6, 2, 0.5, False), (8, 4, 0.01, False),
                                                 (4, 1, 2.0, True), (8, 2, 0.0, False)]):
        cases.append((n, k, w, exactly_k, random_scores((n,), 1.5, seed)))
    return cases


@pytest.mark.parametrize("method", ["flow", "enumerate"])
@pytest.mark.parametrize("n,k,w,exactly_k,theta", oracle_cases(),
                         ids=[f"N{c[0]}-k{c[1]}-w{c[2]}-{'exactly' if c[3] else 'at-most'}" for c in oracle_cases()])
def test_oracles_agree_with_reference(n, k, w, exactly_k, theta, method):
    mu = oracle.sequential_ksubsets(theta, k, w, exactly_k=exactly_k, method=method)
    np.testing.assert_allclose(mu, ref.sequential_ksubsets(theta, k, w, exactly_k=exactly_k), rtol=0, atol=ORACLE_ATOL)


def test_flow_oracle_beyond_enumeration():
    theta = random_scores((16,), 1.0, 5)
    for k, w, exactly_k in [(3, 0.4, True), (4, -0.3, False)]:
        mu = oracle.sequential_ksubsets(theta, k, w, exactly_k=exactly_k)
        np.testing.assert_allclose(mu, ref.sequential_ksubsets(theta, k, w, exactly_k=exactly_k), rtol=0,
                                   atol=ORACLE_ATOL)


@pytest.mark.parametrize("exactly_k", [True, False], ids=["exactly", "at-most"])
@pytest.mark.parametrize("w", TRANSITIONS)
def test_batched_torch_agrees_with_reference_active_set(w, exactly_k):
    for seed, (n, k, scale) in enumerate([(9, 3, 1.0), (12, 2, 3.0), (7, 5, 0.3)]):
        theta = random_scores((6, n), scale, seed + 10)
        out = hfy.sequential_ksubsets(torch.from_numpy(theta), k, w, exactly_k=exactly_k).numpy()
        np.testing.assert_allclose(out, ref.sequential_ksubsets(theta, k, w, exactly_k=exactly_k), rtol=0,
                                   atol=REFERENCE_ATOL)


@pytest.mark.parametrize("shape,dim", [((9,), -1), ((9, 4), 0), ((2, 9, 3), 1), ((2, 3, 9), -1)])
def test_every_layout(shape, dim):
    theta = random_scores(shape, 1.0, len(shape) + dim)
    out = hfy.sequential_ksubsets(torch.from_numpy(theta), 3, 0.5, dim=dim).numpy()
    np.testing.assert_allclose(out, ref.sequential_ksubsets(theta, 3, 0.5, dim=dim), rtol=0, atol=REFERENCE_ATOL)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("w", [0.5, INF])
def test_low_precision_agrees_with_float64(dtype, w):
    z = torch.from_numpy(random_scores((6, 10), 2.0, seed=3)).to(dtype)
    out = hfy.sequential_ksubsets(z, 3, w)
    assert out.dtype == dtype and not torch.isnan(out).any()
    assert (out.double() - hfy.sequential_ksubsets(z.double(), 3, w)).abs().max().item() <= dtype_atol(dtype)


# --- relations and properties ---------------------------------------------------------------------------


@pytest.mark.parametrize("exactly_k", [True, False], ids=["exactly", "at-most"])
def test_no_bonus_is_ksubsets(exactly_k):
    theta = torch.from_numpy(random_scores((8, 9), 2.0, seed=4))
    np.testing.assert_allclose(hfy.sequential_ksubsets(theta, 3, 0.0, exactly_k=exactly_k).numpy(),
                               hfy.ksubsets(theta, 3, exactly_k=exactly_k).numpy(), rtol=0, atol=REFERENCE_ATOL)


@pytest.mark.parametrize("w", [1e2, 1e4])
def test_windows_equal_a_large_finite_bonus_in_float64(w):
    """w = inf is a hard restriction to windows; a large finite w reaches the same marginals."""
    theta = torch.from_numpy(random_scores((6, 10), 2.0, seed=1))
    windows = hfy.sequential_ksubsets(theta, 3, INF)
    np.testing.assert_allclose(ref.sequential_ksubsets(theta.numpy(), 3, w), windows.numpy(), rtol=0,
                               atol=REFERENCE_ATOL)
    np.testing.assert_allclose(hfy.sequential_ksubsets(theta, 3, w).numpy(), windows.numpy(), rtol=0,
                               atol=REFERENCE_ATOL)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 9).flatmap(lambda n: st.tuples(
    hnp.arrays(np.float64, n, elements=st.floats(-5, 5, allow_subnormal=False)), st.integers(1, n))),
    st.sampled_from(TRANSITIONS), st.booleans())
def test_output_in_the_polytope(theta_k, w, exactly_k):
    theta, k = theta_k
    mu = hfy.sequential_ksubsets(torch.from_numpy(theta), k, w, exactly_k=exactly_k).numpy()
    assert (mu >= -PROPERTY_ATOL).all() and (mu <= 1 + PROPERTY_ATOL).all()
    if exactly_k or math.isinf(w):
        assert abs(mu.sum() - k) <= PROPERTY_ATOL
    else:
        assert mu.sum() <= k + PROPERTY_ATOL


def test_at_most_k_can_select_nothing():
    theta = -1.0 - np.abs(random_scores((3, 7), 1.0, 6))
    assert (hfy.sequential_ksubsets(torch.from_numpy(theta), 2, 0.5, exactly_k=False).numpy() == 0).all()
    assert abs(hfy.sequential_ksubsets(torch.from_numpy(theta), 2, 0.5).sum().item() - 6) <= PROPERTY_ATOL


@pytest.mark.parametrize("offset", [1e4, -1e4])
def test_shift_invariance_for_exactly_k(offset):
    theta = torch.from_numpy(random_scores((4, 9), 1.0, seed=7))
    for w in (0.5, INF):
        np.testing.assert_allclose(hfy.sequential_ksubsets(theta + offset, 3, w).numpy(),
                                   hfy.sequential_ksubsets(theta, 3, w).numpy(), rtol=0, atol=PROPERTY_ATOL)


def test_adjacent_pairs_structured_margin():
    """k = 2, w = inf: e_i + e_{i+1} is the output iff its pair score beats every overlapping pair by >= 1
    and every disjoint pair by >= 2 (½‖a_s − a_s'‖² is 1 and 2)."""
    rng = np.random.default_rng(0)
    integral_count, checked = 0, 0
    for n in (4, 6, 9):
        theta = rng.standard_normal((300, n)) * 1.5
        mu = hfy.sequential_ksubsets(torch.from_numpy(theta), 2, INF).numpy()
        pair = theta[:, :-1] + theta[:, 1:]
        best = pair.argmax(1)
        for r in range(theta.shape[0]):
            j = best[r]
            lead = pair[r, j] - pair[r]
            dist = np.abs(np.arange(n - 1) - j)
            ok = all(lead[d] >= 1 for d in np.flatnonzero(dist == 1)) and all(
                lead[d] >= 2 for d in np.flatnonzero(dist >= 2))
            target = np.zeros(n)
            target[[j, j + 1]] = 1.0
            assert bool(np.array_equal(mu[r], target)) == ok
            integral_count += ok
            checked += 1
    assert 0 < integral_count < checked  # both sides of the proposition were exercised


# --- derivatives ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("w", [-0.5, 0.4, 1.0])
def test_gradcheck_in_z_and_transition(w):
    z = torch.from_numpy(random_scores((2, 7), 1.0, seed=2)).requires_grad_()
    wt = torch.tensor(w, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: hfy.sequential_ksubsets(a, 3, b), (z, wt), **GRADCHECK)


def test_gradcheck_windows():
    z = torch.from_numpy(random_scores((3, 6), 1.0, seed=3)).requires_grad_()
    assert torch.autograd.gradcheck(lambda a: hfy.sequential_ksubsets(a, 3, INF), (z,), **GRADCHECK)
    assert torch.autograd.gradcheck(lambda a: hfy.sequential_ksubsets(a, 2, INF, dim=0), (z,), **GRADCHECK)


def test_gradcheck_at_most_k_in_z_and_transition():
    """The first row's marginals mix the structure {0} with the empty one (see the reference test below)."""
    z = torch.from_numpy(np.stack([[0.3, -1.0, -2.0, -0.5, -0.8, -1.2], random_scores((6,), 1.0, seed=0)]))
    z.requires_grad_()
    wt = torch.tensor(0.4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: hfy.sequential_ksubsets(a, 3, b, exactly_k=False), (z, wt),
                                    **GRADCHECK)


@pytest.mark.parametrize("w", [0.0, 0.4, -0.5, INF])
@pytest.mark.parametrize("seed", [0, 1])
def test_reference_jacobians_match_finite_differences(seed, w):
    theta = random_scores((8,), 1.0, seed)
    active = ref.SequentialKSubsets(3, w).solve(theta)
    fd = finite_difference_jacobian(lambda t: ref.sequential_ksubsets(t, 3, w), theta)
    np.testing.assert_allclose(sparsemap_jacobian(active), fd, rtol=0, atol=FD_ATOL)
    auto = torch.autograd.functional.jacobian(lambda t: hfy.sequential_ksubsets(t, 3, w), torch.from_numpy(theta))
    np.testing.assert_allclose(auto.numpy(), sparsemap_jacobian(active), rtol=0, atol=REFERENCE_ATOL)
    if w not in (0.0, INF):  # at w = 0 a degenerate active set makes μ(w) kinked: one-sided derivatives differ
        fd_w = (ref.sequential_ksubsets(theta, 3, w + FD_STEP) - ref.sequential_ksubsets(theta, 3, w - FD_STEP)) / (
            2 * FD_STEP)
        np.testing.assert_allclose(sparsemap_bonus_derivative(active), fd_w, rtol=0, atol=FD_ATOL)


def test_reference_jacobian_at_most_k_with_the_empty_structure_active():
    """μ = (0.3, 0, 0, 0) mixes the structure {1} and the empty one: locally μ_1 = θ_1, so ∂μ_1/∂θ_1 = 1."""
    theta = np.array([0.3, -1.0, -2.0, -0.5])
    active = ref.SequentialKSubsets(2, 0.4, exactly_k=False).solve(theta)
    np.testing.assert_allclose(active.mu, [0.3, 0.0, 0.0, 0.0], rtol=0, atol=PROPERTY_ATOL)
    fd = finite_difference_jacobian(lambda t: ref.sequential_ksubsets(t, 2, 0.4, exactly_k=False), theta)
    assert abs(fd[0, 0] - 1.0) <= FD_ATOL
    np.testing.assert_allclose(sparsemap_jacobian(active), fd, rtol=0, atol=FD_ATOL)


# --- bad input -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("w", [0.0, -0.4, 0.3, 1.5, INF])
@pytest.mark.parametrize("exactly_k", [True, False])
def test_masks(w, exactly_k):
    """-inf masks an entry: its marginal is exactly 0, adjacent pairs never span it, and the marginals are
    those of a finite score far below the others (in both layers, on random rows; "at most k" with fewer
    than k unmasked scores too).  Rows without k unmasked scores (k consecutive ones for windows) raise
    naming k; NaN and +inf raise naming z."""
    rng = np.random.default_rng(abs(int(10 * (w if math.isfinite(w) else 9))) + 50 * exactly_k)
    cases = 0
    for _ in range(60):
        n = int(rng.integers(4, 10))
        k = int(rng.integers(1, n))
        z = rng.normal(size=n) * rng.choice([0.5, 1.0, 3.0])
        mask = rng.random(n) < 0.3
        z[mask] = -INF
        if math.isinf(w) and np.convolve(~mask, np.ones(k), mode="valid").max() < k:
            continue
        if not math.isinf(w) and exactly_k and (~mask).sum() < k:
            continue
        want = ref.sequential_ksubsets(np.where(mask, -200.0, z), k, w, exactly_k=exactly_k)
        got = hfy.sequential_ksubsets(torch.from_numpy(z), k, w, exactly_k=exactly_k).numpy()
        np.testing.assert_allclose(got, want, rtol=0, atol=REFERENCE_ATOL)
        np.testing.assert_allclose(ref.sequential_ksubsets(z, k, w, exactly_k=exactly_k), want, rtol=0,
                                   atol=REFERENCE_ATOL)
        assert np.all(got[mask] == 0.0)
        cases += 1
    assert cases >= 20
    short = np.array([0.1, -INF, 0.3, -INF, 0.2])
    if exactly_k or math.isinf(w):
        with pytest.raises(ValueError, match="`k`"):
            hfy.sequential_ksubsets(torch.from_numpy(short), 2 if math.isinf(w) else 4, w, exactly_k=exactly_k)
        with pytest.raises(ValueError, match="`k`"):
            ref.sequential_ksubsets(short, 2 if math.isinf(w) else 4, w, exactly_k=exactly_k)
    for bad in (math.nan, INF):
        with pytest.raises(ValueError, match="`z`"):
            hfy.sequential_ksubsets(torch.tensor([0.1, bad, 0.3]), 1, w, exactly_k=exactly_k)


@pytest.mark.parametrize("k", [0, 4, 1.5, True])
def test_invalid_k_raises(k):
    with pytest.raises(ValueError, match="`k`"):
        hfy.sequential_ksubsets(torch.randn(3), k)


@pytest.mark.parametrize("w", [math.nan, -INF])
def test_invalid_transition_raises(w):
    """In every layer (the reference and the oracle took w = -inf for windows)."""
    with pytest.raises(ValueError, match="`transition`"):
        hfy.sequential_ksubsets(torch.randn(5), 2, w)
    with pytest.raises(ValueError, match="`transition`"):
        ref.sequential_ksubsets(np.random.default_rng(0).normal(size=5), 2, w)
    with pytest.raises(ValueError, match="`transition`"):
        oracle.sequential_ksubsets(np.random.default_rng(0).normal(size=5), 2, w)


def test_reference_regulariser_refuses_a_fractional_k():
    with pytest.raises(ValueError, match="`k`"):
        ref.SequentialKSubsets(2.7)


def _planted(rng, n, k, w, exactly_k, scale):
    """A row whose top h <= k scores exceed the rest by more than 1 + 2|w| + 1 and whose bottom l <= N − k
    fall below it by as much, the gaps drawn at ``scale`` (moderate, or ±1e30)."""
    m = 1.0 + 2.0 * abs(w)
    h, low = int(rng.integers(0, k + 1)), int(rng.integers(0, n - k + 1))
    theta = rng.normal(size=n)
    idx = rng.permutation(n)
    top, bottom = idx[:h], idx[n - low:]
    mid = np.setdiff1d(idx, np.concatenate([top, bottom]))
    hi = theta[mid].max() if mid.size else 0.0
    lo = theta[mid].min() if mid.size else 0.0
    theta[top] = max(hi, m) + m + 1.0 + scale * rng.uniform(1.0, 2.0, h)
    theta[bottom] = lo - m - 1.0 - scale * rng.uniform(1.0, 2.0, low)
    return theta


@pytest.mark.parametrize("exactly_k", [True, False])
def test_huge_scores_are_saturated_exactly(monkeypatch, exactly_k):
    """Scores that stand out by more than 1 + 2|w| above the top k (or below the rest) are set aside
    (``saturate``, proved in its docstring): with saturation forced on moderate rows the marginals are the
    unsaturated ones, and rows with the same planted entries at ±1e30 have the same marginals, in both
    layers (before, ±1e30 raised an IndexError and 1e20 gave wrong marginals silently)."""
    import importlib

    from hfy._torch import sequential_ksubsets as sq

    rsq = importlib.import_module("hfy.reference.sequential_ksubsets")  # (the package exports a function of that name)
    rng = np.random.default_rng(7)
    for _ in range(60):
        n = int(rng.integers(3, 12))
        k = int(rng.integers(1, n + 1))
        w = float(rng.choice([-1.0, -0.3, 0.0, 0.01, 0.5, 2.0]))
        seed = int(rng.integers(1 << 30))
        moderate = _planted(np.random.default_rng(seed), n, k, w, exactly_k, 10.0)
        huge = _planted(np.random.default_rng(seed), n, k, w, exactly_k, 1e30)
        want = ref.sequential_ksubsets(moderate, k, w, exactly_k=exactly_k)
        with monkeypatch.context() as patch:
            patch.setattr(sq, "SATURATE_ABOVE", 0.0)
            patch.setattr(rsq, "SATURATE_ABOVE", 0.0)
            forced = hfy.sequential_ksubsets(torch.from_numpy(moderate), k, w, exactly_k=exactly_k).numpy()
            np.testing.assert_allclose(forced, want, rtol=0, atol=REFERENCE_ATOL)
            np.testing.assert_allclose(ref.sequential_ksubsets(moderate, k, w, exactly_k=exactly_k), want, rtol=0,
                                       atol=REFERENCE_ATOL)
        for dtype in (torch.float64, torch.float32):
            got = hfy.sequential_ksubsets(torch.from_numpy(huge).to(dtype), k, w, exactly_k=exactly_k)
            np.testing.assert_allclose(got.double().numpy(), want, rtol=0, atol=dtype_atol(dtype))
        np.testing.assert_allclose(ref.sequential_ksubsets(huge, k, w, exactly_k=exactly_k), want, rtol=0,
                                   atol=REFERENCE_ATOL)
    # the reviewer's row: 1e20 must not swallow the difference between 5 and the bonus 0.5
    z = torch.tensor([1e20, 0.0, 5.0, 0.3, -2.0], dtype=torch.float64)
    assert hfy.sequential_ksubsets(z, 2, 0.5).tolist() == [1.0, 0.0, 1.0, 0.0, 0.0]


def test_huge_scores_the_solver_cannot_set_aside_raise():
    """Windows have no saturation rule: a score beyond MAX_SCORE raises (it gave the wrong window); so do
    many tied huge scores with exactly_k=False (no shift can bring them down)."""
    with pytest.raises(ValueError, match="`z`"):
        hfy.sequential_ksubsets(torch.tensor([0.0, 1e20, 5.0, 0.3, -2.0], dtype=torch.float64), 2, INF)
    with pytest.raises(ValueError, match="`z`"):
        ref.sequential_ksubsets(np.array([0.0, 1e20, 5.0, 0.3, -2.0]), 2, INF)
    tied = torch.full((6,), 1e20, dtype=torch.float64)
    with pytest.raises(ValueError, match="`z`"):
        hfy.sequential_ksubsets(tied, 2, 0.5, exactly_k=False)
    # exactly k shifts them: every pair of the tied row, the solution of zero scores
    np.testing.assert_allclose(hfy.sequential_ksubsets(tied, 2, 0.5).numpy(),
                               ref.sequential_ksubsets(np.zeros(6), 2, 0.5), rtol=0, atol=REFERENCE_ATOL)


@pytest.mark.parametrize("max_iter", [0, -3, 2.5, True, "10"])
def test_invalid_max_iter_raises(max_iter):
    with pytest.raises(ValueError, match="`max_iter`"):
        hfy.sequential_ksubsets(torch.randn(2, 6), 2, 0.1, max_iter=max_iter)
    with pytest.raises(ValueError, match="`max_iter`"):
        hfy.SequentialKSubsets(2, 0.1, max_iter=max_iter)


def test_max_iter_caps_the_active_set_and_the_default_grows_with_n():
    """Too few iterations raise an error that names the argument; the default cap is max(1000, 10N), enough
    for wide supports (a few iterations per fractional marginal) that a fixed cap of 200 did not allow."""
    from hfy._torch.sparsemap import MAX_ITER, resolve_max_iter

    assert resolve_max_iter(None, 16) == MAX_ITER and resolve_max_iter(None, 1024) == 10240
    # all 47 marginals fractional: 166 to 218 iterations per row, more than the former cap of 200
    z = torch.randn(4, 47, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 0.05
    np.testing.assert_allclose(hfy.sequential_ksubsets(z, 21, 0.01).numpy(),
                               ref.sequential_ksubsets(z.numpy(), 21, 0.01), rtol=0, atol=REFERENCE_ATOL)
    assert resolve_max_iter(7, 1024) == 7
    theta = torch.from_numpy(random_scores((4, 40), 0.3, seed=2))
    expected = ref.sequential_ksubsets(theta.numpy(), 6, 0.2)
    with pytest.raises(RuntimeError, match="`max_iter`"):
        hfy.sequential_ksubsets(theta, 6, 0.2, max_iter=1)
    with pytest.raises(RuntimeError, match="`max_iter`"):
        hfy.SequentialKSubsets(6, 0.2, max_iter=1).predict(theta)
    np.testing.assert_allclose(hfy.sequential_ksubsets(theta, 6, 0.2, max_iter=500).numpy(), expected,
                               rtol=0, atol=REFERENCE_ATOL)
    np.testing.assert_allclose(hfy.SequentialKSubsets(6, 0.2, max_iter=500).predict(theta).numpy(), expected,
                               rtol=0, atol=REFERENCE_ATOL)


def test_float32_scores_are_solved_in_float64():
    """The active set runs in float64 for float32 scores: in float32 the rounding of its solves exceeds the
    tolerance of its affine-independence test, and a dependent structure entered the active set (a
    Cholesky error); scores near 1e4 left no piece of the start wider than the float32 rounding (an
    index error).  Both now match the float64 reference, up to the rounding of the scores to float32."""
    z = np.random.default_rng(0).standard_normal((3, 13)) * 0.2
    z[:, ::3] += 1.0
    z32 = torch.from_numpy(z).float()
    out = hfy.sequential_ksubsets(z32, 10, 0.01)
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out.double().numpy(), ref.sequential_ksubsets(z32.double().numpy(), 10, 0.01),
                               rtol=0, atol=1e-6)
    z = np.random.default_rng(0).standard_normal((2, 37)) + 1e4
    z32 = torch.from_numpy(z).float()
    out = hfy.sequential_ksubsets(z32, 17, 0.3, exactly_k=False)
    np.testing.assert_allclose(out.double().numpy(),
                               ref.sequential_ksubsets(z32.double().numpy(), 17, 0.3, exactly_k=False),
                               rtol=0, atol=1e-6)
    # gradients come back in the input's dtype, the transition's included
    zz = z32[:1].clone().requires_grad_(True)
    w = torch.tensor(0.3, requires_grad=True)
    (hfy.sequential_ksubsets(zz, 17, w) * torch.linspace(-1, 1, 37)).sum().backward()
    assert zz.grad.dtype == torch.float32 and w.grad.dtype == torch.float32
    assert torch.isfinite(zz.grad).all() and torch.isfinite(w.grad)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=["fp32", "fp16", "bf16"])
def test_low_precision_scores_match_the_reference_on_their_rounded_values(dtype):
    """Random problems of every kind that broke the float32 solver (ties, integer grids, offsets far from
    zero, wide supports, bonuses of both signs, both budgets): the output, in the input's dtype, matches
    the float64 reference at the scores rounded to that dtype."""
    rng = np.random.default_rng({torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}[dtype])
    atol = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}[dtype]
    for case in range(40):
        b, n = int(rng.integers(1, 6)), int(rng.integers(2, 30))
        k = int(rng.integers(1, n + 1))
        w = float(rng.choice([-1.0, -0.1, 0.0, 0.01, 0.3, 2.0]))
        exactly_k = bool(case % 2)
        kind = case % 5
        if kind == 0:
            z = rng.standard_normal((b, n)) * rng.choice([0.05, 0.3, 1.0, 5.0])
        elif kind == 1:
            z = rng.integers(-2, 3, size=(b, n)).astype(float)
        elif kind == 2:
            z = rng.standard_normal((b, n)) + (1e4 if dtype == torch.float32 else 100.0)
        elif kind == 3:
            z = np.round(rng.standard_normal((b, n)) * 4) / 4
        else:
            z = rng.standard_normal((b, n)) * 0.2
            z[:, ::3] += 1.0
        zt = torch.from_numpy(z).to(dtype)
        out = hfy.sequential_ksubsets(zt, k, w, exactly_k=exactly_k)
        assert out.dtype == dtype
        expected = ref.sequential_ksubsets(zt.double().numpy(), k, w, exactly_k=exactly_k)
        np.testing.assert_allclose(out.double().numpy(), expected, rtol=0, atol=atol,
                                   err_msg=f"case {case}: {(b, n, k, w, exactly_k)}")


# --- CUDA ------------------------------------------------------------------------------------------------


@cuda
@needs_cuda
@pytest.mark.parametrize("w", [0.5, INF])
def test_cuda_matches_cpu(w):
    z = torch.from_numpy(random_scores((32, 12), 1.5, seed=1))
    zc = z.cuda().requires_grad_()
    out = hfy.sequential_ksubsets(zc, 3, w)
    assert out.device.type == "cuda"
    assert (out.cpu() - hfy.sequential_ksubsets(z, 3, w)).abs().max().item() <= REFERENCE_ATOL
    (out * torch.linspace(-1, 1, 12, device="cuda", dtype=torch.float64)).sum().backward()
    assert not torch.isnan(zc.grad).any()
    y, b = hfy.budgeted_viterbi(z.cuda(), 3, w)
    y_cpu, b_cpu = hfy.budgeted_viterbi(z, 3, w)
    assert torch.equal(y.cpu(), y_cpu) and torch.equal(b.cpu(), b_cpu)


# --- the batched solver's warm start, early exits and partial inner loops -----------------------------------


@BATCHED_ONLY
@pytest.mark.parametrize("exactly_k", [True, False], ids=["exactly", "at-most"])
@pytest.mark.parametrize("k", [2, 5])
def test_ksubsets_start_is_an_affinely_independent_mixture_of_admissible_structures(k, exactly_k):
    from hfy._torch.sequential_ksubsets import ksubsets_start

    theta = torch.from_numpy(np.concatenate([random_scores((20, 30), 1.0, seed=k), random_scores((4, 30), 1.0, seed=9)
                                             - 3.0, random_scores((4, 30), 1.0, seed=10) + 1e4,
                                             random_scores((6, 30), 0.2, seed=11)]))  # (long runs of fractions)
    A, feats, weights = ksubsets_start(theta, k, exactly_k)
    used = weights > 0
    assert used.any(-1).all()
    sizes = A.sum(-1)
    assert ((A == 0) | (A == 1)).all()
    assert ((sizes == k) if exactly_k else (sizes <= k))[used].all()
    np.testing.assert_array_equal(feats[used].numpy(), (A[..., :-1] * A[..., 1:]).sum(-1)[used].numpy())
    mix = (weights.unsqueeze(-1) * A).sum(1) / weights.sum(-1, keepdim=True)
    assert (mix - hfy.ksubsets(theta, k, exactly_k=exactly_k)).abs().max().item() <= 1e-6
    for r in range(theta.shape[0]):  # the lifted structures (a_s, 1) of a row are linearly independent
        lifted = torch.cat([A[r][used[r]], torch.ones(int(used[r].sum()), 1, dtype=A.dtype)], dim=1)
        assert torch.linalg.matrix_rank(lifted).item() == lifted.shape[0]


@BATCHED_ONLY
def test_chain_layout_orders_every_row_and_nests_fractional_neighbours():
    """The layout is a permutation of each row; between two fractional neighbours it lays out singletons
    whose mass makes their arcs nest, so the start selects them together min(μ_i, μ_{i+1}) of the time."""
    from hfy._torch.sequential_ksubsets import chain_layout, ksubsets_start

    # μ = clip(θ, 0, 1) with Σ μ = 3: a one at 0, the neighbours 1, 2 (0.3, 0.6), singletons 0.7 and 0.4
    theta = torch.tensor([[1.5, 0.3, 0.6, -1.0, 0.7, -1.0, -1.0, 0.4, -1.0, -1.0]], dtype=torch.float64)
    mu = hfy.ksubsets(theta, 3)
    np.testing.assert_allclose(mu.numpy(), np.clip(theta.numpy(), 0.0, 1.0), rtol=0, atol=1e-12)
    order = chain_layout(mu, torch.full((1, 1), 1e-12, dtype=mu.dtype))[0].tolist()
    assert sorted(order) == list(range(10))
    between = order[order.index(1) + 1: order.index(2)]  # what lies between the two neighbours
    assert between and set(between) <= {4, 7}
    gap = float(mu[0, between].sum())
    assert 1 - 0.6 <= gap <= 1 - 0.3  # the arcs of 1 and 2 nest
    A, feats, weights = ksubsets_start(theta, 3)
    w = weights[0] / weights[0].sum()
    assert abs(float((w * A[0, :, 1] * A[0, :, 2]).sum()) - 0.3) <= 1e-12
    # random rows with runs, ones and zeros: still permutations, with the runs' members in position order
    for scale in (0.2, 1.0, 5.0):
        theta = torch.from_numpy(random_scores((16, 40), scale, seed=int(10 * scale)))
        mu = hfy.ksubsets(theta, 6)
        order = chain_layout(mu, torch.full((16, 1), 1e-12, dtype=mu.dtype))
        assert torch.equal(order.sort(1).values, torch.arange(40).expand(16, 40))


@BATCHED_ONLY
def test_the_start_has_most_of_the_adjacent_pairs_its_marginals_allow():
    """Σ_i min(μ_i, μ_{i+1}) bounds the expected adjacent pairs of any mixture with marginals μ."""
    from hfy._torch.sequential_ksubsets import ksubsets_start

    theta = torch.from_numpy(random_scores((64, 128), 1.0, seed=4))
    for k in (4, 8):
        mu = hfy.ksubsets(theta, k)
        A, feats, weights = ksubsets_start(theta, k)
        pairs = (weights * feats).sum(-1) / weights.sum(-1)
        bound = torch.minimum(mu[:, :-1], mu[:, 1:]).sum(-1)
        assert (pairs <= bound + 1e-9).all()
        assert float(pairs.sum() / bound.sum()) > 0.9


@BATCHED_ONLY
@pytest.mark.parametrize("exactly_k", [True, False])
def test_the_mixture_start_is_used_only_for_a_small_bonus_on_narrow_supports(exactly_k):
    """The batch starts from the k-subsets mixture for w = 0 (its solution), and when the mean number F of
    fractional entries of the k-subsets projection is at most MIXTURE_MAX_FRACTIONAL and |w|·F at most
    MIXTURE_MAX_BONUS; from the MAP structures (no slot) otherwise.  The solution is the reference's either way."""
    from hfy._torch import sequential_ksubsets as sq

    k = 4

    def mean_fractional(theta):
        mu = hfy.ksubsets(theta, k, exactly_k=exactly_k)
        return float(((mu > 1e-9) & (mu < 1 - 1e-9)).sum(-1).double().mean())

    narrow = torch.from_numpy(random_scores((32, 64), 1.0, seed=6))
    wide = 0.2 * narrow
    fractional = mean_fractional(narrow)
    assert 2.0 < fractional < sq.MIXTURE_MAX_FRACTIONAL < mean_fractional(wide)
    small, large = 0.5 * sq.MIXTURE_MAX_BONUS / fractional, 2.0 * sq.MIXTURE_MAX_BONUS / fractional
    for theta, w, mixture in [(narrow, small, True), (narrow, -small, True), (narrow, large, False),
                              (narrow, -large, False), (wide, 1e-3, False), (wide, 0.0, True)]:
        A, feats, weights = sq._start(k, w, exactly_k)(theta)
        assert A.shape[:2] == feats.shape == weights.shape and A.shape[0] == theta.shape[0]
        assert (A.shape[1] > 0 and bool((weights > 0).any(-1).all())) == mixture, (w, mixture)
        out = hfy.sequential_ksubsets(theta, k, w, exactly_k=exactly_k).numpy()
        np.testing.assert_allclose(out, ref.sequential_ksubsets(theta.numpy(), k, w, exactly_k=exactly_k),
                                   rtol=0, atol=REFERENCE_ATOL)


@pytest.mark.parametrize("w,exactly_k", [(0.3, True), (-0.4, False), (2.0, True)])
def test_regulariser_conjugate_takes_one_solve_with_the_danskin_gradient(monkeypatch, w, exactly_k):
    """Ω*(θ) = Σ_s π_s (θᵀa_s + w b_s) − ½‖μ‖² comes from one warm-started active set (μ and the mixture π
    together), along a middle dim too; its gradient is μ; -inf masks as in the prediction, NaN raises."""
    from hfy._torch import sparsemap as sm

    calls = []
    solve = sm.active_set

    def counting(*args, **kwargs):
        calls.append(kwargs.get("start"))
        return solve(*args, **kwargs)

    monkeypatch.setattr(sm, "active_set", counting)
    reg = hfy.SequentialKSubsets(3, w, exactly_k=exactly_k)
    theta = random_scores((4, 10, 5), 1.0, seed=8)
    t = torch.from_numpy(theta).requires_grad_()
    value = reg.conjugate(t, dim=1)
    assert len(calls) == 1 and calls[0] is not None
    expected = ref.SequentialKSubsets(3, w, exactly_k=exactly_k).conjugate(theta, dim=1)
    np.testing.assert_allclose(value.detach().numpy(), expected, rtol=0, atol=REFERENCE_ATOL)
    value.sum().backward()
    np.testing.assert_allclose(t.grad.numpy(), ref.sequential_ksubsets(theta, 3, w, dim=1, exactly_k=exactly_k),
                               rtol=0, atol=REFERENCE_ATOL)
    masked = theta.copy()
    masked[0, 0, 0] = -math.inf  # a mask, in the conjugate too: as a score far below the others
    stand_in = theta.copy()
    stand_in[0, 0, 0] = -200.0
    np.testing.assert_allclose(reg.conjugate(torch.from_numpy(masked), dim=1).numpy(),
                               ref.SequentialKSubsets(3, w, exactly_k=exactly_k).conjugate(stand_in, dim=1), rtol=0,
                               atol=REFERENCE_ATOL)
    bad = torch.from_numpy(theta.copy())
    bad[0, 0, 0] = math.nan
    with pytest.raises(ValueError, match="`z`"):
        reg.conjugate(bad, dim=1)


@BATCHED_ONLY
def test_active_set_falls_back_to_map_structures_when_the_start_is_unusable():
    """A row whose start has no weight, or whose start structures are affinely dependent, starts cold."""
    from hfy._torch import sparsemap as sm
    from hfy._torch import sequential_ksubsets as sq

    theta = torch.from_numpy(random_scores((5, 9), 1.0, seed=3))

    def start(t):
        A, feats, weights = sq.ksubsets_start(t, 3)
        A, feats, weights = (torch.cat([v, v[:, :1]], 1) for v in (A, feats, weights))  # a repeated structure
        weights[0] = 0.0  # and a row without any weight
        return A, feats, weights

    mu = sm.active_set(theta, sq._oracle(3, 0.5, True), 0.5, start=start).mu
    np.testing.assert_allclose(mu.numpy(), ref.sequential_ksubsets(theta.numpy(), 3, 0.5), rtol=0, atol=REFERENCE_ATOL)


@BATCHED_ONLY
@pytest.mark.parametrize("rounds", [1, 2, 100])
def test_rows_finishing_at_different_iterations_with_partial_inner_loops(monkeypatch, rounds):
    """A batch whose rows need from one to many iterations, with at most ``rounds`` structures dropped per
    iteration (the rows still dropping skip the oracle), for both semantics and bonus signs."""
    from hfy._torch import sparsemap as sm

    monkeypatch.setattr(sm, "DROP_ROUNDS", rounds)
    theta = np.concatenate([random_scores((12, 30), 1.0, seed=1), 0.05 * random_scores((4, 30), 1.0, seed=2),
                            random_scores((4, 30), 5.0, seed=3)])
    for k, w, exactly_k in [(4, 0.01, True), (3, 0.5, False), (5, -0.3, True), (2, 2.0, True)]:
        out = hfy.sequential_ksubsets(torch.from_numpy(theta), k, w, exactly_k=exactly_k).numpy()
        np.testing.assert_allclose(out, ref.sequential_ksubsets(theta, k, w, exactly_k=exactly_k), rtol=0,
                                   atol=REFERENCE_ATOL)


def test_structures_are_only_kept_when_needed():
    from hfy._torch import sparsemap as sm
    from hfy._torch import sequential_ksubsets as sq

    theta = torch.from_numpy(random_scores((6, 12), 1.0, seed=4))
    full = sm.active_set(theta, sq._oracle(3, 0.5, True), 0.5, start=sq._start(3, 0.5, True))
    lean = sm.active_set(theta, sq._oracle(3, 0.5, True), 0.5, start=sq._start(3, 0.5, True), structures=False)
    assert torch.equal(full.mu, lean.mu) and torch.equal(full.tau, lean.tau)
    assert lean.structures.numel() == 0 and full.structures.shape[:2] == full.valid.shape
    np.testing.assert_allclose((full.weights.unsqueeze(-1) * full.structures).sum(1).numpy(), full.mu.numpy(),
                               rtol=0, atol=REFERENCE_ATOL)


@pytest.mark.parametrize("exactly_k", [True, False])
def test_fenchel_young_loss_counts_the_target_bonus(exactly_k):
    """L(θ; y) = Ω*(θ) + ½‖y‖² − w b(y) − ⟨θ, y⟩ for target structures: 0 where the prediction is y (it was
    w·b(y), negative for w < 0), >= 0 everywhere, gradient μ − y; targets outside the polytope raise."""
    rng = np.random.default_rng(11)
    k, n = 3, 7
    for w in (-0.7, 0.5, 3.0):
        reg = hfy.SequentialKSubsets(k, w, exactly_k=exactly_k)
        theta = torch.from_numpy(rng.normal(size=(40, n)) * 2.0).requires_grad_()
        idx = torch.from_numpy(np.argsort(rng.normal(size=(40, n)), axis=1)[:, :k].copy())
        y = torch.zeros(40, n, dtype=torch.float64).scatter_(1, idx, 1.0)
        loss = reg.loss(theta, y)
        assert (loss >= -PROPERTY_ATOL).all()
        loss.sum().backward()
        mu = reg.predict(theta.detach())
        np.testing.assert_allclose(theta.grad.numpy(), (mu - y).numpy(), rtol=0, atol=PROPERTY_ATOL)
        # at a prediction that is a structure the loss is 0: large scores on a planted structure
        planted = 50.0 * y - 25.0
        assert torch.equal(reg.predict(planted), y)
        np.testing.assert_allclose(reg.loss(planted, y).numpy(), 0.0, rtol=0, atol=1e-9)
        np.testing.assert_allclose(hfy.fenchel_young_loss(planted, y, reg, reduction="none").numpy(), 0.0, rtol=0,
                                   atol=1e-9)
        with pytest.raises(ValueError, match="`y`"):
            reg.loss(theta.detach(), 2.0 * y)  # outside the polytope


def random_mixtures(rng, n, k, exactly_k, count, concentration=0.3):
    """Marginals of random mixtures of structures (rows of the polytope), each with its structures and weights."""
    A, b = brute_force_structures(n, k, 0.0, exactly_k)
    weights = rng.dirichlet(np.full(A.shape[0], concentration), size=count)
    return weights @ A, A, b, weights


@pytest.mark.parametrize("exactly_k", [True, False])
@pytest.mark.parametrize("w", [-0.7, 0.5, 3.0])
def test_omega_with_a_bonus_closes_the_fenchel_young_equality(w, exactly_k):
    """Ω(μ) = ½‖μ‖² − V_w(μ), V_w(μ) the bonus of the best mixture with marginals μ: the Fenchel-Young
    equality Ω(μ̂) + Ω*(θ) = ⟨θ, μ̂⟩ holds at the prediction (with Ω = ½‖μ‖² it was off by w Σ π_s b_s), and the
    inequality, i.e. L(θ; μ) >= 0, at fractional targets, in the torch path and the reference."""
    rng = np.random.default_rng(5)
    k, n = 3, 8
    reg, rreg = hfy.SequentialKSubsets(k, w, exactly_k=exactly_k), ref.SequentialKSubsets(k, w, exactly_k=exactly_k)
    theta = torch.from_numpy(random_scores((12, n), 2.0, seed=6))
    mu = reg.predict(theta)
    gap = reg.omega(mu) + reg.conjugate(theta) - (theta * mu).sum(-1)
    np.testing.assert_allclose(gap.numpy(), 0.0, rtol=0, atol=PROPERTY_ATOL)
    gap_ref = rreg.omega(mu.numpy()) + rreg.conjugate(theta.numpy()) - (theta * mu).sum(-1).numpy()
    np.testing.assert_allclose(gap_ref, 0.0, rtol=0, atol=PROPERTY_ATOL)
    targets = torch.from_numpy(random_mixtures(rng, n, k, exactly_k, 12)[0])
    loss = reg.loss(theta, targets)
    assert (loss >= -PROPERTY_ATOL).all()
    np.testing.assert_allclose(loss.numpy(), rreg.loss(theta.numpy(), targets.numpy()), rtol=0, atol=REFERENCE_ATOL)
    np.testing.assert_allclose(reg.loss(theta, mu).numpy(), 0.0, rtol=0, atol=PROPERTY_ATOL)
    # the bonus of the mixture the solver found is the best one: V_w(μ̂) = w Σ π_s b_s of the active set
    for row in theta.numpy()[:4]:
        act = rreg.solve(row)
        np.testing.assert_allclose(0.5 * act.mu @ act.mu - rreg.omega(act.mu), w * act.weights @ act.features,
                                   rtol=0, atol=PROPERTY_ATOL)


@pytest.mark.parametrize("exactly_k", [True, False])
@pytest.mark.parametrize("w", [-0.4, 0.8])
def test_mixture_bonus_agrees_across_layers_and_with_structures(w, exactly_k):
    """V_w(μ): HiGHS on the Viterbi lattice (reference, and the torch path through it) against cvxpy over the
    listed structures (oracle) on random mixtures, masked entries included; at a structure, w·b(y)."""
    rng = np.random.default_rng(8)
    k, n = 3, 7
    mus, A, b, _ = random_mixtures(rng, n, k, exactly_k, 10)
    mus[:3, 0] = 0.0  # (rows that avoid position 0, like a masked entry: renormalised mixtures without it)
    keep = A[:, 0] == 0
    weights = rng.dirichlet(np.full(keep.sum(), 0.3), size=3)
    mus[:3] = weights @ A[keep]
    rreg, oreg = ref.SequentialKSubsets(k, w, exactly_k=exactly_k), oracle.SequentialKSubsets(k, w, exactly_k=exactly_k)
    reg = hfy.SequentialKSubsets(k, w, exactly_k=exactly_k)
    ours = rreg.omega(mus)
    np.testing.assert_allclose(ours, oreg.omega(mus), rtol=0, atol=ORACLE_ATOL)
    np.testing.assert_allclose(reg.omega(torch.from_numpy(mus)).numpy(), ours, rtol=0, atol=REFERENCE_ATOL)
    # V_w is concave: below its chords (and above w·min b, below w·max b)
    bonus = 0.5 * np.sum(mus * mus, -1) - ours
    assert np.all(bonus <= max(w * b.max(), w * b.min()) + PROPERTY_ATOL)
    assert np.all(bonus >= min(w * b.max(), w * b.min()) - PROPERTY_ATOL)
    half = 0.5 * (mus[3:6] + mus[6:9])
    bonus_half = 0.5 * np.sum(half * half, -1) - rreg.omega(half)
    assert np.all(bonus_half >= 0.5 * (bonus[3:6] + bonus[6:9]) - PROPERTY_ATOL)
    # at a structure the program returns w·b(y), the closed form the loss takes
    from hfy._structures import mixture_bonus

    for y, by in zip(A[::5], b[::5]):
        assert mixture_bonus(y, k, w, exactly_k)[0] == pytest.approx(w * by, abs=PROPERTY_ATOL)
        np.testing.assert_allclose(reg.omega(torch.from_numpy(y)).item(), 0.5 * y @ y - w * by, rtol=0, atol=0)


@pytest.mark.parametrize("exactly_k", [True, False])
@pytest.mark.parametrize("w", [-0.3, 0.5])
def test_omega_with_a_bonus_gradcheck(w, exactly_k):
    """The gradient of Ω(μ) in μ is μ minus the dual of the bonus program: gradcheck in float64 at interior points
    of the polytope, along directions that stay in it (Σ μ = k keeps its sum)."""
    rng = np.random.default_rng(3)
    k, n = 3, 7
    reg = hfy.SequentialKSubsets(k, w, exactly_k=exactly_k)
    basis = np.linalg.qr(np.eye(n) - 1.0 / n)[0][:, : n - 1] if exactly_k else np.eye(n)
    basis = torch.from_numpy(basis)
    for mu0 in random_mixtures(rng, n, k, exactly_k, 3, concentration=1.0)[0]:
        mu0 = torch.from_numpy(mu0)
        u = torch.zeros(basis.shape[1], dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda u: reg.omega(mu0 + basis @ u), (u,), **GRADCHECK)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_omega_with_a_bonus_in_lower_precisions(dtype):
    """Marginals computed in a lower precision miss the polytope by their rounding: Ω accepts them (moved onto
    it), returns the input dtype, and is close to Ω of the float64 marginals; the loss accepts them as targets."""
    k, w = 2, 0.5
    reg = hfy.SequentialKSubsets(k, w)
    theta = torch.from_numpy(random_scores((6, 7), 1.5, seed=9))
    mu = reg.predict(theta.to(dtype))
    value = reg.omega(mu)
    assert value.dtype == dtype
    np.testing.assert_allclose(value.double().numpy(), reg.omega(reg.predict(theta)).numpy(), rtol=0,
                               atol=8 * dtype_atol(dtype))
    assert torch.isfinite(reg.loss(theta.to(dtype), mu)).all()


def test_omega_with_a_bonus_refuses_points_outside_the_polytope():
    """Ω is +inf outside the polytope, where no mixture has the marginals: a clear error naming the argument,
    in all three layers, and in the general regulariser (column generation) too."""
    mu = np.full(6, 0.6)  # sums to 3.6, not 3
    for reg in (ref.SequentialKSubsets(3, 0.5), oracle.SequentialKSubsets(3, 0.5)):
        with pytest.raises(ValueError, match="`mu`"):
            reg.omega(mu)
    with pytest.raises(ValueError, match="`mu`"):
        hfy.SequentialKSubsets(3, 0.5).omega(torch.from_numpy(mu))
    with pytest.raises(ValueError, match="`y`"):
        hfy.SequentialKSubsets(3, 0.5).loss(torch.zeros(6, dtype=torch.float64), torch.from_numpy(mu))
    with pytest.raises(ValueError, match="`y`"):
        ref.SequentialKSubsets(3, 0.5).loss(np.zeros((2, 6)), np.stack([mu, mu]))
    from hfy._structures import mixture_bonus

    with pytest.raises(ValueError, match="`w`"):
        mixture_bonus(np.full(6, 0.5), 3, INF)

    def top_2(v):
        i = v.topk(2, dim=-1).indices
        return torch.zeros_like(v).scatter(-1, i, 1.0), torch.zeros(v.shape[0], dtype=v.dtype)

    with pytest.raises(ValueError, match="`mu`"):
        hfy.SparseMAP(top_2, w=0.5).omega(torch.from_numpy(mu / 0.6 * 0.4))  # (sums to 2.4, not 2)
    # top_2 gives every structure the feature 0, so the bonus of any mixture is 0 and Ω = ½‖μ‖²
    assert hfy.SparseMAP(top_2, w=0.5).omega(torch.full((6,), 1 / 3, dtype=torch.float64)).item() == pytest.approx(1 / 3)
    assert hfy.SparseMAP(top_2).omega(torch.full((6,), 1 / 3, dtype=torch.float64)).item() == pytest.approx(1 / 3)


@pytest.mark.parametrize("transition, exactly_k", [(0.5, True), (0.5, False), (INF, True), (-0.2, True)])
def test_reference_point_is_the_barycentre_of_the_structures(transition, exactly_k):
    """The energy's reference point is the average of all structures, in the relative interior of the polytope:
    (k/N)·1 for exactly k, the mean size over N for at most k, the average window for w = inf ((k/N)·1 lies
    outside the windows polytope).  All three layers, and KSubsets for the same structures."""
    k = 3
    for n in (3, 5, 9):
        A, _ = brute_force_structures(n, k, transition, exactly_k)
        mean = A.mean(0)
        for point in (ref.SequentialKSubsets(k, transition, exactly_k=exactly_k).reference_point(n),
                      oracle.SequentialKSubsets(k, transition, exactly_k=exactly_k).reference_point(n),
                      hfy.SequentialKSubsets(k, transition, exactly_k=exactly_k).reference_point(
                          n, torch.zeros(1, dtype=torch.float64)).numpy()):
            np.testing.assert_allclose(point, mean, rtol=0, atol=1e-14)
        if not math.isinf(transition):
            for point in (ref.KSubsets(k, exactly_k=exactly_k).reference_point(n),
                          oracle.KSubsets(k, exactly_k=exactly_k).reference_point(n),
                          hfy.KSubsets(k, exactly_k=exactly_k).reference_point(n, torch.zeros(1)).double().numpy()):
                np.testing.assert_allclose(point, mean, rtol=0, atol=1e-7)
    # large N: the closed forms (log-space counts for at most k) stay finite and in the interior
    for n in (200, 5000):
        point = hfy.SequentialKSubsets(k, transition, exactly_k=exactly_k).reference_point(
            n, torch.zeros(1, dtype=torch.float64))
        assert torch.isfinite(point).all() and (point > 0).all() and (point < 1).all()
        assert point.sum().item() <= k + 1e-9


@pytest.mark.parametrize("transition", [-0.5, 0.8])
def test_energy_constant_is_a_difference_of_fenchel_young_losses_with_a_bonus(transition):
    """With a bonus the 'fy' constant subtracts Ω(ȳ) = ½‖ȳ‖² − V_w(ȳ), so E(q) = L_Ψ(Xᵀȳ; q) − β⁻¹ L_Ω(βXq; ȳ)
    with both losses >= 0: three layers agree, and the Ω loss at ȳ is never negative (with Ω = ½‖μ‖² it was
    for w < 0)."""
    k, n, d, beta = 2, 6, 4, 1.5
    X = torch.from_numpy(random_scores((n, d), 1.0, seed=21))
    q = torch.from_numpy(random_scores((10, d), 3.0, seed=22))
    reg = hfy.SequentialKSubsets(k, transition)
    energy = hfy.energy(q, X, beta, reg)
    np.testing.assert_allclose(energy.numpy(), ref.energy(q.numpy(), X.numpy(), beta, ref.SequentialKSubsets(k, transition)),
                               rtol=0, atol=REFERENCE_ATOL)
    np.testing.assert_allclose(energy.numpy(),
                               oracle.energy(q.numpy(), X.numpy(), beta, oracle.SequentialKSubsets(k, transition)),
                               rtol=0, atol=ORACLE_ATOL)
    ybar = reg.reference_point(n, q)
    theta = beta * q @ X.T
    omega_loss = reg.loss(theta, ybar.expand_as(theta))
    assert (omega_loss >= -PROPERTY_ATOL).all()
    psi_loss = 0.5 * (q - ybar @ X).square().sum(-1)
    np.testing.assert_allclose(energy.numpy(), (psi_loss - omega_loss / beta).numpy(), rtol=0, atol=PROPERTY_ATOL)


def test_ksubsets_loss_refuses_targets_outside_the_polytope():
    """A class index is a one-hot target, outside the k-subsets polytope for k > 1 (the loss was −0.25)."""
    theta = torch.randn(4, 6, dtype=torch.float64)
    with pytest.raises(ValueError, match="`y`"):
        hfy.fenchel_young_loss(theta, torch.tensor([0, 1, 2, 3]), hfy.KSubsets(2))
    assert torch.isfinite(hfy.fenchel_young_loss(theta, torch.tensor([0, 1, 2, 3]), hfy.KSubsets(1)))
    y = hfy.ksubsets(torch.randn(4, 6, dtype=torch.float64), 2)
    assert (hfy.KSubsets(2).loss(theta, y) >= -PROPERTY_ATOL).all()


@pytest.mark.parametrize("bad", [None, "a", torch.tensor([0.5]), torch.tensor(1)])
def test_transition_must_be_a_float_or_a_0_dim_tensor(bad):
    """(a shape-(1,) tensor passed the forward and failed in the backward; None and strings raised raw errors)"""
    with pytest.raises(ValueError, match="`transition`"):
        hfy.sequential_ksubsets(torch.randn(2, 6, dtype=torch.float64), 2, bad)


def test_huge_finite_transition_raises():
    """(w >= 1e17 crashed in the Viterbi backtracking on NaN scores)"""
    with pytest.raises(ValueError, match="`transition`"):
        hfy.sequential_ksubsets(torch.randn(2, 6, dtype=torch.float64), 2, 1e17)


def test_general_solver_on_an_empty_batch():
    """(it ran to the iteration cap and raised)"""
    def top_2(v):
        i = v.topk(2, dim=-1).indices
        return torch.zeros_like(v).scatter(-1, i, 1.0), torch.zeros(v.shape[0], dtype=v.dtype)

    empty = torch.zeros(0, 5, dtype=torch.float64)
    assert hfy.SparseMAP(top_2).predict(empty).shape == (0, 5)
    assert hfy.SparseMAP(top_2, w=0.5).conjugate(empty).shape == (0,)


@pytest.mark.parametrize("exactly_k", [True, False])
def test_derivative_in_the_bonus_at_zero_is_the_right_derivative(exactly_k):
    """At w = 0 every mixture with the k-subsets mean is optimal, and the active-set derivative in w depended
    on the mixture the solver held (8 of 215 random cases matched neither one-sided derivative).  A learnable
    bonus starting at 0 now gets the derivative of w -> 0+; the marginals and their θ-gradient stay those of
    the k-subsets projection."""
    rng = np.random.default_rng(17)
    h = 1e-6
    for _ in range(60):
        n = int(rng.integers(4, 9))
        k = int(rng.integers(1, n))
        z = torch.from_numpy(rng.normal(size=(1, n))).requires_grad_()
        w = torch.tensor(0.0, dtype=torch.float64, requires_grad=True)
        mu = hfy.sequential_ksubsets(z, k, w, exactly_k=exactly_k)
        np.testing.assert_allclose(mu.detach().numpy(), hfy.ksubsets(z.detach(), k, exactly_k=exactly_k).numpy(),
                                   rtol=0, atol=REFERENCE_ATOL)
        dw = torch.autograd.grad(mu[0], w, torch.eye(n, dtype=torch.float64), is_grads_batched=True,
                                 retain_graph=True)[0]
        right = (hfy.sequential_ksubsets(z.detach(), k, h, exactly_k=exactly_k) - mu.detach())[0] / h
        np.testing.assert_allclose(dw.numpy(), right.numpy(), rtol=0, atol=1e-4)
        g = torch.from_numpy(rng.normal(size=(1, n)))
        gz = torch.autograd.grad((mu * g).sum(), z)[0]
        z2 = z.detach().clone().requires_grad_()
        gk = torch.autograd.grad((hfy.ksubsets(z2, k, exactly_k=exactly_k) * g).sum(), z2)[0]
        np.testing.assert_allclose(gz.numpy(), gk.numpy(), rtol=0, atol=REFERENCE_ATOL)
