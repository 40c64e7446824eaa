"""Robustness of every map: the adversarial battery, masks, dtypes (CPU and CUDA), shapes and
dims, non-contiguous inputs, batching, and clear errors for bad arguments."""

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
    PROPERTY_ATOL,
    REFERENCE_ATOL,
    adversarial_scores,
    dtype_atol,
    random_scores,
)

ALPHAS = [1.001, 1.25, 1.5, 1.7, 2.5, 3.0, 10.0, 100.0]
GAMMAS = [1.1, 1.5, 2.0, 3.0, 5.0, 10.0, math.inf]

#: name -> (torch map, reference map), both taking (scores, dim).
MAPS = {
    "softmax": (lambda x, d=-1: hfy.softmax(x, d), lambda z, d=-1: ref.softmax(z, d)),
    "sparsemax": (lambda x, d=-1: hfy.sparsemax(x, d), lambda z, d=-1: ref.sparsemax(z, d)),
    **{f"entmax-{a}": (lambda x, d=-1, a=a: hfy.entmax(x, a, d), lambda z, d=-1, a=a: ref.entmax(z, a, d))
       for a in ALPHAS},
    **{f"normmax-{g}": (lambda x, d=-1, g=g: hfy.normmax(x, g, d), lambda z, d=-1, g=g: ref.normmax(z, g, d))
       for g in GAMMAS},
}
MAP_NAMES = list(MAPS)
ADVERSARIAL = dict(adversarial_scores())
CPU_DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]

cuda = pytest.mark.cuda
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def fast(name):
    return MAPS[name][0]


def slow(name):
    return MAPS[name][1]


def assert_probabilities(p: torch.Tensor, dim: int = -1):
    assert torch.isfinite(p).all(), "non-finite output"
    assert (p >= 0).all()
    sums = p.double().sum(dim)
    assert ((sums - 1).abs() <= dtype_atol(p.dtype) + PROPERTY_ATOL).all(), sums


# --- the adversarial battery -------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(ADVERSARIAL))
@pytest.mark.parametrize("name", MAP_NAMES)
def test_adversarial_float64_matches_reference(name, case):
    z = ADVERSARIAL[case]
    p = fast(name)(torch.from_numpy(z))
    assert_probabilities(p)
    np.testing.assert_allclose(p.numpy(), slow(name)(z), rtol=0, atol=REFERENCE_ATOL)


