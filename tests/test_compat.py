"""Drop-in compatibility with the ``entmax`` package: same names, same answers, fixed bugs,
at least the same accuracy, and honoured arguments.

Tolerance for hfy vs the package in float64: the package's bisection halves a
bracket of width <= 1 fifty times, so its threshold is within 2^-50 ≈ 9e-16 of
the root and its probabilities within a few 1e-14 of the exact map (measured
against ``hfy.reference``: at most 3e-14 on the inputs below).
``REFERENCE_ATOL`` (1e-10) is the smallest named tolerance above that.
"""

from __future__ import annotations

import subprocess
import sys

import entmax as entmax_pkg
import numpy as np
import pytest
import torch

import hfy
import hfy.reference as ref
from hfy.testing import REFERENCE_ATOL, dtype_atol, random_scores

PACKAGE_ATOL = REFERENCE_ATOL


def inputs():
    """Finite float64 scores: several scales, 2-D and 3-D, the map along different dims."""
    return [
        pytest.param(random_scores((16, 12), 0.3, 0), -1, id="(16,12)-scale0.3"),
        pytest.param(random_scores((16, 12), 1.0, 1), -1, id="(16,12)-scale1"),
        pytest.param(random_scores((16, 12), 5.0, 2), -1, id="(16,12)-scale5"),
        pytest.param(random_scores((3, 9, 4), 1.0, 3), 1, id="(3,9,4)-dim1"),
        pytest.param(random_scores((9, 5), 2.0, 4), 0, id="(9,5)-dim0"),
    ]


MAP_PAIRS = {
    "sparsemax": (lambda x, d: hfy.sparsemax(x, d), lambda x, d: entmax_pkg.sparsemax(x, d)),
    "entmax15": (lambda x, d: hfy.entmax15(x, d), lambda x, d: entmax_pkg.entmax15(x, d)),
    "sparsemax_bisect": (lambda x, d: hfy.sparsemax_bisect(x, d), lambda x, d: entmax_pkg.sparsemax_bisect(x, d)),
    **{
        f"entmax_bisect-{a}": (lambda x, d, a=a: hfy.entmax_bisect(x, a, d),
                               lambda x, d, a=a: entmax_pkg.entmax_bisect(x, a, d))
        for a in (1.1, 1.3, 1.5, 2.0, 2.5)
    },
    **{
        f"normmax_bisect-{g}": (lambda x, d, g=g: hfy.normmax_bisect(x, g, d),
                                lambda x, d, g=g: entmax_pkg.normmax_bisect(x, g, d))
        for g in (1.5, 2.0, 3.0, 5.0)
    },
}


# --- names ---------------------------------------------------------------------------------------------


def test_every_map_and_loss_name_of_the_package_exists():
    """Users switch by changing the import; the budget (k-subsets) maps belong to SparseMAP, not here."""
    public = [n for n in dir(entmax_pkg) if not n.startswith("_") and callable(getattr(entmax_pkg, n))]
    public = [n for n in public if "budget" not in n.lower()]
    missing = [n for n in public if not hasattr(hfy, n)]
    assert not missing, f"entmax names without an hfy drop-in: {missing}"


# --- same answers ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(MAP_PAIRS))
@pytest.mark.parametrize("z,dim", inputs())
def test_maps_agree_with_the_package(name, z, dim):
    ours, theirs = MAP_PAIRS[name]
    x = torch.from_numpy(z)
    torch.testing.assert_close(ours(x, dim), theirs(x, dim), rtol=0, atol=PACKAGE_ATOL)


@pytest.mark.parametrize("z,dim", inputs())
def test_modules_agree_with_the_package(z, dim):
    x = torch.from_numpy(z)
    pairs = [
        (hfy.Sparsemax(dim), entmax_pkg.Sparsemax(dim)),
        (hfy.Entmax15(dim), entmax_pkg.Entmax15(dim)),
        (hfy.EntmaxBisect(1.3, dim), entmax_pkg.EntmaxBisect(1.3, dim)),
        (hfy.NormmaxBisect(3.0, dim), entmax_pkg.NormmaxBisect(3.0, dim)),
    ]
    for ours, theirs in pairs:
        torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=PACKAGE_ATOL)


def test_sparsemax_bisect_module_agrees_with_the_package():
    x = torch.from_numpy(random_scores((6, 8), 1.0, 5))
    ours = getattr(hfy, "SparsemaxBisect")(dim=-1)
    torch.testing.assert_close(ours(x), entmax_pkg.SparsemaxBisect(dim=-1)(x), rtol=0, atol=PACKAGE_ATOL)


