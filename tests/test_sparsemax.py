"""Sparsemax: the triangle, the threshold, gradients, the projection's geometry and the margin 1."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import hfy
import hfy.oracle as oracle
import hfy.reference as ref
from hfy.reference.entmax import _entmax_bisect_1d
from hfy.reference.sparsemax import _sparsemax_1d
from hfy.testing import (
    FD_ATOL,
    GRADCHECK,
    MAP_LAYOUTS,
    ORACLE_ATOL,
    PROPERTY_ATOL,
    REFERENCE_ATOL,
    adversarial_scores,
    dtype_atol,
    finite_difference_jacobian,
    layout_ids,
    random_scores,
)

LOW_PRECISION = [torch.float32, torch.float16, torch.bfloat16]

LAYOUTS = [pytest.param(*layout, id=i) for layout, i in zip(MAP_LAYOUTS, layout_ids(MAP_LAYOUTS))]

#: adversarial cases the QP oracle cannot take, and why.
ORACLE_UNFIT = {
    "huge scale": "|θ| = 1e30 is outside the range of a conic solver (CLARABEL reports 'unbounded')",
}


def oracle_cases():
    cases = [
        ("random N=2", random_scores((2,), 1.0, 0)),
        ("random N=5 scale 3", random_scores((5,), 3.0, 1)),
        ("random N=8", random_scores((8,), 1.0, 2)),
        ("random N=6 scale 0.3", random_scores((6,), 0.3, 3)),
    ]
    return cases + [(name, z) for name, z in adversarial_scores() if name not in ORACLE_UNFIT]


def finite_scores(min_n=1, max_n=10, bound=10.0):
    return st.integers(min_n, max_n).flatmap(
        lambda n: hnp.arrays(np.float64, n, elements=st.floats(-bound, bound, allow_subnormal=False))
    )


# --- the triangle ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,z", oracle_cases(), ids=[c[0] for c in oracle_cases()])
def test_oracle_agrees_with_reference(name, z):
    np.testing.assert_allclose(oracle.sparsemax(z), ref.sparsemax(z), rtol=0, atol=ORACLE_ATOL)


@pytest.mark.usefixtures("small_batch_path")
@pytest.mark.parametrize("shape,dim,scale", LAYOUTS)
def test_reference_agrees_with_torch_float64(shape, dim, scale):
    z = random_scores(shape, scale, seed=len(shape) * 10 + dim)
    out = hfy.sparsemax(torch.from_numpy(z), dim)
    np.testing.assert_allclose(out.numpy(), ref.sparsemax(z, dim), rtol=0, atol=REFERENCE_ATOL)


@pytest.mark.usefixtures("small_batch_path")
@pytest.mark.parametrize("dtype", LOW_PRECISION, ids=str)
@pytest.mark.parametrize("scale", [1.0, 3.0, 10.0])
def test_low_precision_agrees_with_float64(dtype, scale):
    z = torch.from_numpy(random_scores((8, 32), scale, seed=11)).to(dtype)
    out = hfy.sparsemax(z)
    assert out.dtype == dtype
    assert (out.double() - hfy.sparsemax(z.double())).abs().max().item() <= dtype_atol(dtype)


@pytest.mark.parametrize("seed", range(6))
def test_sort_agrees_with_entmax_bisection_at_alpha_2(seed):
    """Two exact algorithms: the sort-based projection and bisection of the α = 2 threshold."""
    theta = random_scores((9,), [0.3, 1.0, 3.0][seed % 3], seed)
    np.testing.assert_allclose(_sparsemax_1d(theta), _entmax_bisect_1d(theta, 2.0), rtol=0, atol=PROPERTY_ATOL)


# --- the threshold -------------------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(finite_scores())
def test_threshold_defines_output_and_support(theta):
    """p = [θ − τ]_+ with Σ p = 1, and the support is exactly {i : θ_i > τ}."""
    tau = ref.sparsemax_threshold(theta)
    assert abs(np.maximum(theta - tau, 0.0).sum() - 1.0) <= PROPERTY_ATOL
    p = hfy.sparsemax(torch.from_numpy(theta)).numpy()
    np.testing.assert_allclose(p, np.maximum(theta - tau, 0.0), rtol=0, atol=PROPERTY_ATOL)
    assert (p[theta > tau + PROPERTY_ATOL] > 0).all()
    assert (p[theta <= tau] == 0).all()


def test_threshold_closed_form_by_top_k_sums():
    """τ = max_k (S_k − 1)/k where S_k is the sum of the k largest scores."""
    for seed in range(5):
        theta = random_scores((12,), 1.5, seed)
        top = np.cumsum(np.sort(theta)[::-1])
        k = np.arange(1, theta.size + 1)
        assert abs(ref.sparsemax_threshold(theta) - ((top - 1.0) / k).max()) <= PROPERTY_ATOL


# --- derivatives -----------------------------------------------------------------------------------------


@pytest.mark.usefixtures("small_batch_path")
def test_gradcheck_and_gradgradcheck():
    z = torch.from_numpy(random_scores((4, 7), 1.0, seed=5)).requires_grad_()
    assert torch.autograd.gradcheck(hfy.sparsemax, (z,), **GRADCHECK)
    assert torch.autograd.gradgradcheck(hfy.sparsemax, (z,), **GRADCHECK)


@pytest.mark.usefixtures("small_batch_path")
def test_gradcheck_along_dim_0_and_3d():
    z = torch.from_numpy(random_scores((5, 2, 3), 1.0, seed=8)).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: hfy.sparsemax(x, dim=0), (z,), **GRADCHECK)
    assert torch.autograd.gradcheck(lambda x: hfy.sparsemax(x, dim=1), (z,), **GRADCHECK)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reference_jacobian_matches_finite_differences(seed):
    theta = random_scores((7,), 1.0, seed)
    jac = ref.Tsallis(2.0).jacobian(theta)
    fd = finite_difference_jacobian(ref.sparsemax, theta)
    np.testing.assert_allclose(jac, fd, rtol=0, atol=FD_ATOL)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reference_jacobian_matches_torch_autograd(seed):
    theta = random_scores((7,), 1.0, seed)
    auto = torch.autograd.functional.jacobian(hfy.sparsemax, torch.from_numpy(theta))
    np.testing.assert_allclose(auto.numpy(), ref.Tsallis(2.0).jacobian(theta), rtol=0, atol=REFERENCE_ATOL)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_jacobian_is_an_orthogonal_projector(seed):
    """On the support, J = I − 11ᵀ/|S|: symmetric, idempotent, eigenvalues in {0, 1}, J1 = 0."""
    theta = random_scores((8,), 1.0, seed)
    jac = ref.Tsallis(2.0).jacobian(theta)
    np.testing.assert_allclose(jac, jac.T, rtol=0, atol=PROPERTY_ATOL)
    np.testing.assert_allclose(jac @ jac, jac, rtol=0, atol=PROPERTY_ATOL)
    np.testing.assert_allclose(jac @ np.ones(8), 0.0, rtol=0, atol=PROPERTY_ATOL)
    eig = np.linalg.eigvalsh(jac)
    assert np.all(np.minimum(np.abs(eig), np.abs(eig - 1.0)) <= PROPERTY_ATOL)
    support = int((ref.sparsemax(theta) > 0).sum())
    assert abs(np.trace(jac) - (support - 1)) <= PROPERTY_ATOL


# --- the projection's geometry ------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(finite_scores(min_n=2, max_n=8), st.integers(0, 2**31 - 1))
def test_projection_is_nonexpansive(theta, seed):
    other = theta + np.random.default_rng(seed).standard_normal(theta.size)
    p, q = hfy.sparsemax(torch.from_numpy(theta)), hfy.sparsemax(torch.from_numpy(other))
    assert (p - q).norm().item() <= np.linalg.norm(theta - other) + PROPERTY_ATOL


@settings(max_examples=40, deadline=None)
@given(finite_scores(min_n=2, max_n=8), st.integers(0, 2**31 - 1))
def test_projection_variational_inequality(theta, seed):
    """⟨θ − p, y − p⟩ <= 0 for every y in the simplex: p is the closest point of the simplex."""
    p = hfy.sparsemax(torch.from_numpy(theta)).numpy()
    rng = np.random.default_rng(seed)
    for y in [np.eye(theta.size)[i] for i in range(theta.size)] + [rng.dirichlet(np.ones(theta.size))]:
        assert np.dot(theta - p, y - p) <= PROPERTY_ATOL * (1 + np.abs(theta).max())


# --- margin 1 ------------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(finite_scores(min_n=2, max_n=8), st.integers(0, 64))
def test_one_hot_iff_gap_at_least_one(theta, extra):
    """Scores on a 1/64 grid keep every difference exact; the top score leads by gap = 1 + extra/64."""
    theta = np.round(theta * 64) / 64
    rest = np.delete(theta, 0)
    gap = 1.0 + extra / 64
    theta[0] = rest.max() + gap
    p = hfy.sparsemax(torch.from_numpy(theta)).numpy()
    assert p[0] == 1.0 and (p[1:] == 0).all()
    assert (ref.sparsemax(theta) == np.eye(theta.size)[0]).all()
    theta[0] = rest.max() + 1.0 * (1 - 1e-6)
    assert hfy.sparsemax(torch.from_numpy(theta)).numpy()[0] < 1.0
    assert ref.sparsemax(theta)[0] < 1.0


@pytest.mark.usefixtures("small_batch_path")
@pytest.mark.parametrize("dtype", [torch.float64, *LOW_PRECISION], ids=str)
def test_adversarial_rows_on_both_paths(dtype):
    """Ties, masks, an all-masked row, huge and tiny scales and offsets, in one batch and row by row: both the
    sorted path and the Newton iteration agree with the reference (an all-masked row gives zeros)."""
    for name, z in adversarial_scores():
        zt = torch.from_numpy(z).to(dtype)
        if not bool(torch.isfinite(zt[torch.isfinite(torch.from_numpy(z))]).all()):
            continue  # not representable in this dtype
        out = hfy.sparsemax(zt)
        assert not torch.isnan(out).any(), name
        expected = ref.sparsemax(zt.double().numpy())
        assert np.abs(out.double().numpy() - expected).max() <= dtype_atol(dtype), name
    batch = torch.from_numpy(random_scores((6, 9), 2.0, seed=3)).to(dtype)
    batch[1] = -float("inf")
    batch[2, ::2] = -float("inf")
    out = hfy.sparsemax(batch)
    assert (out[1] == 0).all() and (out[2, ::2] == 0).all()
    keep = [0, 2, 3, 4, 5]
    expected = ref.sparsemax(batch[keep].double().numpy())
    assert np.abs(out[keep].double().numpy() - expected).max() <= dtype_atol(dtype)
