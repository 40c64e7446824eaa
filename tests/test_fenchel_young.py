"""Fenchel-Young machinery: properties every regularised prediction map shares, conjugates,
entropies, the losses and their ergonomics (reductions, ignore_index, class dimension)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import hfy
import hfy.oracle as oracle
import hfy.reference as ref
from hfy.testing import (
    FD_ATOL,
    FD_STEP,
    GRADCHECK,
    ORACLE_VALUE_ATOL,
    PROPERTY_ATOL,
    REFERENCE_ATOL,
    random_scores,
    random_simplex,
)

ALPHAS = [1.001, 1.25, 1.5, 1.7, 2.0, 2.5, 3.0, 10.0, 100.0]
GAMMAS = [1.1, 1.5, 2.0, 3.0, 5.0, 10.0, math.inf]


def _regularizers():
    regs = [("shannon", hfy.Shannon(), ref.Shannon(), oracle.Shannon())]
    regs += [(f"tsallis-{a}", hfy.Tsallis(a), ref.Tsallis(a), oracle.Tsallis(a)) for a in ALPHAS]
    regs += [(f"norm-{g}", hfy.NormEntropy(g), ref.NormEntropy(g), oracle.NormEntropy(g)) for g in GAMMAS]
    return regs


REGS = {name: (t, r, o) for name, t, r, o in _regularizers()}
REG_NAMES = list(REGS)
#: a subset for the (slower) double-backward checks of the losses.
SMOOTH_REG_NAMES = ["shannon", "tsallis-1.25", "tsallis-1.5", "tsallis-2.0", "tsallis-3.0",
                    "norm-1.5", "norm-2.0", "norm-3.0", "norm-5.0", "norm-inf"]


@st.composite
def scores(draw, min_n=1, max_n=10, bound=10.0, masks=True):
    """Finite scores in [-bound, bound]; with ``masks`` some entries are -inf, never all."""
    n = draw(st.integers(min_n, max_n))
    x = draw(hnp.arrays(np.float64, n, elements=st.floats(-bound, bound, allow_subnormal=False)))
    if masks and n > 1:
        masked = draw(hnp.arrays(np.bool_, n))
        masked[draw(st.integers(0, n - 1))] = False
        x = np.where(masked, -np.inf, x)
    return x


def predict(name: str, layer: str, theta: np.ndarray) -> np.ndarray:
    torch_reg, ref_reg, _ = REGS[name]
    if layer == "reference":
        return ref_reg.predict(theta)
    return torch_reg.predict(torch.from_numpy(theta)).numpy()


LAYERS = ["reference", "torch"]


# --- properties every prediction map shares (math.md §2.2, §11.1.3) ------------------------------------


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("name", REG_NAMES)
@settings(max_examples=20, deadline=None)
@given(theta=scores())
def test_output_on_simplex_and_masks_are_zero(name, layer, theta):
    p = predict(name, layer, theta)
    assert np.all(np.isfinite(p)) and np.all(p >= 0)
    assert abs(p.sum() - 1.0) <= PROPERTY_ATOL
    assert np.all(p[np.isneginf(theta)] == 0)


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("name", REG_NAMES)
@settings(max_examples=20, deadline=None)
@given(theta=scores(), shift=st.sampled_from([-1e4, -3.5, 0.25, 7.0, 1e4]))
def test_invariant_to_adding_a_constant(name, layer, theta, shift):
    np.testing.assert_allclose(predict(name, layer, theta + shift), predict(name, layer, theta), rtol=0,
                               atol=PROPERTY_ATOL)


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("name", REG_NAMES)
@settings(max_examples=20, deadline=None)
@given(theta=scores(), seed=st.integers(0, 2**31 - 1))
def test_permutation_equivariant(name, layer, theta, seed):
    perm = np.random.default_rng(seed).permutation(theta.size)
    np.testing.assert_allclose(predict(name, layer, theta[perm]), predict(name, layer, theta)[perm], rtol=0,
                               atol=PROPERTY_ATOL)


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("name", REG_NAMES)
@settings(max_examples=20, deadline=None)
@given(theta=scores())
def test_larger_scores_never_get_less_probability(name, layer, theta):
    """Threshold maps: p is a non-decreasing function of the score (equal scores, equal mass)."""
    p = predict(name, layer, theta)
    order = np.argsort(theta, kind="stable")
    assert np.all(np.diff(p[order]) >= -PROPERTY_ATOL)
    same = theta[:, None] == theta[None, :]
    assert np.all(np.abs(p[:, None] - p[None, :])[same] <= PROPERTY_ATOL)


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("name", REG_NAMES)
@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 20), c=st.floats(-100, 100))
def test_constant_scores_give_the_uniform_distribution(name, layer, n, c):
    np.testing.assert_allclose(predict(name, layer, np.full(n, c)), np.full(n, 1.0 / n), rtol=0,
                               atol=PROPERTY_ATOL)


# --- entropies ---------------------------------------------------------------------------------------


def expected_max_entropy(name: str, n: int) -> float:
    if name == "shannon":
        return math.log(n)
    kind, value = name.split("-")
    value = float(value)
    if kind == "tsallis":
        return (1.0 - n ** (1.0 - value)) / (value * (value - 1.0))
    return 1.0 - 1.0 / n if math.isinf(value) else 1.0 - n ** (1.0 / value - 1.0)


@pytest.mark.parametrize("name", REG_NAMES)
@pytest.mark.parametrize("n", [1, 2, 7, 64])
def test_entropy_of_uniform_and_vertices(name, n):
    torch_reg, ref_reg, _ = REGS[name]
    h_u = expected_max_entropy(name, n)
    assert abs(torch_reg.max_entropy(n) - h_u) <= PROPERTY_ATOL
    assert abs(ref_reg.max_entropy(n) - h_u) <= PROPERTY_ATOL
    u = np.full(n, 1.0 / n)
    assert abs(float(ref_reg.entropy(u)) - h_u) <= PROPERTY_ATOL
    assert abs(float(torch_reg.entropy(torch.from_numpy(u))) - h_u) <= PROPERTY_ATOL
    vertex = np.eye(n)[0]
    assert abs(float(ref_reg.entropy(vertex))) <= PROPERTY_ATOL
    assert abs(float(torch_reg.entropy(torch.from_numpy(vertex)))) <= PROPERTY_ATOL


@pytest.mark.parametrize("name", REG_NAMES)
def test_entropy_between_zero_and_uniform_value(name):
    torch_reg, ref_reg, _ = REGS[name]
    for seed in range(10):
        p = random_simplex(8, seed, sparse=bool(seed % 2))
        h = float(ref_reg.entropy(p))
        assert -PROPERTY_ATOL <= h <= ref_reg.max_entropy(8) + PROPERTY_ATOL
        assert abs(float(torch_reg.entropy(torch.from_numpy(p))) - h) <= REFERENCE_ATOL


def test_norm_entropy_uses_the_gamma_norm():
    """H_γ(p) = 1 − ‖p‖_γ, not 1 − ‖p‖_2 (math.md §12, item 1)."""
    p = random_simplex(6, 3)
    for gamma in (1.5, 3.0, 5.0, math.inf):
        expected = 1.0 - np.linalg.norm(p, ord=gamma)
        assert abs(float(ref.NormEntropy(gamma).entropy(p)) - expected) <= PROPERTY_ATOL
        assert abs(float(hfy.NormEntropy(gamma).entropy(torch.from_numpy(p))) - expected) <= PROPERTY_ATOL


def test_reference_omega_is_infinite_off_the_simplex():
    for _, _, ref_reg, _ in _regularizers():
        assert ref_reg.omega(np.array([0.5, 0.6])) == np.inf
        assert ref_reg.omega(np.array([1.2, -0.2])) == np.inf


# --- conjugates -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", REG_NAMES)
@settings(max_examples=20, deadline=None)
@given(theta=scores())
def test_conjugate_sandwich(name, theta):
    """max θ <= Ω*(θ) <= max θ + H(u) (math.md eq. 2.1), over the unmasked entries."""
    torch_reg, ref_reg, _ = REGS[name]
    top = theta.max()
    h_u = ref_reg.max_entropy(int(np.isfinite(theta).sum()))
    slack = PROPERTY_ATOL * (1 + abs(top))
    for value in (float(ref_reg.conjugate(theta)), float(torch_reg.conjugate(torch.from_numpy(theta)))):
        assert top - slack <= value <= top + h_u + slack


@pytest.mark.parametrize("name", REG_NAMES)
@settings(max_examples=15, deadline=None)
@given(theta=scores(), shift=st.sampled_from([-1e3, -2.5, 0.75, 1e3]))
def test_conjugate_shifts_with_the_scores(name, theta, shift):
    torch_reg, ref_reg, _ = REGS[name]
    slack = PROPERTY_ATOL * (1 + abs(shift))
    assert abs(float(ref_reg.conjugate(theta + shift)) - float(ref_reg.conjugate(theta)) - shift) <= slack
    t = torch.from_numpy(theta)
    assert abs(float(torch_reg.conjugate(t + shift)) - float(torch_reg.conjugate(t)) - shift) <= slack


@settings(max_examples=30, deadline=None)
@given(theta=scores())
def test_shannon_conjugate_closed_form(theta):
    generic = float(ref.Shannon().conjugate(theta))
    assert abs(float(ref.Shannon().conjugate_closed_form(theta)) - generic) <= PROPERTY_ATOL * (1 + abs(generic))
    t = torch.from_numpy(theta)
    assert abs(float(hfy.Shannon().conjugate_closed_form(t)) - generic) <= PROPERTY_ATOL * (1 + abs(generic))
    assert abs(float(hfy.Shannon().conjugate(t)) - generic) <= PROPERTY_ATOL * (1 + abs(generic))


@pytest.mark.parametrize("gamma", GAMMAS)
@settings(max_examples=20, deadline=None)
@given(theta=scores())
def test_norm_conjugate_closed_form(gamma, theta):
    """Ω*(θ) = max θ + 1 + τ (τ of the max-shifted scores)."""
    generic = float(ref.NormEntropy(gamma).conjugate(theta))
    closed = float(ref.NormEntropy(gamma).conjugate_closed_form(theta))
    assert abs(closed - generic) <= PROPERTY_ATOL * (1 + abs(generic))
    assert abs(float(hfy.NormEntropy(gamma).conjugate(torch.from_numpy(theta))) - generic) <= PROPERTY_ATOL * (
        1 + abs(generic))


@pytest.mark.parametrize("alpha", [a for a in ALPHAS if a != 1.001])
@settings(max_examples=20, deadline=None)
@given(theta=scores(masks=False))
def test_tsallis_conjugate_closed_form(alpha, theta):
    """Ω*(θ) = Σ p^α / α + τ/(α − 1) + 1/(α(α − 1)), τ the threshold on the (α − 1)θ scale.

    (At α = 1.001 the closed form subtracts terms of size 1/(α − 1) = 1000 and loses
    digits; the generic form is the accurate one there.)
    """
    p = ref.entmax(theta, alpha)
    on = p > 0
    tau = float(np.mean((alpha - 1.0) * theta[on] - p[on] ** (alpha - 1.0)))
    closed = np.sum(p**alpha) / alpha + tau / (alpha - 1.0) + 1.0 / (alpha * (alpha - 1.0))
    generic = float(ref.Tsallis(alpha).conjugate(theta))
    assert abs(closed - generic) <= PROPERTY_ATOL * (1 + abs(generic))


@pytest.mark.parametrize("name", REG_NAMES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_oracle_conjugate_agrees_with_reference(name, seed):
    """The optimal value of the convex program is Ω*(θ) (the value is accurate to the duality gap)."""
    _, ref_reg, oracle_reg = REGS[name]
    theta = random_scores((5,), [0.5, 1.0, 3.0][seed], seed)
    assert abs(float(oracle_reg.conjugate(theta)) - float(ref_reg.conjugate(theta))) <= ORACLE_VALUE_ATOL


@pytest.mark.parametrize("name", REG_NAMES)
def test_danskin_gradient_of_conjugate_is_the_prediction(name):
    torch_reg, ref_reg, _ = REGS[name]
    theta = random_scores((4, 7), 1.0, 5)
    t = torch.from_numpy(theta).requires_grad_()
    (grad,) = torch.autograd.grad(torch_reg.conjugate(t).sum(), t)
    np.testing.assert_allclose(grad.numpy(), ref_reg.predict(theta), rtol=0, atol=REFERENCE_ATOL)
    # the reference conjugate, differenced numerically
    row = theta[0]
    fd = np.array([(float(ref_reg.conjugate(row + FD_STEP * e)) - float(ref_reg.conjugate(row - FD_STEP * e)))
                   / (2 * FD_STEP) for e in np.eye(row.size)])
    np.testing.assert_allclose(fd, ref_reg.predict(row), rtol=0, atol=FD_ATOL)


def test_shannon_closed_form_gradient_is_softmax():
    t = torch.from_numpy(random_scores((3, 6), 2.0, 1)).requires_grad_()
    (grad,) = torch.autograd.grad(hfy.Shannon().conjugate_closed_form(t).sum(), t)
    torch.testing.assert_close(grad, hfy.softmax(t.detach()), rtol=0, atol=REFERENCE_ATOL)


@pytest.mark.parametrize("name", REG_NAMES)
def test_conjugate_gradcheck(name):
    torch_reg = REGS[name][0]
    t = torch.from_numpy(random_scores((3, 6), 1.0, 7)).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: torch_reg.conjugate(x), (t,), **GRADCHECK)


@pytest.mark.parametrize("name", REG_NAMES)
def test_conjugate_gradgradcheck(name):
    """The Hessian of Ω* is the Jacobian of the prediction map."""
    torch_reg = REGS[name][0]
    t = torch.from_numpy(random_scores((3, 6), 1.0, 8)).requires_grad_()
    assert torch.autograd.gradgradcheck(lambda x: torch_reg.conjugate(x), (t,), **GRADCHECK)


def test_conjugate_along_dim_0():
    reg = hfy.Tsallis(1.5)
    theta = torch.from_numpy(random_scores((6, 3), 1.0, 9))
    torch.testing.assert_close(reg.conjugate(theta, dim=0), reg.conjugate(theta.T, dim=-1), rtol=0,
                               atol=REFERENCE_ATOL)


# --- Fenchel-Young losses --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", REG_NAMES)
@settings(max_examples=20, deadline=None)
@given(theta=scores(min_n=2, masks=False), seed=st.integers(0, 2**31 - 1))
def test_loss_nonnegative_zero_at_prediction_positive_elsewhere(name, theta, seed):
    torch_reg, ref_reg, _ = REGS[name]
    t = torch.from_numpy(theta)
    y = random_simplex(theta.size, seed, sparse=bool(seed % 2))
    loss = float(torch_reg.loss(t, torch.from_numpy(y)))
    assert loss >= -PROPERTY_ATOL
    assert abs(loss - float(ref_reg.loss(theta, y))) <= REFERENCE_ATOL * (1 + abs(loss))
    # zero exactly at the prediction
    y_hat = torch_reg.predict(t)
    assert abs(float(torch_reg.loss(t, y_hat))) <= PROPERTY_ATOL
    # the lowest-scoring vertex: L(θ; e_k) >= max θ − θ_k by the conjugate sandwich
    k = int(np.argmin(theta))
    vertex = torch.from_numpy(np.eye(theta.size)[k])
    assert float(torch_reg.loss(t, vertex)) >= theta.max() - theta[k] - PROPERTY_ATOL


@pytest.mark.parametrize("name", ["shannon", "tsallis-1.001", "tsallis-1.25", "tsallis-1.5", "tsallis-1.7",
                                  "tsallis-2.0"])
@settings(max_examples=20, deadline=None)
@given(theta=scores(min_n=2, masks=False), seed=st.integers(0, 2**31 - 1))
def test_loss_strong_convexity_bound(name, theta, seed):
    """For α <= 2 (and Shannon) Ω is 1-strongly convex on the simplex: L(θ; y) >= ½‖y − ŷ(θ)‖²."""
    torch_reg = REGS[name][0]
    t = torch.from_numpy(theta)
    y = torch.from_numpy(random_simplex(theta.size, seed))
    bound = 0.5 * float(((y - torch_reg.predict(t)) ** 2).sum())
    assert float(torch_reg.loss(t, y)) >= bound - PROPERTY_ATOL


@pytest.mark.parametrize("name", REG_NAMES)
def test_oracle_loss_agrees_with_reference(name):
    _, ref_reg, oracle_reg = REGS[name]
    theta = random_scores((2, 5), 1.0, 3)
    y = np.stack([random_simplex(5, 1, sparse=True), random_simplex(5, 2)])
    np.testing.assert_allclose(oracle_reg.loss(theta, y), ref_reg.loss(theta, y), rtol=0,
                               atol=ORACLE_VALUE_ATOL)


@pytest.mark.parametrize("name", REG_NAMES)
def test_loss_gradient_is_prediction_minus_target(name):
    torch_reg, ref_reg, _ = REGS[name]
    theta = random_scores((4, 6), 1.0, 2)
    y = np.stack([random_simplex(6, s, sparse=bool(s % 2)) for s in range(4)])
    t = torch.from_numpy(theta).requires_grad_()
    (grad,) = torch.autograd.grad(torch_reg.loss(t, torch.from_numpy(y)).sum(), t)
    np.testing.assert_allclose(grad.numpy(), ref_reg.predict(theta) - y, rtol=0, atol=REFERENCE_ATOL)


@pytest.mark.parametrize("name", SMOOTH_REG_NAMES)
def test_loss_gradcheck_and_gradgradcheck(name):
    reg = REGS[name][0]
    t = torch.from_numpy(random_scores((3, 6), 1.0, 4)).requires_grad_()
    target = torch.tensor([0, 5, 2])
    probs = torch.from_numpy(np.stack([random_simplex(6, s, sparse=True) for s in range(3)]))
    for tgt in (target, probs):
        fn = lambda x, tgt=tgt: hfy.fenchel_young_loss(x, tgt, reg, reduction="none")  # noqa: E731
        assert torch.autograd.gradcheck(fn, (t,), **GRADCHECK)
        assert torch.autograd.gradgradcheck(fn, (t,), **GRADCHECK)


# --- loss ergonomics ------------------------------------------------------------------------------------


ERGONOMIC_REGS = ["shannon", "tsallis-1.5", "tsallis-2.0", "norm-2.0"]


@pytest.mark.parametrize("name", ERGONOMIC_REGS)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum", "elementwise_mean"])
def test_class_index_and_one_hot_targets_agree(name, reduction):
    reg = REGS[name][0]
    x = torch.from_numpy(random_scores((6, 5), 1.0, 1))
    target = torch.tensor([0, 1, 4, 2, 2, 3])
    one_hot = F.one_hot(target, 5).double()
    torch.testing.assert_close(hfy.fenchel_young_loss(x, target, reg, reduction=reduction),
                               hfy.fenchel_young_loss(x, one_hot, reg, reduction=reduction), rtol=0,
                               atol=REFERENCE_ATOL)


@pytest.mark.parametrize("name", ERGONOMIC_REGS)
def test_reductions(name):
    reg = REGS[name][0]
    x = torch.from_numpy(random_scores((6, 5), 1.0, 2))
    target = torch.tensor([0, 1, 4, 2, 2, 3])
    none = hfy.fenchel_young_loss(x, target, reg, reduction="none")
    assert none.shape == (6,)
    torch.testing.assert_close(none, reg.loss(x, F.one_hot(target, 5).double()), rtol=0, atol=REFERENCE_ATOL)
    torch.testing.assert_close(hfy.fenchel_young_loss(x, target, reg, reduction="sum"), none.sum(), rtol=0,
                               atol=REFERENCE_ATOL)
    torch.testing.assert_close(hfy.fenchel_young_loss(x, target, reg, reduction="mean"), none.mean(), rtol=0,
                               atol=REFERENCE_ATOL)
    torch.testing.assert_close(hfy.fenchel_young_loss(x, target, reg, reduction="elementwise_mean"), none.mean(),
                               rtol=0, atol=REFERENCE_ATOL)
    torch.testing.assert_close(hfy.fenchel_young_loss(x, target, reg), none.mean(), rtol=0, atol=REFERENCE_ATOL)


@pytest.mark.parametrize("name", ERGONOMIC_REGS)
@pytest.mark.parametrize("ignore_index", [-100, 3])
def test_ignore_index_rows_are_excluded(name, ignore_index):
    reg = REGS[name][0]
    x = torch.from_numpy(random_scores((6, 5), 1.0, 3)).requires_grad_()
    target = torch.tensor([0, ignore_index, 4, ignore_index, 2, 1])
    keep = target != ignore_index
    none = hfy.fenchel_young_loss(x, target, reg, reduction="none", ignore_index=ignore_index)
    assert (none[~keep] == 0).all()
    kept = hfy.fenchel_young_loss(x[keep], target[keep], reg, reduction="none", ignore_index=ignore_index)
    torch.testing.assert_close(none[keep], kept, rtol=0, atol=REFERENCE_ATOL)
    mean = hfy.fenchel_young_loss(x, target, reg, reduction="mean", ignore_index=ignore_index)
    torch.testing.assert_close(mean, kept.mean(), rtol=0, atol=REFERENCE_ATOL)
    (grad,) = torch.autograd.grad(mean, x)
    assert (grad[~keep] == 0).all()


def test_all_rows_ignored_gives_zero_mean_not_nan():
    x = torch.from_numpy(random_scores((3, 4), 1.0, 4))
    target = torch.full((3,), -100)
    loss = hfy.fenchel_young_loss(x, target, hfy.Tsallis(1.5))
    assert loss.item() == 0.0


@pytest.mark.parametrize("name", ERGONOMIC_REGS)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_class_dimension_one_on_3d_input(name, reduction):
    """(B, C, L) scores with classes along dim 1, as in CrossEntropyLoss."""
    reg = REGS[name][0]
    x = torch.from_numpy(random_scores((4, 5, 3), 1.0, 5))
    target = torch.tensor([[0, 1, 4], [2, 2, -100], [3, 0, 1], [4, 4, 4]])
    loss = hfy.fenchel_young_loss(x, target, reg, dim=1, reduction=reduction)
    moved = hfy.fenchel_young_loss(x.movedim(1, -1), target, reg, dim=-1, reduction=reduction)
    torch.testing.assert_close(loss, moved, rtol=0, atol=REFERENCE_ATOL)
    if reduction == "none":
        assert loss.shape == target.shape


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("shape,dim", [((6, 5), -1), ((4, 5, 3), 1), ((2, 5, 3, 2), 1)])
def test_shannon_loss_is_cross_entropy(reduction, shape, dim):
    x = torch.from_numpy(random_scores(shape, 2.0, 6))
    target_shape = shape[:1] + shape[2:] if dim == 1 else shape[:-1]
    target = torch.from_numpy(np.random.default_rng(0).integers(0, 5, size=target_shape))
    target.view(-1)[1] = -100
    expected = F.cross_entropy(x, target, reduction=reduction, ignore_index=-100)
    loss = hfy.fenchel_young_loss(x, target, hfy.Shannon(), dim=dim, reduction=reduction)
    torch.testing.assert_close(loss, expected, rtol=0, atol=REFERENCE_ATOL)


def test_shannon_loss_with_probability_targets_is_cross_entropy_minus_entropy():
    x = torch.from_numpy(random_scores((5, 6), 1.0, 7))
    y = torch.from_numpy(np.stack([random_simplex(6, s) for s in range(5)]))
    expected = F.cross_entropy(x, y, reduction="none") + (y * y.log()).sum(-1)
    torch.testing.assert_close(hfy.fenchel_young_loss(x, y, hfy.Shannon(), reduction="none"), expected, rtol=0,
                               atol=REFERENCE_ATOL)


@pytest.mark.parametrize("name", ERGONOMIC_REGS)
def test_gradient_of_reduced_loss_is_prediction_minus_one_hot(name):
    reg = REGS[name][0]
    x = torch.from_numpy(random_scores((5, 4, 3), 1.0, 8)).requires_grad_()
    target = torch.from_numpy(np.random.default_rng(1).integers(0, 4, size=(5, 3)))
    (grad,) = torch.autograd.grad(hfy.fenchel_young_loss(x, target, reg, dim=1, reduction="sum"), x)
    expected = reg.predict(x.detach(), dim=1) - F.one_hot(target, 4).movedim(-1, 1).double()
    torch.testing.assert_close(grad, expected, rtol=0, atol=REFERENCE_ATOL)
    (grad_mean,) = torch.autograd.grad(hfy.fenchel_young_loss(x, target, reg, dim=1, reduction="mean"), x)
    torch.testing.assert_close(grad_mean, expected / target.numel(), rtol=0, atol=REFERENCE_ATOL)


@pytest.mark.parametrize("name", ERGONOMIC_REGS)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_loss_module_equals_function(name, reduction):
    reg = REGS[name][0]
    x = torch.from_numpy(random_scores((4, 5, 3), 1.0, 9))
    target = torch.tensor([[0, 1, 4], [2, 3, 3], [3, 0, 1], [4, 4, 4]])
    module = hfy.FenchelYoungLoss(reg, dim=1, reduction=reduction, ignore_index=3)
    torch.testing.assert_close(module(x, target),
                               hfy.fenchel_young_loss(x, target, reg, 1, reduction, ignore_index=3), rtol=0, atol=0)


def test_named_losses_equal_the_generic_loss():
    x = torch.from_numpy(random_scores((6, 5), 1.0, 10))
    target = torch.tensor([0, 1, 4, 2, 2, 3])
    cases = [
        (hfy.sparsemax_loss(x, target), hfy.Tsallis(2.0)),
        (hfy.entmax15_loss(x, target), hfy.Tsallis(1.5)),
        (hfy.entmax_bisect_loss(x, target, 1.3), hfy.Tsallis(1.3)),
        (hfy.sparsemax_bisect_loss(x, target), hfy.Tsallis(2.0)),
        (hfy.entmax_loss(x, target, 1.7), hfy.Tsallis(1.7)),
        (hfy.normmax_bisect_loss(x, target, 3.0), hfy.NormEntropy(3.0)),
        (hfy.normmax_loss(x, target, 5.0), hfy.NormEntropy(5.0)),
    ]
    for loss, reg in cases:  # the drop-in functions are per-example by default, like the entmax package
        torch.testing.assert_close(loss, hfy.fenchel_young_loss(x, target, reg, reduction="none"), rtol=0,
                                   atol=REFERENCE_ATOL)


@pytest.mark.parametrize("reduction", ["elementwise_mean", "mean", "sum", "none"])
def test_loss_modules_equal_the_generic_loss(reduction):
    x = torch.from_numpy(random_scores((4, 5, 3), 1.0, 11))
    target = torch.tensor([[0, 1, 4], [2, 3, 3], [3, 0, 1], [4, 4, 4]])
    kw = dict(dim=1, ignore_index=4, reduction=reduction)
    modules = [
        (hfy.SparsemaxLoss(**kw), hfy.Tsallis(2.0)),
        (hfy.Entmax15Loss(**kw), hfy.Tsallis(1.5)),
        (hfy.EntmaxBisectLoss(1.3, **kw), hfy.Tsallis(1.3)),
        (hfy.SparsemaxBisectLoss(**kw), hfy.Tsallis(2.0)),
        (hfy.NormmaxBisectLoss(3.0, **kw), hfy.NormEntropy(3.0)),
    ]
    for module, reg in modules:
        expected = hfy.fenchel_young_loss(x, target, reg, **kw)
        torch.testing.assert_close(module(x, target), expected, rtol=0, atol=REFERENCE_ATOL)


def test_loss_modules_average_by_default():
    x = torch.from_numpy(random_scores((6, 5), 1.0, 10))
    target = torch.tensor([0, 1, 4, 2, 2, 3])
    for module, reg in [(hfy.SparsemaxLoss(), hfy.Tsallis(2.0)), (hfy.Entmax15Loss(), hfy.Tsallis(1.5)),
                        (hfy.EntmaxBisectLoss(), hfy.Tsallis(1.5)), (hfy.SparsemaxBisectLoss(), hfy.Tsallis(2.0)),
                        (hfy.NormmaxBisectLoss(), hfy.NormEntropy(2.0)),
                        (hfy.FenchelYoungLoss(hfy.Shannon()), hfy.Shannon())]:
        expected = hfy.fenchel_young_loss(x, target, reg, reduction="none").mean()
        torch.testing.assert_close(module(x, target), expected, rtol=0, atol=REFERENCE_ATOL)