def test_per_row_alpha_agrees_with_the_package():
    x = torch.from_numpy(random_scores((4, 10), 1.0, 6))
    alpha = torch.tensor([[1.2], [1.5], [1.8], [2.0]], dtype=torch.float64)
    torch.testing.assert_close(hfy.entmax_bisect(x, alpha), entmax_pkg.entmax_bisect(x, alpha), rtol=0,
                               atol=PACKAGE_ATOL)


def test_k_is_accepted_as_a_hint():
    x = torch.from_numpy(random_scores((5, 20), 1.0, 7))
    torch.testing.assert_close(hfy.sparsemax(x, k=3), entmax_pkg.sparsemax(x, k=3), rtol=0, atol=PACKAGE_ATOL)
    torch.testing.assert_close(hfy.entmax15(x, k=3), entmax_pkg.entmax15(x, k=3), rtol=0, atol=PACKAGE_ATOL)


@pytest.mark.parametrize("alpha", [1.3, 1.5, 2.0])
def test_gradients_agree_with_the_package(alpha):
    z = random_scores((5, 8), 1.0, 8)
    weights = torch.from_numpy(random_scores((5, 8), 1.0, 9))
    grads = []
    for fn in (hfy.entmax_bisect, entmax_pkg.entmax_bisect):
        x = torch.from_numpy(z).requires_grad_()
        a = torch.full((5, 1), alpha, dtype=torch.float64, requires_grad=True)
        (fn(x, a) * weights).sum().backward()
        grads.append((x.grad, a.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=0, atol=PACKAGE_ATOL)
    torch.testing.assert_close(grads[0][1], grads[1][1], rtol=0, atol=PACKAGE_ATOL)


@pytest.mark.parametrize("gamma", [1.5, 2.0, 3.0])
def test_normmax_gradients_agree_with_the_package(gamma):
    z = random_scores((5, 8), 1.0, 10)
    weights = torch.from_numpy(random_scores((5, 8), 1.0, 11))
    grads = []
    for fn in (hfy.normmax_bisect, entmax_pkg.normmax_bisect):
        x = torch.from_numpy(z).requires_grad_()
        (fn(x, gamma) * weights).sum().backward()
        grads.append(x.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=PACKAGE_ATOL)


# --- losses ----------------------------------------------------------------------------------------------


LOSS_PAIRS = {
    "sparsemax_loss": (lambda x, t: hfy.sparsemax_loss(x, t), lambda x, t: entmax_pkg.sparsemax_loss(x, t)),
    "entmax15_loss": (lambda x, t: hfy.entmax15_loss(x, t), lambda x, t: entmax_pkg.entmax15_loss(x, t)),
    "sparsemax_bisect_loss": (lambda x, t: hfy.sparsemax_bisect_loss(x, t),
                              lambda x, t: entmax_pkg.sparsemax_bisect_loss(x, t)),
    **{
        f"entmax_bisect_loss-{a}": (lambda x, t, a=a: hfy.entmax_bisect_loss(x, t, a),
                                    lambda x, t, a=a: entmax_pkg.entmax_bisect_loss(x, t, a))
        for a in (1.3, 1.5, 1.8)
    },
    **{
        f"normmax_bisect_loss-{g}": (lambda x, t, g=g: hfy.normmax_bisect_loss(x, t, g),
                                     lambda x, t, g=g: entmax_pkg.normmax_bisect_loss(x, t, g))
        for g in (1.5, 2.0, 3.0)
    },
}


@pytest.mark.parametrize("name", list(LOSS_PAIRS))
@pytest.mark.parametrize("scale", [0.5, 2.0])
def test_losses_and_their_gradients_agree_with_the_package(name, scale):
    ours, theirs = LOSS_PAIRS[name]
    z = random_scores((8, 6), scale, 12)
    target = torch.tensor([0, 1, 5, 2, 2, 3, 4, 0])
    results = []
    for fn in (ours, theirs):
        x = torch.from_numpy(z).requires_grad_()
        loss = fn(x, target)
        loss.sum().backward()
        results.append((loss.detach(), x.grad))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=0, atol=PACKAGE_ATOL)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=0, atol=PACKAGE_ATOL)


