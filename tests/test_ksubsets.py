"""k-subsets SparseMAP: the capped-simplex projection, its triangle, Jacobian, masks, margin and drop-in."""

from __future__ import annotations

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
from hfy.reference._core import bisect_decreasing, capped_threshold
from hfy.testing import (
    FD_ATOL,
    GRADCHECK,
    ORACLE_ATOL,
    PROPERTY_ATOL,
    REFERENCE_ATOL,
    adversarial_scores,
    dtype_atol,
    finite_difference_jacobian,
    random_scores,
)

LOW_PRECISION = [torch.float32, torch.float16, torch.bfloat16]
NINF = -math.inf

cuda = pytest.mark.cuda
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

#: shapes, dims and k for reference vs torch; rows of N = 64 go to the sorted breakpoints (on their 16
#: largest scores, and whole for k = 40), rows of N = 200 to the Newton passes.
LAYOUTS = [
    pytest.param(shape, dim, k, scale, id=f"{shape}-dim{dim}-k{k}-scale{scale}")
    for shape, dim, k, scale in [
        ((64,), -1, 1, 1.0),
        ((64,), 0, 3, 10.0),
        ((5, 64), -1, 2, 0.1),
        ((5, 64), 0, 2, 3.0),
        ((5, 64), 1, 40, 1.0),
        ((3, 4, 17), 0, 2, 1.0),
        ((3, 4, 17), 1, 3, 10.0),
        ((3, 4, 17), -1, 5, 0.3),
        ((2, 3, 4, 5), 2, 2, 1.0),
        ((4, 200), -1, 7, 30.0),
    ]
]


def finite_scores(min_n=1, max_n=10, bound=10.0):
    return st.integers(min_n, max_n).flatmap(
        lambda n: hnp.arrays(np.float64, n, elements=st.floats(-bound, bound, allow_subnormal=False))
    )


def oracle_cases():
    """(name, z, k, exactly_k): random and adversarial problems small enough for the QP oracle."""
    cases = []
    sizes = [(2, 1, 1.0), (5, 2, 3.0), (8, 3, 1.0), (6, 2, 0.3), (7, 4, 2.0), (8, 1, 0.5)]
    for seed, (n, k, scale) in enumerate(sizes):
        z = random_scores((n,), scale, seed)
        for tag, ex in (("exactly", True), ("at-most", False)):
            cases.append((f"random N={n} k={k} scale {scale} {tag}", z, k, ex))
    masked = random_scores((7,), 1.0, 42)
    masked[[1, 4]] = NINF
    cases += [("two masked k=3 exactly", masked, 3, True), ("two masked k=3 at-most", masked, 3, False)]
    cases.append(("slack budget at-most", np.array([0.3, -0.2, 0.9, 0.1, 1.7]), 3, False))
    for name, z in adversarial_scores():
        if name == "huge scale":
            continue  # |θ| = 1e30 is outside the range of a conic solver; see the adversarial tests below
        n_finite = int(np.isfinite(z).sum())
        cases += [(f"{name} k={k}", z, k, True) for k in sorted({1, min(2, n_finite)})]
    return cases


def _sort_batches_up_to(monkeypatch, size):
    """Batches of at most ``size`` scores take the sorted breakpoints, larger ones the Newton passes."""
    from hfy._torch import _core

    monkeypatch.setattr(_core, "UNIT_SORT_SIZE", size)


@pytest.fixture
def newton_passes(monkeypatch):
    """Every batch takes the Newton passes, however few its scores (see ``UNIT_SORT_SIZE``)."""
    _sort_batches_up_to(monkeypatch, 0)


@pytest.fixture(params=["sorted", "newton"])
def threshold_path(request, monkeypatch):
    """The test runs twice: every batch sorted outright, and every batch through the Newton passes,
    whatever its size; short rows are then their own group maxima."""
    _sort_batches_up_to(monkeypatch, 10**18 if request.param == "sorted" else 0)
    return request.param


# --- the triangle ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,z,k,exactly_k", oracle_cases(), ids=[c[0] for c in oracle_cases()])
def test_oracle_agrees_with_reference(name, z, k, exactly_k):
    np.testing.assert_allclose(oracle.ksubsets(z, k, exactly_k=exactly_k), ref.ksubsets(z, k, exactly_k=exactly_k),
                               rtol=0, atol=ORACLE_ATOL)


@pytest.mark.usefixtures("threshold_path")
@pytest.mark.parametrize("exactly_k", [True, False], ids=["exactly", "at-most"])
@pytest.mark.parametrize("shape,dim,k,scale", LAYOUTS)
def test_reference_agrees_with_torch_float64(shape, dim, k, scale, exactly_k):
    z = random_scores(shape, scale, seed=len(shape) * 10 + dim + k)
    out = hfy.ksubsets(torch.from_numpy(z), k, dim, exactly_k=exactly_k)
    np.testing.assert_allclose(out.numpy(), ref.ksubsets(z, k, dim, exactly_k=exactly_k), rtol=0, atol=REFERENCE_ATOL)


@pytest.mark.usefixtures("threshold_path")
@pytest.mark.parametrize("exactly_k", [True, False], ids=["exactly", "at-most"])
def test_reference_agrees_with_torch_with_masks(exactly_k):
    z = random_scores((40, 50), 2.0, seed=3)
    rng = np.random.default_rng(3)
    z[rng.random(z.shape) < 0.4] = NINF
    z[:, :4] = random_scores((40, 4), 2.0, seed=4)  # at least 4 unmasked per row
    out = hfy.ksubsets(torch.from_numpy(z), 4, exactly_k=exactly_k).numpy()
    np.testing.assert_allclose(out, ref.ksubsets(z, 4, exactly_k=exactly_k), rtol=0, atol=REFERENCE_ATOL)
    assert (out[np.isinf(z)] == 0.0).all()


