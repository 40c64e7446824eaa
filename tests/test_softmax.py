"""Softmax: the triangle oracle ↔ reference ↔ fast path, derivatives, and the absence of a margin."""

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


def oracle_cases():
    """Random small inputs and the adversarial cases an interior-point solver can take.

    ``huge scale`` (|θ| = 1e30) is outside the range a conic solver can represent.
    """
    cases = [
        ("random N=2", random_scores((2,), 1.0, 0)),
        ("random N=5 scale 3", random_scores((5,), 3.0, 1)),
        ("random N=8", random_scores((8,), 1.0, 2)),
        ("random N=6 scale 0.3", random_scores((6,), 0.3, 3)),
    ]
    cases += [(name, z) for name, z in adversarial_scores() if name != "huge scale"]
    return cases


def finite_scores(max_n=10, bound=20.0):
    return st.integers(1, max_n).flatmap(
        lambda n: hnp.arrays(np.float64, n, elements=st.floats(-bound, bound, allow_subnormal=False))
    )


# --- the triangle ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,z", oracle_cases(), ids=[c[0] for c in oracle_cases()])
def test_oracle_agrees_with_reference(name, z):
    np.testing.assert_allclose(oracle.softmax(z), ref.softmax(z), rtol=0, atol=ORACLE_ATOL)


@pytest.mark.parametrize("shape,dim,scale", LAYOUTS)
def test_reference_agrees_with_torch_float64(shape, dim, scale):
    z = random_scores(shape, scale, seed=len(shape) * 10 + dim)
    out = hfy.softmax(torch.from_numpy(z), dim)
    np.testing.assert_allclose(out.numpy(), ref.softmax(z, dim), rtol=0, atol=REFERENCE_ATOL)


@pytest.mark.parametrize("shape,dim,scale", LAYOUTS)
def test_matches_torch_softmax_on_finite_input(shape, dim, scale):
    z = torch.from_numpy(random_scores(shape, scale, seed=7))
    torch.testing.assert_close(hfy.softmax(z, dim), torch.softmax(z, dim), rtol=0, atol=REFERENCE_ATOL)


@pytest.mark.parametrize("dtype", LOW_PRECISION, ids=str)
@pytest.mark.parametrize("scale", [1.0, 3.0, 10.0])
def test_low_precision_agrees_with_float64(dtype, scale):
    z = torch.from_numpy(random_scores((8, 32), scale, seed=11)).to(dtype)
    out = hfy.softmax(z)
    assert out.dtype == dtype
    expected = hfy.softmax(z.double())  # the same (rounded) scores, in float64
    assert (out.double() - expected).abs().max().item() <= dtype_atol(dtype)


# --- derivatives -----------------------------------------------------------------------------------------


def test_gradcheck_and_gradgradcheck():
    z = torch.from_numpy(random_scores((3, 6), 1.0, seed=5)).requires_grad_()
    assert torch.autograd.gradcheck(hfy.softmax, (z,), **GRADCHECK)
    assert torch.autograd.gradgradcheck(hfy.softmax, (z,), **GRADCHECK)


def test_gradcheck_with_masks():
    z = torch.from_numpy(random_scores((3, 6), 1.0, seed=6))
    mask = torch.tensor([[0, 1, 0, 0, 1, 0], [1, 1, 1, 1, 1, 0], [0, 0, 0, 0, 0, 0]], dtype=torch.bool)
    z = z.masked_fill(mask, -torch.inf).requires_grad_()
    assert torch.autograd.gradcheck(hfy.softmax, (z,), **GRADCHECK)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reference_jacobian_matches_finite_differences(seed):
    theta = random_scores((6,), 2.0, seed)
    jac = ref.Shannon().jacobian(theta)
    fd = finite_difference_jacobian(ref.softmax, theta)
    np.testing.assert_allclose(jac, fd, rtol=0, atol=FD_ATOL)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reference_jacobian_matches_torch_autograd(seed):
    theta = random_scores((6,), 2.0, seed)
    auto = torch.autograd.functional.jacobian(hfy.softmax, torch.from_numpy(theta))
    np.testing.assert_allclose(auto.numpy(), ref.Shannon().jacobian(theta), rtol=0, atol=REFERENCE_ATOL)


def test_jacobian_is_symmetric_psd_with_ones_in_kernel():
    theta = random_scores((7,), 1.0, 3)
    jac = ref.Shannon().jacobian(theta)
    np.testing.assert_allclose(jac, jac.T, rtol=0, atol=PROPERTY_ATOL)
    np.testing.assert_allclose(jac @ np.ones(7), 0.0, rtol=0, atol=PROPERTY_ATOL)
    assert np.linalg.eigvalsh(jac).min() >= -PROPERTY_ATOL


# --- no margin: full support, never one-hot --------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(finite_scores())
def test_full_support_on_finite_scores(theta):
    p_ref = ref.softmax(theta)
    p_t = hfy.softmax(torch.from_numpy(theta)).numpy()
    assert (p_ref > 0).all() and (p_t > 0).all()
    assert abs(p_t.sum() - 1.0) <= PROPERTY_ATOL


@pytest.mark.parametrize("gap", [1.0, 2.0, 10.0, 30.0, 100.0, 700.0])
def test_never_one_hot_whatever_the_gap(gap):
    """Shannon has no margin: however far the top score leads, the others keep mass."""
    theta = torch.tensor([gap, 0.0, -0.5], dtype=torch.float64)
    p = hfy.softmax(theta)
    assert (p[1:] > 0).all()
    assert (ref.softmax(theta.numpy())[1:] > 0).all()
    assert hfy.Shannon().margin == float("inf") == ref.Shannon().margin


def test_masked_entries_are_exact_zeros():
    theta = torch.tensor([[1.0, -torch.inf, 0.5], [-torch.inf, -torch.inf, -torch.inf]], dtype=torch.float64)
    p = hfy.softmax(theta)
    assert p[0, 1] == 0 and (p[1] == 0).all()
    np.testing.assert_allclose(p.numpy(), ref.softmax(theta.numpy()), rtol=0, atol=REFERENCE_ATOL)