@pytest.mark.parametrize("reduction", ["elementwise_mean", "sum", "none"])
def test_loss_modules_agree_with_the_package(reduction):
    x = torch.from_numpy(random_scores((8, 6), 1.0, 13))
    target = torch.tensor([0, 1, 5, 2, 2, 3, 4, 2])
    kw = dict(ignore_index=2, reduction=reduction)  # the package filters only non-negative ignore_index
    pairs = [
        (hfy.SparsemaxLoss(**kw), entmax_pkg.SparsemaxLoss(**kw)),
        (hfy.Entmax15Loss(**kw), entmax_pkg.Entmax15Loss(**kw)),
        (hfy.SparsemaxBisectLoss(**kw), entmax_pkg.SparsemaxBisectLoss(**kw)),
        (hfy.EntmaxBisectLoss(1.3, **kw), entmax_pkg.EntmaxBisectLoss(1.3, **kw)),
        (hfy.NormmaxBisectLoss(3.0, **kw), entmax_pkg.NormmaxBisectLoss(3.0, **kw)),
    ]
    for ours, theirs in pairs:
        torch.testing.assert_close(ours(x, target), theirs(x, target), rtol=0, atol=PACKAGE_ATOL)


# --- at least as accurate --------------------------------------------------------------------------------


ACCURACY_MAPS = {
    "entmax_bisect-1.3": (lambda x: hfy.entmax_bisect(x, 1.3), lambda x: entmax_pkg.entmax_bisect(x, 1.3),
                          lambda z: ref.entmax(z, 1.3)),
    "normmax_bisect-2": (lambda x: hfy.normmax_bisect(x, 2.0), lambda x: entmax_pkg.normmax_bisect(x, 2.0),
                         lambda z: ref.normmax(z, 2.0)),
    "normmax_bisect-5": (lambda x: hfy.normmax_bisect(x, 5.0), lambda x: entmax_pkg.normmax_bisect(x, 5.0),
                         lambda z: ref.normmax(z, 5.0)),
}
# (sparsemax and entmax15 are exact sort-based algorithms in the package, as in hfy.reference: both
# sides are then correct to rounding, which test_maps_agree_with_the_package covers.)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("name", list(ACCURACY_MAPS))
def test_at_least_as_accurate_as_the_package(name, dtype):
    """Max error against the float64 reference (on the same, rounded, scores) over 4 scales × 256 rows.

    The package's bisection stops after 50 halvings; hfy's root finder runs to convergence.
    """
    ours, theirs, exact = ACCURACY_MAPS[name]
    err_ours = err_theirs = 0.0
    for scale in (0.3, 1.0, 3.0, 10.0):
        x = torch.from_numpy(random_scores((256, 32), scale, 0)).to(dtype)
        expected = exact(x.double().numpy())
        err_ours = max(err_ours, np.abs(ours(x).double().numpy() - expected).max())
        err_theirs = max(err_theirs, np.abs(theirs(x).double().numpy() - expected).max())
    assert err_ours <= err_theirs, f"hfy {err_ours:.3e} > entmax {err_theirs:.3e}"


# --- bugs of the package that hfy fixes ------------------------------------------------------------------


def test_alpha_one_gives_softmax():
    """entmax_bisect(α = 1) is the uniform distribution in the package (entmax #23, #24)."""
    x = torch.from_numpy(random_scores((5, 7), 2.0, 14))
    softmax = torch.softmax(x, -1)
    torch.testing.assert_close(hfy.entmax_bisect(x, 1.0), softmax, rtol=0, atol=REFERENCE_ATOL)
    torch.testing.assert_close(hfy.EntmaxBisect(1.0)(x), softmax, rtol=0, atol=REFERENCE_ATOL)
    alpha = torch.tensor([[1.0], [1.0], [1.5], [1.0], [2.0]], dtype=torch.float64)
    out = hfy.entmax_bisect(x, alpha)
    torch.testing.assert_close(out[[0, 1, 3]], softmax[[0, 1, 3]], rtol=0, atol=REFERENCE_ATOL)
    torch.testing.assert_close(hfy.entmax_bisect_loss(x, torch.tensor([0, 1, 2, 3, 4]), 1.0),
                               torch.nn.functional.cross_entropy(x, torch.tensor([0, 1, 2, 3, 4]), reduction="none"),
                               rtol=0, atol=REFERENCE_ATOL)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("alpha", [1.1, 1.3, 1.5, 2.0])