@pytest.mark.usefixtures("threshold_path")
def test_per_row_k_agrees_with_reference_row_by_row():
    z = random_scores((6, 3, 11), 2.0, seed=5)
    k = torch.tensor([1, 2, 3, 5, 10, 11]).reshape(6, 1, 1)
    out = hfy.ksubsets(torch.from_numpy(z), k, dim=-1).numpy()
    for r in range(6):
        np.testing.assert_allclose(out[r], ref.ksubsets(z[r], int(k[r]), -1), rtol=0, atol=REFERENCE_ATOL)
    k_dim1 = torch.tensor([2, 1, 4]).reshape(1, 3, 1)
    out = hfy.ksubsets(torch.from_numpy(z), k_dim1, dim=-1).numpy()
    for c in range(3):
        np.testing.assert_allclose(out[:, c], ref.ksubsets(z[:, c], int(k_dim1[0, c]), -1), rtol=0, atol=REFERENCE_ATOL)


@pytest.mark.usefixtures("threshold_path")
@pytest.mark.parametrize("dtype", LOW_PRECISION, ids=str)
@pytest.mark.parametrize("scale", [1.0, 3.0, 10.0])
@pytest.mark.parametrize("k", [1, 3])
def test_low_precision_agrees_with_float64(dtype, scale, k):
    """Compared on the same (rounded) scores: only the arithmetic differs."""
    z = torch.from_numpy(random_scores((8, 48), scale, seed=11)).to(dtype)
    out = hfy.ksubsets(z, k)
    assert out.dtype == dtype
    assert (out.double() - hfy.ksubsets(z.double(), k)).abs().max().item() <= dtype_atol(dtype)


@pytest.mark.parametrize("seed", range(6))
def test_breakpoints_agree_with_bisection(seed):
    """Two exact algorithms: the sorted breakpoints and bisection of g(τ) = Σ clip(θ − τ, 0, 1) − k.

    τ is not unique when g crosses k on a flat piece (an integral output), so the two are compared
    through the projections they give."""
    theta = random_scores((9,), [0.3, 1.0, 3.0][seed % 3], seed)
    for k in (1, 2, 4, 8):
        tau = capped_threshold(theta, np.ones_like(theta), float(k))
        g = lambda t: np.clip(theta - t, 0.0, 1.0).sum() - k  # noqa: E731
        tau_bisect = bisect_decreasing(g, theta.min() - 1.0, theta.max())
        assert np.abs(np.clip(theta - tau, 0, 1) - np.clip(theta - tau_bisect, 0, 1)).max() <= PROPERTY_ATOL
        assert abs(g(tau)) <= PROPERTY_ATOL


# --- properties ----------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(finite_scores(min_n=1, max_n=10), st.integers(1, 10), st.booleans())
def test_output_in_the_polytope(theta, k, exactly_k):
    k = min(k, theta.size)
    mu = hfy.ksubsets(torch.from_numpy(theta), k, exactly_k=exactly_k).numpy()
    assert (mu >= 0).all() and (mu <= 1).all()
    if exactly_k:
        assert abs(mu.sum() - k) <= PROPERTY_ATOL
    else:
        assert mu.sum() <= k + PROPERTY_ATOL
    np.testing.assert_allclose(mu, ref.ksubsets(theta, k, exactly_k=exactly_k), rtol=0, atol=REFERENCE_ATOL)


@settings(max_examples=40, deadline=None)
@given(finite_scores(min_n=2, max_n=9), st.integers(1, 8), st.integers(0, 64))
def test_integral_iff_k_gap_at_least_one(theta, k, extra):
    """Scores on a 1/64 grid keep differences exact; the top k lead the rest by gap = 1 + extra/64."""
    k = min(k, theta.size - 1)
    theta = np.round(theta * 64) / 64
    order = np.argsort(-theta, kind="stable")
    top, rest = order[:k], order[k:]
    theta[top] += theta[rest].max() + 1.0 + extra / 64 - theta[top].min()
    indicator = np.zeros(theta.size)
    indicator[top] = 1.0
    for layer in (ref.ksubsets(theta, k), hfy.ksubsets(torch.from_numpy(theta), k).numpy(),
                  hfy.ksubsets(torch.from_numpy(theta).float(), k).double().numpy()):
        assert (layer == indicator).all()
    # a gap just below 1 gives a fractional output
    theta[top] += theta[rest].max() + 1.0 - 1e-6 - theta[top].min()
    for layer in (ref.ksubsets(theta, k), hfy.ksubsets(torch.from_numpy(theta), k).numpy()):
        assert ((layer > 0) & (layer < 1)).any()


@pytest.mark.parametrize("k", [1, 2, 3])
def test_top_k_indicator_is_exact_bit_for_bit_when_the_gap_is_at_least_one(k):
    """The structured margin promises the 0/1 indicator itself (HFY retrieval compares states exactly),
    on arbitrary float64 scores, not only on a grid where every difference is exact."""
    theta = random_scores((4000, 8), 2.0, seed=k)
    srt = -np.sort(-theta, axis=1)
    rows = srt[:, k - 1] - srt[:, k] >= 1
    indicator = (theta >= srt[:, [k - 1]]).astype(float)[rows]
    for name, mu in (("reference", ref.ksubsets(theta[rows], k)),
                     ("torch", hfy.ksubsets(torch.from_numpy(theta[rows]), k).numpy())):
        inexact = int((~np.all(mu == indicator, axis=1)).sum())
        assert inexact == 0, f"{name}: {inexact} of {int(rows.sum())} rows are not exactly 0/1"


@pytest.mark.parametrize("gap,integral", [(0.999, False), (1.0, True), (1.001, True)])
def test_structured_margin_boundary(gap, integral):
    theta = np.array([0.5 + gap, 0.25 + gap, 0.25, 0.0, -0.5])  # k-gap θ(2) − θ(3) = gap
    for mu in (ref.ksubsets(theta, 2), hfy.ksubsets(torch.from_numpy(theta), 2).numpy()):
        assert bool((mu == np.array([1.0, 1.0, 0.0, 0.0, 0.0])).all()) == integral
        assert abs(mu.sum() - 2) <= PROPERTY_ATOL