@pytest.mark.parametrize("case", list(ADVERSARIAL))
@pytest.mark.parametrize("name", MAP_NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_adversarial_low_precision_matches_float64(name, case, dtype):
    """Compare with float64 on the same (rounded) scores; fp16 cannot hold 1e30 and must say so."""
    x = torch.from_numpy(ADVERSARIAL[case]).to(dtype)
    if torch.isposinf(x).any():
        with pytest.raises(ValueError, match="inf"):
            fast(name)(x)
        return
    p = fast(name)(x)
    assert p.dtype == dtype
    assert_probabilities(p)
    expected = fast(name)(x.double())
    assert (p.double() - expected).abs().max().item() <= dtype_atol(dtype)


@pytest.mark.parametrize("name", MAP_NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_huge_scores_keep_their_order(name, dtype):
    """±1e30: the top entry takes everything, nothing overflows."""
    x = torch.tensor([1e30, -1e30, 0.0, 5.0], dtype=dtype)
    p = fast(name)(x)
    assert_probabilities(p)
    assert p[0] == 1 and (p[1:] == 0).all()


@pytest.mark.parametrize("name", MAP_NAMES)
def test_ties_share_mass_equally(name):
    x = torch.tensor([2.0, 2.0, 1.0, -1.0, 2.0], dtype=torch.float64)
    p = fast(name)(x)
    assert_probabilities(p)
    assert (p[[0, 1, 4]] - p[0]).abs().max() <= PROPERTY_ATOL
    assert p[0] >= p[2] >= p[3]


@pytest.mark.parametrize("name", MAP_NAMES)
@pytest.mark.parametrize("dtype", CPU_DTYPES, ids=str)
def test_single_entry_is_one(name, dtype):
    for value in (0.3, -1e4, 1e4):
        assert fast(name)(torch.tensor([value], dtype=dtype)).tolist() == [1.0]
    assert fast(name)(torch.full((3, 1), 2.0, dtype=dtype)).tolist() == [[1.0], [1.0], [1.0]]


@pytest.mark.parametrize("name", MAP_NAMES)
@pytest.mark.parametrize("n", [2, 3, 5, 16, 100])
@pytest.mark.parametrize("dtype", CPU_DTYPES, ids=str)
def test_constant_rows_are_uniform(name, n, dtype):
    for value in (0.0, -7.5, 1e4):
        p = fast(name)(torch.full((2, n), value, dtype=dtype))
        assert (p.double() - 1.0 / n).abs().max().item() <= dtype_atol(dtype) + PROPERTY_ATOL


# --- masks ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MAP_NAMES)
def test_one_masked_entry_is_dropped(name):
    z = random_scores((5,), 1.0, 3)
    masked = z.copy()
    masked[2] = -np.inf
    p = fast(name)(torch.from_numpy(masked))
    assert p[2] == 0
    expected = fast(name)(torch.from_numpy(np.delete(z, 2)))
    torch.testing.assert_close(torch.cat([p[:2], p[3:]]), expected, rtol=0, atol=PROPERTY_ATOL)


@pytest.mark.parametrize("name", MAP_NAMES)
@pytest.mark.parametrize("dtype", CPU_DTYPES, ids=str)
def test_all_but_one_masked_is_exactly_one_hot(name, dtype):
    x = torch.tensor([[-math.inf, -math.inf, 0.7, -math.inf], [-math.inf, -1e4, -math.inf, -math.inf]],
                     dtype=dtype)
    p = fast(name)(x)
    assert p.tolist() == [[0.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.0]]


@pytest.mark.parametrize("name", MAP_NAMES)
@pytest.mark.parametrize("dtype", CPU_DTYPES, ids=str)
def test_all_masked_row_is_zero_with_zero_gradient(name, dtype):
    live = torch.from_numpy(random_scores((6,), 1.0, 4))
    x = torch.stack([live, torch.full((6,), -math.inf, dtype=torch.float64)]).to(dtype).requires_grad_()
    p = fast(name)(x)
    assert p.dtype == dtype
    assert (p[1] == 0).all() and not torch.isnan(p).any()
    assert_probabilities(p[:1])
    weights = torch.arange(6, dtype=dtype).expand(2, 6)
    (p * weights).sum().backward()
    assert torch.isfinite(x.grad).all()
    assert (x.grad[1] == 0).all()


@pytest.mark.parametrize("name", MAP_NAMES)
def test_masked_gradient_is_zero_and_live_gradient_matches_unmasked_problem(name):
    z = random_scores((6,), 1.0, 5)
    masked = torch.from_numpy(np.where(np.arange(6) % 3 == 1, -np.inf, z)).requires_grad_()
    small = torch.from_numpy(z[np.arange(6) % 3 != 1]).requires_grad_()
    w = torch.from_numpy(random_scores((6,), 1.0, 6))
    (fast(name)(masked) * w).sum().backward()
    (fast(name)(small) * w[np.arange(6) % 3 != 1]).sum().backward()
    assert (masked.grad[np.arange(6) % 3 == 1] == 0).all()
    torch.testing.assert_close(masked.grad[np.arange(6) % 3 != 1], small.grad, rtol=0, atol=REFERENCE_ATOL)


@pytest.mark.parametrize("name", ["softmax", "sparsemax", "entmax-1.5", "entmax-2.5", "normmax-2.0", "normmax-5.0"])
def test_gradcheck_with_masks(name):
    z = torch.from_numpy(random_scores((3, 6), 1.0, 7))
    mask = torch.tensor([[0, 1, 0, 0, 1, 0], [1, 1, 1, 1, 1, 0], [0, 0, 0, 0, 0, 0]], dtype=torch.bool)
    x = z.masked_fill(mask, -math.inf).requires_grad_()
    assert torch.autograd.gradcheck(fast(name), (x,), **GRADCHECK)


# --- batching: rows are independent ---------------------------------------------------------------------


@pytest.mark.parametrize("name", MAP_NAMES)
def test_batched_rows_equal_single_rows(name):
    """Adversarial rows padded with -inf to one length and batched: each row as if alone."""
    rows = [z for case, z in ADVERSARIAL.items() if case != "huge scale"]
    n = max(r.size for r in rows)
    batch = np.full((len(rows), n), -np.inf)
    for i, r in enumerate(rows):
        batch[i, : r.size] = r
    out = fast(name)(torch.from_numpy(batch))
    for i, r in enumerate(rows):
        alone = fast(name)(torch.from_numpy(r))
        torch.testing.assert_close(out[i, : r.size], alone, rtol=0, atol=REFERENCE_ATOL)
        assert (out[i, r.size:] == 0).all()


# --- α → 1⁺ and large α in low precision -----------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("alpha", [1.0 + 1e-9, 1.0 + 1e-6, 1.0 + 1e-4])
def test_alpha_near_one_in_low_precision(alpha, dtype):
    """Just above α = 1, low precision must not drift towards the uniform distribution
    (forming 1 + (α − 1)u in float32 rounds the scores away)."""
    x = torch.from_numpy(random_scores((8, 16), 2.0, 8)).to(dtype)
    out = hfy.entmax(x, alpha)
    assert (out.double() - hfy.entmax(x.double(), alpha)).abs().max().item() <= dtype_atol(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("alpha", [10.0, 100.0])
@pytest.mark.parametrize("scale", [0.1, 1.0, 5.0])
def test_large_alpha_in_low_precision(alpha, dtype, scale):
    """entmax #36: at α = 10 the package's float32 and float64 outputs differ by up to 0.14."""
    x = torch.from_numpy(random_scores((32, 16), scale, 9)).to(dtype)
    assert (hfy.entmax(x, alpha).double() - hfy.entmax(x.double(), alpha)).abs().max().item() <= dtype_atol(dtype)


# --- dtypes, shapes, dims, layouts ----------------------------------------------------------------------


@pytest.mark.parametrize("name", MAP_NAMES)
@pytest.mark.parametrize("dtype", CPU_DTYPES, ids=str)
def test_dtype_shape_and_gradient_dtype_are_preserved(name, dtype):
    x = torch.from_numpy(random_scores((3, 4, 5), 1.0, 10)).to(dtype).requires_grad_()
    p = fast(name)(x, 1)
    assert p.dtype == dtype and p.shape == x.shape and p.device == x.device
    assert_probabilities(p, dim=1)
    p.sum().backward()
    assert x.grad.dtype == dtype and torch.isfinite(x.grad).all()


def amplification(name: str) -> float:
    """How much the backward magnifies the relative rounding of the saved output p.

    The vector-Jacobian products weight entries by p^(2−α) (entmax) or p^(2−γ) (normmax),
    which turns a relative error δ of p into (|2 − α| or |2 − γ|) δ.
    """
    order = name.split("-")[-1] if "-" in name else "2"
    return 1.0 if order == "inf" else max(1.0, abs(2.0 - float(order)))


@pytest.mark.parametrize("name", MAP_NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_low_precision_gradient_matches_float64(name, dtype):
    x = torch.from_numpy(random_scores((4, 8), 1.0, 11))
    w = torch.from_numpy(random_scores((4, 8), 1.0, 12))
    grads = []
    for dt in (dtype, torch.float64):
        xi = x.to(dt).double().to(dt).requires_grad_()
        (fast(name)(xi) * w.to(dt)).sum().backward()
        grads.append(xi.grad.double())
    scale = (1.0 + grads[1].abs().max().item()) * amplification(name)
    assert (grads[0] - grads[1]).abs().max().item() <= dtype_atol(dtype) * scale


@pytest.mark.parametrize("name", MAP_NAMES)
@pytest.mark.parametrize("shape", [(7,), (3, 7), (2, 3, 7), (2, 2, 3, 5)], ids=str)
def test_every_dim_matches_reference(name, shape):
    z = random_scores(shape, 1.5, len(shape))
    for dim in list(range(len(shape))) + [-1, -len(shape)]:
        out = fast(name)(torch.from_numpy(z), dim)
        np.testing.assert_allclose(out.numpy(), slow(name)(z, dim), rtol=0, atol=REFERENCE_ATOL)
        assert_probabilities(out, dim)


@pytest.mark.parametrize("name", MAP_NAMES)
def test_non_contiguous_inputs(name):
    base = torch.from_numpy(random_scores((6, 10, 4), 1.0, 13))
    views = [base.transpose(0, 2), base[:, ::2, :], base[..., 1], base.permute(1, 2, 0),
             base[:, :1, :].expand(6, 5, 4)]
    for view in views:
        assert not view.is_contiguous()
        for dim in (0, 1, -1):
            x = view.detach().requires_grad_()
            y = view.contiguous().detach().requires_grad_()
            px, py = fast(name)(x, dim), fast(name)(y, dim)
            torch.testing.assert_close(px, py, rtol=0, atol=REFERENCE_ATOL)
            w = torch.linspace(-1, 1, px.numel(), dtype=torch.float64).view(px.shape)
            (px * w).sum().backward()
            (py * w).sum().backward()
            torch.testing.assert_close(x.grad, y.grad, rtol=0, atol=REFERENCE_ATOL)


def test_tensor_alpha_non_contiguous_and_dim_0():
    z = torch.from_numpy(random_scores((7, 3), 1.0, 14))
    alpha = torch.tensor([[1.2, 1.5, 2.0]], dtype=torch.float64)
    out = hfy.entmax(z, alpha, dim=0)
    for j, a in enumerate([1.2, 1.5, 2.0]):
        torch.testing.assert_close(out[:, j], hfy.entmax(z[:, j].contiguous(), a), rtol=0, atol=REFERENCE_ATOL)


# --- CUDA ----------------------------------------------------------------------------------------------


@cuda
@needs_cuda
@pytest.mark.parametrize("name", MAP_NAMES)
@pytest.mark.parametrize("dtype", CPU_DTYPES, ids=str)
def test_cuda_matches_cpu_float64(name, dtype):
    x = torch.from_numpy(random_scores((16, 33), 2.0, 15))
    x[3, 5:] = -math.inf
    x[4] = -math.inf
    xc = x.to(dtype).cuda().requires_grad_()
    p = fast(name)(xc)
    assert p.device.type == "cuda" and p.dtype == dtype
    expected = fast(name)(x.to(dtype).double())
    assert (p.double().cpu() - expected).abs().max().item() <= dtype_atol(dtype)
    (p * torch.linspace(-1, 1, 33, device="cuda", dtype=dtype)).sum().backward()
    assert torch.isfinite(xc.grad).all() and (xc.grad[4] == 0).all()


@cuda
@needs_cuda
@pytest.mark.parametrize("dtype", CPU_DTYPES, ids=str)
def test_cuda_adversarial_battery(dtype):
    for name in MAP_NAMES:
        for case, z in ADVERSARIAL.items():
            x = torch.from_numpy(z).to(dtype)
            if torch.isposinf(x).any():
                continue
            p = fast(name)(x.cuda())
            assert_probabilities(p)
            assert (p.double().cpu() - fast(name)(x.double())).abs().max().item() <= dtype_atol(dtype), (name, case)


@cuda
@needs_cuda
def test_cuda_alpha_gradient_and_losses():
    z = torch.from_numpy(random_scores((5, 6), 1.0, 16)).cuda().requires_grad_()
    alpha = torch.tensor([[1.0001], [1.2], [1.7], [2.5], [4.0]], dtype=torch.float64, device="cuda",
                         requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, a: hfy.entmax(x, a), (z, alpha), **GRADCHECK)
    target = torch.tensor([0, 1, 5, -100, 2], device="cuda")
    for reg in (hfy.Shannon(), hfy.Tsallis(1.5), hfy.NormEntropy(2.0)):
        loss = hfy.fenchel_young_loss(z, target, reg)
        expected = hfy.fenchel_young_loss(z.detach().cpu(), target.cpu(), reg)
        assert abs(loss.item() - expected.item()) <= REFERENCE_ATOL


# --- errors --------------------------------------------------------------------------------------------

X = torch.from_numpy(random_scores((4, 5), 1.0, 17))
TARGET = torch.tensor([0, 1, 2, 3])


ALPHA_CALLS = {
    "entmax": lambda a: hfy.entmax(X, a),
    "entmax_bisect": lambda a: hfy.entmax_bisect(X, a),
    "Tsallis": lambda a: hfy.Tsallis(a),
    "Entmax": lambda a: hfy.Entmax(a),
    "EntmaxBisect": lambda a: hfy.EntmaxBisect(a)(X),
    "entmax_loss": lambda a: hfy.entmax_loss(X, TARGET, a),
    "entmax_bisect_loss": lambda a: hfy.entmax_bisect_loss(X, TARGET, a),
    "EntmaxBisectLoss": lambda a: hfy.EntmaxBisectLoss(a),
    "reference.entmax": lambda a: ref.entmax(X.numpy(), a),
    "reference.Tsallis": lambda a: ref.Tsallis(a).predict(X.numpy()),
}


@pytest.mark.parametrize("call", list(ALPHA_CALLS))
@pytest.mark.parametrize("alpha", [0.5, -1.0, 0.999, float("nan"), float("inf")], ids=str)
def test_invalid_alpha_is_rejected(call, alpha):
    with pytest.raises(ValueError, match="`alpha`"):
        ALPHA_CALLS[call](alpha)


def test_learnable_alpha_init_must_exceed_one():
    for bad in (1.0, 0.5, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="alpha_init"):
            hfy.LearnableEntmax(bad)


@pytest.mark.parametrize("alpha", [0.5, float("nan"), float("inf")], ids=str)
def test_invalid_tensor_alpha_is_rejected(alpha):
    with pytest.raises(ValueError, match="alpha"):
        hfy.entmax(X, torch.tensor([[1.5], [alpha], [1.5], [1.5]], dtype=torch.float64))


def test_oracle_rejects_invalid_alpha_without_solving():
    with pytest.raises(ValueError, match="alpha"):
        oracle.entmax(X.numpy(), 0.5)
    with pytest.raises(ValueError, match="gamma"):
        oracle.NormEntropy(1.0)


def test_tensor_alpha_must_have_size_one_along_dim():
    with pytest.raises(ValueError, match="alpha"):
        hfy.entmax(X, torch.full((4, 5), 1.5, dtype=torch.float64))
    with pytest.raises(ValueError, match="alpha"):
        hfy.entmax(X, torch.full((5,), 1.5, dtype=torch.float64))
    with pytest.raises(ValueError, match="alpha"):
        hfy.entmax(X, torch.full((4, 1), 1.5, dtype=torch.float64), dim=0)
    with pytest.raises(ValueError, match="alpha"):
        hfy.entmax(X, torch.full((3, 1), 1.5, dtype=torch.float64))  # does not broadcast


def test_integer_alpha_tensor_is_a_type_error():
    with pytest.raises(TypeError, match="alpha"):
        hfy.entmax(X, torch.tensor([[2]] * 4))


GAMMA_CALLS = {  # (call, the argument name the message must use)
    "normmax": (lambda g: hfy.normmax(X, g), "alpha"),
    "normmax_bisect": (lambda g: hfy.normmax_bisect(X, g), "alpha"),
    "Normmax": (lambda g: hfy.Normmax(g), "alpha"),
    "reference.normmax": (lambda g: ref.normmax(X.numpy(), g), "alpha"),
    "normmax_loss": (lambda g: hfy.normmax_loss(X, TARGET, g), "alpha"),
    "normmax_bisect_loss": (lambda g: hfy.normmax_bisect_loss(X, TARGET, g), "alpha"),
    "NormmaxBisectLoss": (lambda g: hfy.NormmaxBisectLoss(g), "alpha"),
    "NormEntropy": (lambda g: hfy.NormEntropy(g), "gamma"),
    "reference.NormEntropy": (lambda g: ref.NormEntropy(g), "gamma"),
}


@pytest.mark.parametrize("call", list(GAMMA_CALLS))
@pytest.mark.parametrize("gamma", [1.0, 0.5, -2.0, float("nan")], ids=str)
def test_invalid_gamma_is_rejected(call, gamma):
    """γ-normmax is called with ``alpha=`` (entmax naming) and NormEntropy with ``gamma=``."""
    fn, argument = GAMMA_CALLS[call]
    with pytest.raises(ValueError, match=f"`{argument}`"):
        fn(gamma)


@pytest.mark.parametrize("name", MAP_NAMES)
def test_empty_dimension_is_rejected(name):
    with pytest.raises(ValueError, match="empty"):
        fast(name)(torch.zeros(3, 0, dtype=torch.float64))
    with pytest.raises(ValueError, match="empty"):
        fast(name)(torch.zeros(0, 3, dtype=torch.float64), 0)
    with pytest.raises(ValueError, match="empty"):
        slow(name)(np.zeros((3, 0)))


EMPTY_BATCH_CALLS = {name: fast(name) for name in MAP_NAMES} | {
    "ksubsets": lambda z: hfy.ksubsets(z, 2),
    "sequential_ksubsets": lambda z: hfy.sequential_ksubsets(z, 2, 0.1),
    "constrained_sparsemax": lambda z: hfy.constrained_sparsemax(z, torch.full_like(z, 0.5)),
}


@pytest.mark.parametrize("name", list(EMPTY_BATCH_CALLS))
def test_an_empty_batch_gives_an_empty_output_and_gradient(name):
    z = torch.zeros(0, 6, dtype=torch.float64, requires_grad=True)
    out = EMPTY_BATCH_CALLS[name](z)
    assert out.shape == (0, 6)
    out.sum().backward()
    assert z.grad.shape == (0, 6)


@pytest.mark.parametrize("name", MAP_NAMES)
@pytest.mark.parametrize("bad,message", [(float("nan"), "NaN"), (float("inf"), r"\+inf")], ids=["nan", "+inf"])
def test_nan_and_positive_inf_scores_are_rejected(name, bad, message):
    x = X.clone()
    x[1, 2] = bad
    with pytest.raises(ValueError, match=message):
        fast(name)(x)
    with pytest.raises(ValueError, match=message):
        slow(name)(x.numpy())
    with pytest.raises(ValueError, match=message):
        fast(name)(x.float())


@pytest.mark.parametrize("name", MAP_NAMES)
def test_integer_scores_are_a_type_error(name):
    with pytest.raises(TypeError, match="floating"):
        fast(name)(torch.arange(5))
    with pytest.raises(TypeError, match="floating"):
        slow(name)(np.arange(5))


@pytest.mark.parametrize("name", MAP_NAMES)
def test_zero_dimensional_and_out_of_range_dim_are_rejected(name):
    with pytest.raises(ValueError, match="dimension"):
        fast(name)(torch.tensor(1.0, dtype=torch.float64))
    with pytest.raises(ValueError, match="dim"):
        fast(name)(X, 2)
    with pytest.raises(ValueError, match="dim"):
        slow(name)(X.numpy(), -3)


@pytest.mark.parametrize("n_iter", [0, -1])
def test_bad_n_iter_is_rejected(n_iter):
    for call in (lambda: hfy.entmax_bisect(X, 1.5, n_iter=n_iter), lambda: hfy.sparsemax_bisect(X, n_iter=n_iter),
                 lambda: hfy.normmax_bisect(X, 2.0, n_iter=n_iter),
                 lambda: hfy.entmax_bisect_loss(X, TARGET, 1.5, n_iter=n_iter),
                 lambda: hfy.normmax_bisect_loss(X, TARGET, 2.0, n_iter=n_iter),
                 lambda: hfy.EntmaxBisectLoss(1.5, n_iter=n_iter), lambda: hfy.NormEntropy(2.0, n_iter=n_iter)):
        with pytest.raises(ValueError, match="n_iter"):
            call()


@pytest.mark.parametrize("k", [0, -2, 1.5, True])
def test_bad_k_is_rejected(k):
    for call in (lambda: hfy.sparsemax(X, k=k), lambda: hfy.entmax15(X, k=k), lambda: hfy.Sparsemax(k=k),
                 lambda: hfy.sparsemax_loss(X, TARGET, k=k)):
        with pytest.raises(ValueError, match="k"):
            call()


def test_bad_reduction_is_rejected():
    for call in (lambda: hfy.fenchel_young_loss(X, TARGET, hfy.Shannon(), reduction="avg"),
                 lambda: hfy.FenchelYoungLoss(hfy.Shannon(), reduction="batchmean"),
                 lambda: hfy.SparsemaxLoss(reduction="max"), lambda: hfy.NormmaxBisectLoss(reduction="x"),
                 lambda: hfy.sparsemax_loss(X, TARGET, reduction="avg")):
        with pytest.raises(ValueError, match="reduction"):
            call()


def test_bad_targets_are_rejected():
    reg = hfy.Tsallis(1.5)
    with pytest.raises(ValueError, match="target"):
        hfy.fenchel_young_loss(X, TARGET[:3], reg)  # wrong class-index shape
    with pytest.raises(ValueError, match="target"):
        hfy.fenchel_young_loss(X, TARGET.view(4, 1), reg)
    with pytest.raises(ValueError, match="target"):
        hfy.fenchel_young_loss(X, torch.tensor([0, 1, 5, 2]), reg)  # class 5 of 5
    with pytest.raises(ValueError, match="target"):
        hfy.fenchel_young_loss(X, torch.tensor([0, -1, 2, 2]), reg)  # negative, not ignore_index
    with pytest.raises(ValueError, match="target"):
        hfy.fenchel_young_loss(X, torch.full((4, 4), 0.25, dtype=torch.float64), reg)  # wrong probability shape
    with pytest.raises(ValueError, match="target"):
        hfy.sparsemax_loss(X, torch.tensor([0, 1, 7, 2]))
    with pytest.raises(ValueError, match="y"):
        reg.loss(X, torch.full((4, 4), 0.25, dtype=torch.float64))
    with pytest.raises(ValueError, match="y"):
        ref.Tsallis(1.5).loss(X.numpy(), np.full((4, 4), 0.25))


def test_integer_loss_input_is_a_type_error():
    with pytest.raises(TypeError, match="input"):
        hfy.fenchel_young_loss(torch.arange(20).view(4, 5), TARGET, hfy.Shannon())