def test_peaked_negative_input_in_half_precision(dtype, alpha):
    """[0, −5] − 1000: all-NaN from the package's bisection in bfloat16 (entmax #30)."""
    x = (torch.tensor([[0.0, -5.0], [0.0, -0.5]], dtype=torch.float64) - 1000.0).to(dtype)
    for out in (hfy.entmax_bisect(x, alpha), hfy.normmax_bisect(x, alpha + 0.5)):
        assert out.dtype == dtype and not torch.isnan(out).any()
    expected = hfy.entmax_bisect(x.double(), alpha)
    assert (hfy.entmax_bisect(x, alpha).double() - expected).abs().max().item() <= dtype_atol(dtype)
    expected = hfy.normmax_bisect(x.double(), alpha + 0.5)
    assert (hfy.normmax_bisect(x, alpha + 0.5).double() - expected).abs().max().item() <= dtype_atol(dtype)


def test_alpha_ten_float32_agrees_with_float64():
    """At α = 10 the package's float32 and float64 outputs differ by up to 0.14 (entmax #36)."""
    worst = 0.0
    for scale in (0.1, 1.0, 3.0):
        x = torch.from_numpy(random_scores((64, 16), scale, 15))
        worst = max(worst, (hfy.entmax_bisect(x.float(), 10.0).double()
                            - hfy.entmax_bisect(x.float().double(), 10.0)).abs().max().item())
    assert worst <= dtype_atol(torch.float32)


# --- every argument has an effect (math.md §12, item 6) -------------------------------------------------


def test_n_iter_is_honoured():
    x = torch.from_numpy(random_scores((4, 10), 1.0, 0))
    one = hfy.entmax_bisect(x, 1.3, n_iter=1)
    fifty = hfy.entmax_bisect(x, 1.3, n_iter=50)
    assert (one - fifty).abs().max().item() > REFERENCE_ATOL  # one step is not converged
    torch.testing.assert_close(fifty, hfy.entmax(x, 1.3), rtol=0, atol=REFERENCE_ATOL)
    torch.testing.assert_close(hfy.EntmaxBisect(1.3, n_iter=1)(x), one, rtol=0, atol=0)
    assert (hfy.sparsemax_bisect(x, n_iter=1) - hfy.sparsemax(x)).abs().max().item() > REFERENCE_ATOL
    torch.testing.assert_close(hfy.sparsemax_bisect(x, n_iter=50), hfy.sparsemax(x), rtol=0, atol=REFERENCE_ATOL)
    assert (hfy.normmax_bisect(x, 3.0, n_iter=1) - hfy.normmax(x, 3.0)).abs().max().item() > REFERENCE_ATOL
    torch.testing.assert_close(hfy.NormmaxBisect(3.0, n_iter=1)(x), hfy.normmax_bisect(x, 3.0, n_iter=1), rtol=0,
                               atol=0)
    target = torch.tensor([0, 3, 5, 9])
    assert (hfy.entmax_bisect_loss(x, target, 1.3, n_iter=1)
            - hfy.entmax_bisect_loss(x, target, 1.3, n_iter=50)).abs().max().item() > REFERENCE_ATOL


def test_ensure_sum_one_is_honoured():
    x = torch.from_numpy(random_scores((4, 10), 1.0, 0))
    for fn in (lambda **kw: hfy.entmax_bisect(x, 1.3, **kw), lambda **kw: hfy.sparsemax_bisect(x, **kw)):
        raw = fn(n_iter=1, ensure_sum_one=False)
        assert (raw.sum(-1) - 1).abs().max().item() > REFERENCE_ATOL
        normalised = fn(n_iter=1, ensure_sum_one=True)
        torch.testing.assert_close(normalised.sum(-1), torch.ones(4, dtype=torch.float64), rtol=0,
                                   atol=REFERENCE_ATOL)
        torch.testing.assert_close(normalised, raw / raw.sum(-1, keepdim=True), rtol=0, atol=REFERENCE_ATOL)


# --- import hygiene ------------------------------------------------------------------------------------


def test_import_does_not_load_cvxpy():
    code = ("import sys, hfy, hfy.reference, hfy.oracle, hfy.testing; "
            "print('cvxpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_public_names_are_exported():
    for name in hfy.__all__:
        assert hasattr(hfy, name), name
    assert isinstance(hfy.__version__, str) and hfy.__version__


def test_module_defaults_match_the_package():
    assert hfy.EntmaxBisect().alpha == entmax_pkg.EntmaxBisect().alpha
    assert hfy.NormmaxBisect().alpha == entmax_pkg.NormmaxBisect().alpha
    assert hfy.EntmaxBisect().n_iter == entmax_pkg.EntmaxBisect().n_iter