@settings(max_examples=30, deadline=None)
@given(finite_scores(min_n=2, max_n=10), st.integers(1, 9), st.integers(0, 2**31 - 1))
def test_permutation_equivariance(theta, k, seed):
    k = min(k, theta.size)
    perm = np.random.default_rng(seed).permutation(theta.size)
    mu = hfy.ksubsets(torch.from_numpy(theta), k).numpy()
    mu_perm = hfy.ksubsets(torch.from_numpy(theta[perm]), k).numpy()
    np.testing.assert_allclose(mu_perm, mu[perm], rtol=0, atol=PROPERTY_ATOL)


@settings(max_examples=30, deadline=None)
@given(finite_scores(min_n=1, max_n=10))
def test_k_one_is_sparsemax_and_k_n_is_all_ones(theta):
    z = torch.from_numpy(theta)
    np.testing.assert_allclose(hfy.ksubsets(z, 1).numpy(), hfy.sparsemax(z).numpy(), rtol=0, atol=PROPERTY_ATOL)
    np.testing.assert_allclose(ref.ksubsets(theta, 1), ref.sparsemax(theta), rtol=0, atol=PROPERTY_ATOL)
    assert (hfy.ksubsets(z, theta.size).numpy() == 1.0).all()
    assert (ref.ksubsets(theta, theta.size) == 1.0).all()


@pytest.mark.parametrize("offset", [1e4, -1e4])
def test_shift_invariance_for_exactly_k(offset):
    theta = random_scores((6, 9), 2.0, seed=2)
    z = torch.from_numpy(theta)
    np.testing.assert_allclose(hfy.ksubsets(z + offset, 3).numpy(), hfy.ksubsets(z, 3).numpy(), rtol=0,
                               atol=PROPERTY_ATOL)


def test_zero_scores_give_the_barycentre():
    for n, k in [(5, 2), (9, 4), (3, 3)]:
        np.testing.assert_allclose(hfy.ksubsets(torch.zeros(n, dtype=torch.float64), k).numpy(), np.full(n, k / n),
                                   rtol=0, atol=PROPERTY_ATOL)
        np.testing.assert_allclose(ref.KSubsets(k).reference_point(n), np.full(n, k / n), rtol=0, atol=PROPERTY_ATOL)


def test_at_most_k_regimes():
    """Σ clip(θ, 0, 1) <= k: clip(θ, 0, 1) (the budget is slack); otherwise the exactly-k solution."""
    slack = np.array([0.3, -0.2, 0.9, 0.1, 1.7])  # clip sums to 2.3 <= 3
    np.testing.assert_allclose(hfy.ksubsets(torch.from_numpy(slack), 3, exactly_k=False).numpy(),
                               np.clip(slack, 0, 1), rtol=0, atol=PROPERTY_ATOL)
    tight = np.array([0.9, 0.8, 0.95, 0.7, 1.7])
    np.testing.assert_allclose(hfy.ksubsets(torch.from_numpy(tight), 3, exactly_k=False).numpy(),
                               ref.ksubsets(tight, 3), rtol=0, atol=PROPERTY_ATOL)
    negative = -np.abs(random_scores((7,), 1.0, 1))
    assert (hfy.ksubsets(torch.from_numpy(negative), 2, exactly_k=False).numpy() == 0.0).all()


# --- derivatives ---------------------------------------------------------------------------------------


@pytest.mark.usefixtures("threshold_path")
@pytest.mark.parametrize("exactly_k", [True, False], ids=["exactly", "at-most"])
@pytest.mark.parametrize("scale", [0.3, 3.0])
def test_gradcheck(exactly_k, scale):
    z = torch.from_numpy(random_scores((5, 8), scale, seed=5)).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: hfy.ksubsets(x, 2, exactly_k=exactly_k), (z,), **GRADCHECK)


def test_gradcheck_at_most_k_with_slack_budget_rows():
    """Rows whose budget is slack (Jacobian diag(1_A)) next to rows where it binds."""
    z = torch.from_numpy(np.stack([0.2 * random_scores((8,), 1.0, 1) + 0.3, 3.0 * random_scores((8,), 1.0, 2)]))
    assert np.clip(z[0].numpy(), 0, 1).sum() <= 3 < np.clip(z[1].numpy(), 0, 1).sum()
    assert torch.autograd.gradcheck(lambda x: hfy.ksubsets(x, 3, exactly_k=False), (z.requires_grad_(),), **GRADCHECK)


def test_gradcheck_per_row_k_and_dims():
    z = torch.from_numpy(random_scores((4, 7), 1.5, seed=6)).requires_grad_()
    k = torch.tensor([[1], [2], [3], [6]])
    assert torch.autograd.gradcheck(lambda x: hfy.ksubsets(x, k), (z,), **GRADCHECK)
    z3 = torch.from_numpy(random_scores((5, 2, 3), 1.5, seed=8)).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: hfy.ksubsets(x, 2, dim=0), (z3,), **GRADCHECK)
    assert torch.autograd.gradcheck(lambda x: hfy.ksubsets(x, 2, dim=1), (z3,), **GRADCHECK)


@pytest.mark.parametrize("exactly_k", [True, False], ids=["exactly", "at-most"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reference_jacobian_matches_finite_differences(seed, exactly_k):
    theta = random_scores((8,), [0.3, 1.0, 3.0][seed], seed)
    jac = ref.ksubsets_jacobian(theta, 3, exactly_k)
    fd = finite_difference_jacobian(lambda t: ref.ksubsets(t, 3, exactly_k=exactly_k), theta)
    np.testing.assert_allclose(jac, fd, rtol=0, atol=FD_ATOL)
    auto = torch.autograd.functional.jacobian(lambda t: hfy.ksubsets(t, 3, exactly_k=exactly_k),
                                              torch.from_numpy(theta))
    np.testing.assert_allclose(auto.numpy(), jac, rtol=0, atol=REFERENCE_ATOL)


def test_jacobian_vanishes_on_integral_outputs():
    theta = np.array([3.0, 2.5, 0.1, -0.4, 0.0])
    assert (ref.ksubsets(theta, 2) == np.array([1, 1, 0, 0, 0])).all()
    assert (ref.ksubsets_jacobian(theta, 2) == 0).all()
    z = torch.from_numpy(theta).requires_grad_()
    hfy.ksubsets(z, 2).sum().backward()
    assert (z.grad == 0).all()


def test_masked_entries_get_zero_gradient_and_no_nan():
    z = torch.tensor([[1.0, NINF, 0.5, 0.2, 0.9], [NINF, 0.3, NINF, 0.7, 0.1]], dtype=torch.float64,
                     requires_grad=True)
    mu = hfy.ksubsets(z, 2)
    (mu * torch.arange(5.0, dtype=torch.float64)).sum().backward()
    assert not torch.isnan(z.grad).any()
    assert (z.grad[torch.isinf(z.detach())] == 0).all()


# --- the regulariser ------------------------------------------------------------------------------------


def test_regulariser_danskin_and_loss():
    theta = torch.from_numpy(random_scores((4, 9), 2.0, seed=9)).requires_grad_()
    reg = hfy.KSubsets(3)
    reg.conjugate(theta).sum().backward()
    mu = reg.predict(theta.detach())
    np.testing.assert_allclose(theta.grad.numpy(), mu.numpy(), rtol=0, atol=PROPERTY_ATOL)
    np.testing.assert_allclose(reg.conjugate(theta.detach()).numpy(), ref.KSubsets(3).conjugate(theta.detach().numpy()),
                               rtol=0, atol=REFERENCE_ATOL)
    loss = reg.loss(theta.detach(), mu)
    assert (loss.abs() <= PROPERTY_ATOL).all()
    other = hfy.ksubsets(torch.from_numpy(random_scores((4, 9), 2.0, seed=10)), 3)
    assert (reg.loss(theta.detach(), other) >= -PROPERTY_ATOL).all()


# --- adversarial inputs --------------------------------------------------------------------------------


@pytest.mark.usefixtures("threshold_path")
@pytest.mark.parametrize("dtype", [torch.float64, *LOW_PRECISION], ids=str)
@pytest.mark.parametrize("name,z", [c for c in adversarial_scores() if c[0] != "huge scale"],
                         ids=[c[0] for c in adversarial_scores() if c[0] != "huge scale"])
def test_adversarial_inputs(name, z, dtype):
    """Every dtype agrees with the float64 reference on the same rounded scores; never NaN."""
    x = torch.from_numpy(z).to(dtype)
    n_finite = int(torch.isfinite(x).sum())
    for k in range(1, n_finite + 1):
        out = hfy.ksubsets(x, k)
        assert out.dtype == dtype and not torch.isnan(out).any()
        expected = ref.ksubsets(x.double().numpy(), k)
        assert np.abs(out.double().numpy() - expected).max() <= dtype_atol(dtype)
        assert (out[torch.isinf(x)] == 0).all()


#: ±1e30 is representable in float64, float32 and bfloat16 (max ≈ 3.4e38); in float16 (max 65504)
#: it rounds to ±inf: +inf is invalid input and −inf is a mask.
HUGE = [
    pytest.param(np.array([1e30, -1e30, 0.0, 5.0]), id="+-1e30"),
    pytest.param(np.array([-1e30, 0.0, 5.0, 0.3]), id="-1e30 and a capped entry"),
    pytest.param(np.array([1e20, 0.0, 5.0, 0.3, -2.0]), id="+1e20"),
]


@pytest.mark.usefixtures("threshold_path")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("z", HUGE)
def test_huge_scores_where_representable(z, dtype):
    x = torch.from_numpy(z).to(dtype)
    for k in (1, 2, 3):
        expected = ref.ksubsets(x.double().numpy(), k)
        out = hfy.ksubsets(x, k).double().numpy()
        assert abs(out.sum() - k) <= dtype_atol(dtype), f"k={k}: Σμ = {out.sum()}"
        assert np.abs(out - expected).max() <= dtype_atol(dtype)


def test_huge_scores_in_float16_overflow_to_infinities():
    x = torch.tensor([1e30, -1e30, 0.0, 5.0]).half()
    assert torch.isposinf(x[0]) and torch.isneginf(x[1])
    with pytest.raises(ValueError, match=r"\+inf"):
        hfy.ksubsets(x, 2)
    out = hfy.ksubsets(torch.tensor([-1e30, 0.0, 5.0, 0.3]).half(), 2)  # −inf: a masked entry
    np.testing.assert_allclose(out.double().numpy(), ref.ksubsets(np.array([NINF, 0.0, 5.0, 0.3]), 2), rtol=0,
                               atol=dtype_atol(torch.float16))


@pytest.mark.usefixtures("threshold_path")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_large_finite_padding_value(dtype):
    """Padding with a large finite negative score (masked_fill(-1e9), common in float32 code) acts like a mask."""
    pad = -1e9 if dtype == torch.float32 else -1e17
    z = torch.tensor([[pad, 0.0, 5.0, 0.3], [pad, 0.0, 0.5, 0.3]], dtype=dtype)
    expected = ref.ksubsets(np.array([[NINF, 0.0, 5.0, 0.3], [NINF, 0.0, 0.5, 0.3]]), 2)
    np.testing.assert_allclose(hfy.ksubsets(z, 2).double().numpy(), expected, rtol=0, atol=dtype_atol(dtype))


@pytest.mark.usefixtures("threshold_path")
def test_ties_are_shared_equally():
    z = torch.tensor([2.0, 2.0, 2.0, 1.0, -1.0], dtype=torch.float64)
    np.testing.assert_allclose(hfy.ksubsets(z, 2).numpy(), [2 / 3, 2 / 3, 2 / 3, 0, 0], rtol=0, atol=PROPERTY_ATOL)
    np.testing.assert_allclose(ref.ksubsets(z.numpy(), 2), [2 / 3, 2 / 3, 2 / 3, 0, 0], rtol=0, atol=PROPERTY_ATOL)


def test_fewer_than_k_unmasked_raises_naming_k():
    z = torch.tensor([[1.0, NINF, NINF, 0.2], [0.1, 0.2, 0.3, 0.4]])
    with pytest.raises(ValueError, match="`k`"):
        hfy.ksubsets(z, 3)
    with pytest.raises(ValueError, match="`k`"):
        ref.ksubsets(z.numpy(), 3)
    with pytest.raises(ValueError, match="`k`"):
        hfy.budget_bisect(z, 3)


@pytest.mark.usefixtures("threshold_path")
def test_at_most_k_with_fewer_unmasked_scores_is_feasible():
    """Σ μ <= k with fewer than k unmasked scores (or none): the projection is clip(θ, 0, 1) on them."""
    z = torch.tensor([[1.5, NINF, NINF, 0.2], [0.1, 0.2, 0.3, 0.4], [NINF] * 4], dtype=torch.float64)
    want = np.array([[1.0, 0, 0, 0.2], hfy.ksubsets(z[1], 3, exactly_k=False).numpy(), [0.0] * 4])
    np.testing.assert_allclose(hfy.ksubsets(z, 3, exactly_k=False).numpy(), want, rtol=0, atol=PROPERTY_ATOL)
    np.testing.assert_allclose(ref.ksubsets(z.numpy(), 3, exactly_k=False), want, rtol=0, atol=PROPERTY_ATOL)
    np.testing.assert_allclose(hfy.ksubsets(z[:1], 7, exactly_k=False).numpy(), want[:1], rtol=0, atol=PROPERTY_ATOL)


def test_all_masked_raises_naming_k():
    z = torch.full((2, 5), NINF)
    with pytest.raises(ValueError, match="`k`"):
        hfy.ksubsets(z, 1)
    with pytest.raises(ValueError, match="`k`"):
        ref.ksubsets(z.numpy(), 1)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_nan_and_plus_inf_raise(bad):
    with pytest.raises(ValueError, match="`z`"):
        hfy.ksubsets(torch.tensor([0.1, bad, 0.3]), 1)


@pytest.mark.parametrize("k", [0, -1, 2.5, True, "2"])
def test_invalid_k_raises(k):
    with pytest.raises(ValueError, match="`k`"):
        hfy.ksubsets(torch.randn(5), k)
    with pytest.raises(ValueError, match="`k`"):
        hfy.KSubsets(k)


def test_invalid_per_row_k_raises():
    z = torch.randn(3, 5)
    with pytest.raises(ValueError, match="`k`"):
        hfy.ksubsets(z, torch.tensor([[1, 2, 3, 1, 2]] * 3))  # not size 1 along dim
    with pytest.raises(ValueError, match="`k`"):
        hfy.ksubsets(z, torch.tensor([[1.5], [1.0], [2.0]]))
    with pytest.raises(ValueError, match="`k`"):
        hfy.ksubsets(z, torch.tensor([[0], [1], [2]]))


# --- the entmax package's budget_bisect -----------------------------------------------------------------


@pytest.mark.parametrize("shape,dim", [((20, 30), -1), ((20, 30), 0), ((3, 8, 6), 1)])
@pytest.mark.parametrize("budget", [1, 2, 5])
def test_budget_bisect_agrees_with_entmax_package(shape, dim, budget):
    """On finite inputs the package's 50-step bisection matches the exact projection to its accuracy."""
    entmax_pkg = pytest.importorskip("entmax")
    x = torch.from_numpy(random_scores(shape, 3.0, seed=budget))
    ours, theirs = hfy.budget_bisect(x, budget, dim), entmax_pkg.budget_bisect(x, budget, dim)
    assert (ours - theirs).abs().max().item() <= PROPERTY_ATOL
    x32 = x.float()
    ours32, theirs32 = hfy.budget_bisect(x32, budget, dim), entmax_pkg.budget_bisect(x32, budget, dim)
    assert (ours32 - theirs32).abs().max().item() <= dtype_atol(torch.float32)


def test_budget_bisect_per_row_budget_agrees_with_entmax_package():
    entmax_pkg = pytest.importorskip("entmax")
    x = torch.from_numpy(random_scores((4, 12), 2.0, seed=1))
    budget = torch.tensor([[1], [2], [3], [4]])
    assert (hfy.budget_bisect(x, budget) - entmax_pkg.budget_bisect(x, budget)).abs().max().item() <= PROPERTY_ATOL


def test_budget_bisect_masks_nan_free_where_the_package_gives_nan():
    entmax_pkg = pytest.importorskip("entmax")
    x = torch.tensor([[1.0, NINF, 0.5, 0.2, 0.1], [0.3, 0.1, NINF, NINF, 0.9]], dtype=torch.float64)
    assert torch.isnan(entmax_pkg.budget_bisect(x, 2)).any()
    ours = hfy.budget_bisect(x, 2)
    assert not torch.isnan(ours).any() and (ours[torch.isinf(x)] == 0).all()
    np.testing.assert_allclose(ours.numpy(), ref.ksubsets(x.numpy(), 2), rtol=0, atol=REFERENCE_ATOL)


@pytest.mark.parametrize("n_iter", [0, -3, 2.5, True])
def test_budget_bisect_rejects_invalid_n_iter(n_iter):
    with pytest.raises(ValueError, match="`n_iter`"):
        hfy.budget_bisect(torch.randn(2, 5), 2, n_iter=n_iter)


def test_budget_bisect_n_iter_does_not_change_the_exact_result():
    x = torch.from_numpy(random_scores((3, 9), 2.0, seed=4))
    assert torch.equal(hfy.budget_bisect(x, 2, n_iter=5), hfy.budget_bisect(x, 2))


# --- CUDA ------------------------------------------------------------------------------------------------


@cuda
@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("n", [100, 300], ids=["sorted", "newton"])
def test_cuda_matches_cpu(dtype, n):
    """N = 100 takes the sorted breakpoints, N = 300 the Newton passes (with group maxima and jumps)."""
    z = torch.from_numpy(np.concatenate([random_scores((48, n), 3.0, seed=1),
                                         100.0 * random_scores((16, n), 1.0, seed=2)])).to(dtype)
    z[::7, ::5] = NINF
    for exactly_k in (True, False):
        zc = z.cuda().requires_grad_()
        out = hfy.ksubsets(zc, 5, exactly_k=exactly_k)
        assert out.device.type == "cuda"
        assert (out.cpu() - hfy.ksubsets(z, 5, exactly_k=exactly_k)).abs().max().item() <= dtype_atol(dtype)
        (out * torch.linspace(-1, 1, n, device="cuda", dtype=dtype)).sum().backward()
        assert not torch.isnan(zc.grad).any()


# --- the sort-free threshold (Newton passes) and the rows it leaves to the sorted breakpoints -----------------


def _mixed_rows(n=160):
    """Rows that settle after a few Newton passes next to rows that go to the sorted breakpoints
    (long enough, at 160 scores, for the Newton passes at the default ``UNIT_GROUPS``)."""
    rng = np.random.default_rng(7)
    rows = [rng.standard_normal(n), 0.05 * rng.standard_normal(n), 10.0 * rng.standard_normal(n)]
    outlier = rng.standard_normal(n)
    outlier[3] = 40.0  # the largest score far above the rest: a flat piece at max − 1, Newton is stuck
    rows.append(outlier)
    gaps = np.sort(rng.standard_normal(n))[::-1].copy()
    gaps[:3] += 5.0  # the top three lead by more than 1: integral output for k = 3 (a flat piece)
    rows.append(gaps)
    rows.append(np.round(4 * rng.standard_normal(n)) / 4)  # many ties on a grid
    rows.append(1e4 + rng.standard_normal(n))  # a large offset
    geometric = -np.arange(n, dtype=float) ** 2  # breakpoints spread further and further apart
    rows.append(geometric)
    masked = rng.standard_normal(n)
    masked[rng.random(n) < 0.5] = NINF
    masked[:6] = rng.standard_normal(6)
    rows.append(masked)
    return np.stack(rows)


@pytest.mark.usefixtures("newton_passes")
@pytest.mark.parametrize("exactly_k", [True, False], ids=["exactly", "at-most"])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_newton_threshold_on_mixed_rows_agrees_with_reference(k, exactly_k):
    z = _mixed_rows()
    out = hfy.ksubsets(torch.from_numpy(z), k, exactly_k=exactly_k).numpy()
    np.testing.assert_allclose(out, ref.ksubsets(z, k, exactly_k=exactly_k), rtol=0, atol=REFERENCE_ATOL)
    if k == 3 and exactly_k:  # the row with a lead of more than 1 is the exact 0/1 indicator
        assert set(np.unique(out[4])) == {0.0, 1.0}


@pytest.mark.parametrize("groups,passes,sort_size", [(2, 16, 0), (2, 1, 0), (4, 3, 0), (10**6, 16, 0), (64, 16, 10**18)],
                         ids=["newton", "all sorted after one pass", "mixed", "groups of one", "all sorted outright"])
def test_threshold_stages_agree_with_the_sorted_breakpoints(monkeypatch, groups, passes, sort_size):
    """Each stage of the k-subsets threshold, forced: few group maxima give a poor start and many
    Newton passes, one pass leaves every row to the sorted breakpoints, groups of one score make the
    start solve the row, and a large enough ``UNIT_SORT_SIZE`` sends it to the sorted breakpoints outright."""
    from hfy._torch import _core

    monkeypatch.setattr(_core, "UNIT_GROUPS", groups)
    monkeypatch.setattr(_core, "UNIT_GROUP_SIZE", 1)
    monkeypatch.setattr(_core, "UNIT_PASSES", passes)
    monkeypatch.setattr(_core, "UNIT_SORT_SIZE", sort_size)
    z = np.concatenate([_mixed_rows(), random_scores((40, 160), 2.0, seed=9)])
    for k in (1, 3, 6):
        out = hfy.ksubsets(torch.from_numpy(z), k).numpy()
        np.testing.assert_allclose(out, ref.ksubsets(z, k), rtol=0, atol=REFERENCE_ATOL)
    per_row = torch.from_numpy(np.arange(z.shape[0]) % 5 + 1).reshape(-1, 1)
    out = hfy.ksubsets(torch.from_numpy(z), per_row).numpy()
    for r in range(z.shape[0]):
        np.testing.assert_allclose(out[r], ref.ksubsets(z[r], int(per_row[r])), rtol=0, atol=REFERENCE_ATOL)


@pytest.mark.usefixtures("newton_passes")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_newton_threshold_low_precision_mixed_rows(dtype):
    z = torch.from_numpy(_mixed_rows()[[0, 1, 3, 4, 5, 8]]).to(dtype)  # rows representable in low precision
    for k in (1, 3):
        out = hfy.ksubsets(z, k)
        assert out.dtype == dtype and not torch.isnan(out).any()
        expected = ref.ksubsets(z.double().numpy(), k)
        assert np.abs(out.double().numpy() - expected).max() <= dtype_atol(dtype)


def _newton_rows(n=256, seed=11):
    """Rows for the Newton passes that stress their special cases (float64, N = 256 >= 2 · 64 groups)."""
    rng = np.random.default_rng(seed)
    rows = [100.0 * rng.standard_normal(n), 10.0 * rng.standard_normal(n)]  # flat pieces: integral outputs
    shared = rng.standard_normal(n)
    shared[[0, 64, 128, 192]] = [9.0, 8.5, 8.0, 7.5]  # the top four share one of the 64 strided groups
    rows.append(shared)
    grid = np.round(rng.standard_normal(n) * 3)  # integers: gaps of exactly 1 and ties
    rows.append(grid)
    masked = rng.standard_normal(n)
    masked[rng.random(n) < 0.9] = NINF  # whole groups masked
    masked[:8] = 3.0 * rng.standard_normal(8)
    rows.append(masked)
    return np.stack(rows)


@pytest.mark.usefixtures("newton_passes")
@pytest.mark.parametrize("k", [1, 3, 5, 7])
def test_newton_passes_special_rows_agree_with_reference_and_stay_integral(k):
    z = _newton_rows()
    out = hfy.ksubsets(torch.from_numpy(z), k).numpy()
    expected = ref.ksubsets(z, k)
    np.testing.assert_allclose(out, expected, rtol=0, atol=REFERENCE_ATOL)
    integral = np.all((expected == 0) | (expected == 1), axis=-1)
    assert integral[0], "the first row (scale 100) should have an integral answer"
    for r in np.flatnonzero(integral):
        assert set(np.unique(out[r])) <= {0.0, 1.0}, f"row {r}: not exactly 0/1"


@pytest.mark.usefixtures("newton_passes")
def test_newton_flat_pieces_jump_and_round(monkeypatch):
    """Rows on a flat piece take the jump of ``_leave_flat_pieces``, and rows settling at the end of a
    flat piece come back for rounding: both paths run on integral rows, with exact 0/1 outputs."""
    from hfy._torch import _core

    jumped, rounded = [], []
    leave, unit = _core._leave_flat_pieces, _core.capped_threshold_unit

    def spy_leave(x, tau, resid, flat, new):  # (flat: the rows without a free entry)
        jumped.append(int((flat & (resid != 0)).sum()))
        return leave(x, tau, resid, flat, new)

    def spy_unit(*args, **kwargs):
        tau, flat = unit(*args, **kwargs)
        rounded.append(flat.numel())
        return tau, flat

    monkeypatch.setattr(_core, "_leave_flat_pieces", spy_leave)
    monkeypatch.setattr("hfy._torch.ksubsets.capped_threshold_unit", spy_unit)
    rng = np.random.default_rng(3)
    z = 100.0 * rng.standard_normal((64, 256))
    out = hfy.ksubsets(torch.from_numpy(z), 4).numpy()
    np.testing.assert_array_equal(out, ref.ksubsets(z, 4))
    assert sum(jumped) > 0 and sum(rounded) > 0


@pytest.mark.usefixtures("newton_passes")
def test_newton_passes_along_a_middle_dim_round_integral_rows():
    """Scores moved from a middle dim to the last are not contiguous; the solver's scratch (the output)
    is, so that the rows settling at the end of a flat piece can be rounded in place, and the output
    comes back in the layout of the scores."""
    z = 100.0 * random_scores((3, 300, 20), 1.0, seed=12)  # scale 100: mostly integral outputs
    for dtype in (torch.float64, torch.float32):
        zt = torch.from_numpy(z).to(dtype)
        result = hfy.ksubsets(zt, 3, dim=1)
        assert result.is_contiguous() and result.dtype == dtype
        out = result.double().numpy()
        expected = ref.ksubsets(zt.double().numpy(), 3, 1)
        np.testing.assert_allclose(out, expected, rtol=0, atol=dtype_atol(dtype))
        integral = np.all((expected == 0) | (expected == 1), axis=1)
        assert integral.mean() > 0.5
        np.testing.assert_array_equal(out.transpose(0, 2, 1)[integral], expected.transpose(0, 2, 1)[integral])


@pytest.mark.usefixtures("threshold_path")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("exactly_k", [True, False], ids=["exactly", "at-most"])
@pytest.mark.parametrize("n,scale", [(5, 0.3), (5, 0.05), (40, 0.3), (300, 0.05)])
def test_masked_batches_with_unmasked_rows_of_narrow_range(n, scale, exactly_k, dtype):
    """In a batch with −inf, a row without any starts its bracket at its smallest score − 1 too: at its
    smallest score, g can be below k when the row's scores lie within 1 of each other (short rows are
    their own group maxima on the Newton passes)."""
    rng = np.random.default_rng(n)
    z = rng.standard_normal((64, n))
    z[::2] *= scale  # narrow rows, unmasked
    masked = z[1::2]
    masked[rng.random(masked.shape) < 0.4] = NINF
    masked[:, :4] = rng.standard_normal((32, 4))  # at least 4 unmasked
    zt = torch.from_numpy(z).to(dtype)
    out = hfy.ksubsets(zt, 3, exactly_k=exactly_k).double().numpy()
    expected = ref.ksubsets(zt.double().numpy(), 3, exactly_k=exactly_k)
    assert np.abs(out - expected).max() <= dtype_atol(dtype)


@pytest.mark.usefixtures("newton_passes")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_newton_passes_with_a_scratch_buffer_leave_inputs_alone(dtype):
    """The solver writes only into its scratch buffer (the output): the scores are unchanged."""
    from hfy._torch import _core

    z = torch.from_numpy(np.concatenate([_newton_rows(), random_scores((60, 256), 1.0, seed=5)])).to(dtype)
    before = z.clone()
    work = torch.empty_like(z)
    tau, _ = _core.capped_threshold_unit(z, torch.full((z.shape[0], 1), 3.0, dtype=dtype), work)
    assert torch.equal(z, before)
    expected = _core.capped_threshold_unit(z.double(), torch.full((z.shape[0], 1), 3.0, dtype=torch.float64))[0]
    mu, mu64 = (z - tau).clamp(0, 1).double(), (z.double() - expected).clamp(0, 1)
    assert (mu - mu64).abs().max().item() <= dtype_atol(dtype)


@pytest.mark.usefixtures("newton_passes")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_newton_passes_with_huge_scores(dtype):
    """A score of ±1e30 next to scores of order 1: steps from the huge end of the bracket are lost to
    rounding, and the row must bisect its way down instead of settling there."""
    rng = np.random.default_rng(0)
    z = rng.standard_normal((8, 256))
    z[:, 5] = 1e30
    z[3, 7] = -1e30
    zt = torch.from_numpy(z).to(dtype)
    out = hfy.ksubsets(zt, 4).double().numpy()
    expected = ref.ksubsets(zt.double().numpy(), 4)
    assert np.abs(out - expected).max() <= dtype_atol(dtype)


@pytest.mark.usefixtures("newton_passes")
def test_newton_passes_float32_far_from_zero():
    """Scores around −1e6 in float32 (spacing 1/16): τ is a float32 as well, so each output can be off by
    half that spacing, but no more, whether the row is fractional, integral or full of ties."""
    rng = np.random.default_rng(3)
    z = 5.0 * rng.standard_normal((24, 1024)) - 1e6
    z[16:, :400] = z[16:, :1]  # many exact ties
    zt = torch.from_numpy(z).float()
    zz = zt.double().numpy()
    for k in (3, 10, 25):
        out = hfy.ksubsets(zt, k).double().numpy()
        expected = np.stack([ref.ksubsets(row, k) for row in zz])
        assert np.abs(out - expected).max() <= 1 / 32 + 1e-9, f"k={k}"


@pytest.mark.parametrize("dtype,offsets", [(torch.float64, [1e4, 1e8, 1e16]), (torch.float32, [1e4])], ids=str)
def test_shift_invariance_at_large_offsets(threshold_path, dtype, offsets):
    """μ(z + c) = μ(z): the threshold is solved relative to each row's largest score.  Scores on a grid of
    1/8 (or of the offset's ulp) plus the offset are exactly representable, so the expected output is exact; before, an offset
    of 1e16 gave row sums of 0 (sorted path) or 8 (Newton path) instead of 3, and 1e4 in float32 was
    off by up to 5e-3.  Constrained sparsemax and both reference maps likewise; "at most k" with the
    budget active (large positive offsets) is the exactly-k projection."""
    rng = np.random.default_rng(3)
    grid = rng.integers(-8, 9, size=(6, 9)).astype(float)
    grid[0, :8] = 8.0  # eight tied leaders
    for c in offsets:
        d = grid * max(1.0 / 8.0, float(np.spacing(np.float64(c) if dtype == torch.float64 else np.float32(c))))
        z = torch.from_numpy(d).to(dtype)
        shifted = torch.from_numpy(d + c).to(dtype)
        assert torch.equal(shifted - c, z)  # (representable)
        want = hfy.ksubsets(z, 3)
        got = hfy.ksubsets(shifted, 3)
        assert (got - want).abs().max().item() <= 4 * torch.finfo(dtype).eps
        np.testing.assert_allclose(got.sum(-1).double().numpy(), 3.0, rtol=0, atol=16 * torch.finfo(dtype).eps)
        at_most = hfy.ksubsets(shifted, 3, exactly_k=False)
        assert (at_most - want).abs().max().item() <= 4 * torch.finfo(dtype).eps
        upper = torch.full_like(z, 0.4)
        cs = hfy.constrained_sparsemax(shifted, upper) - hfy.constrained_sparsemax(z, upper)
        assert cs.abs().max().item() <= 4 * torch.finfo(dtype).eps
        if dtype == torch.float64:
            np.testing.assert_allclose(ref.ksubsets(d + c, 3), ref.ksubsets(d, 3), rtol=0, atol=4e-15)
            np.testing.assert_allclose(ref.constrained_sparsemax(d + c, np.full(9, 0.4)),
                                       ref.constrained_sparsemax(d, np.full(9, 0.4)), rtol=0, atol=4e-15)


def test_argument_errors_name_the_argument():
    """(these raised raw torch errors, or were accepted)"""
    z = torch.randn(3, 5, dtype=torch.float64)
    with pytest.raises(ValueError, match="`k`"):
        hfy.ksubsets(z, torch.tensor([[2], [2]]))  # two k for three rows
    with pytest.raises(ValueError, match="`k`"):
        hfy.ksubsets(z, torch.tensor([[True], [True], [False]]))
    np.testing.assert_array_equal(hfy.ksubsets(z, np.int64(2)).numpy(), hfy.ksubsets(z, 2).numpy())
    with pytest.raises(ValueError, match="`upper`"):
        hfy.constrained_sparsemax(z, torch.full((4,), 0.5, dtype=torch.float64))
    with pytest.raises(ValueError, match="`upper`"):
        hfy.constrained_sparsemax(z, torch.full((2, 3, 5), 0.5, dtype=torch.float64))
    listed = hfy.ConstrainedSparsemax([0.5] * 5).predict(z.float())
    np.testing.assert_allclose(listed.numpy(), hfy.constrained_sparsemax(z.float(), torch.full((5,), 0.5)).numpy())
    with pytest.raises(TypeError, match="`upper`"):
        hfy.ConstrainedSparsemax(torch.ones(5, dtype=torch.long))
    for bad in (None, 2.5, 0, True):
        with pytest.raises(ValueError, match="`n_iter`"):
            hfy.entmax_bisect(z, 1.5, n_iter=bad)


def test_oracle_and_viterbi_name_k():
    """(cvxpy reported an infeasible status, the Viterbi an index error)"""
    with pytest.raises(ValueError, match="`k`"):
        oracle.ksubsets(np.array([1.0, NINF, 0.5]), 3)
    with pytest.raises(ValueError, match="`k`"):
        hfy.budgeted_viterbi(torch.tensor([[1.0, 2.0]]), 3, 0.5)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_newton_step_counts_free_entries_exactly_and_brackets_the_root(dtype):
    """One pass gives g − k, the exact count of free entries 0 < θ_i − τ < 1 (ties and integer gaps
    included) and the wobble Σ c (1 − c); the step stays inside the updated bracket."""
    from hfy._torch import _core

    rng = np.random.default_rng(21)
    x = torch.from_numpy(np.concatenate([rng.standard_normal((40, 300)),
                                         np.round(3 * rng.standard_normal((40, 300)))])).to(dtype)
    total = torch.full((80, 1), 4.0, dtype=dtype)
    tau = torch.from_numpy(rng.uniform(0.0, 2.5, (80, 1))).to(dtype)
    tau[40:] = torch.round(tau[40:])  # integer τ on integer scores: entries exactly at 0 and 1
    lo, hi = tau - 5.0, x.amax(-1, keepdim=True)
    new, resid, free, wobble, lo2, hi2, _ = _core._newton_step(x, total, tau, lo, hi, torch.empty_like(x))
    c = (x - tau).clamp(0.0, 1.0)
    assert torch.equal(free, ((c > 0) & (c < 1)).sum(-1, keepdim=True).to(dtype))
    torch.testing.assert_close(resid, c.sum(-1, keepdim=True) - total)
    torch.testing.assert_close(wobble, (c * (1 - c)).sum(-1, keepdim=True))
    assert bool(((new >= lo2) & (new <= hi2)).all())
    assert bool(torch.where(resid >= 0, lo2 == tau, hi2 == tau).all())
