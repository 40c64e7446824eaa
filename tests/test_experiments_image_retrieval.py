"""Smoke tests of the image-retrieval harness (experiment E4, ``hfy.experiments.image_retrieval``)."""

import pytest
import torch

import hfy
from hfy.experiments import image_retrieval as ir
from hfy.experiments._tidy import COLUMNS
from hfy.testing import REFERENCE_ATOL

pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def images():
    return ir.load_images("digits")


def test_load_images(images):
    assert images.shape == (1797, 8, 8) and images.dtype == torch.float64
    assert float(images.min()) >= -1 and float(images.max()) <= 1


def test_queries_follow_the_reference_rng_order(images):
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    memories, queries = ir.make_queries(images, 20, 0.7, seed=3)
    assert torch.equal(torch.rand(3), before)  # the caller's generator is untouched
    torch.manual_seed(3)
    idx = torch.randperm(images.shape[0])[:20]
    noise = torch.randn(20, 8, 8)
    expected = (images[idx] + 0.7 * noise.double()).clamp(-1, 1)
    expected[:, 4:, :] = 0
    assert torch.equal(memories, images[idx].reshape(20, 64))
    assert torch.equal(queries, expected.reshape(20, 64))
    with pytest.raises(ValueError):
        ir.make_queries(images, 0, 0.0, 0)


def test_settings_place_the_temperatures():
    beta, omega, psi = ir.settings(ir.METHODS["Classic HNs"], 0.1, "digits")
    assert beta == 1.0 and isinstance(omega, hfy.Quadratic) and psi.beta == 0.1
    beta, omega, psi = ir.settings(ir.METHODS["Exp DAM"], 1.0, "mnist_5k")
    assert beta == 0.05 and isinstance(omega, hfy.ExponentialDAM) and psi.beta == 1.0
    beta, omega, _ = ir.settings(ir.METHODS["10-Poly DAM"], 1.0, "digits")
    assert beta == 1.0 and omega.n == 11
    assert ir.settings(ir.METHODS["norm 2-entmax (β=20)"], 0.1, "digits")[0] == 20.0
    assert ir.settings(ir.METHODS["norm 2-entmax"], 0.1, "digits")[0] == 0.1


@pytest.mark.parametrize("label", ["Classic HNs", "10-Poly DAM", "Exp DAM"])
def test_tanh_models_match_the_scripts_updates(images, label):
    X, Q = ir.make_queries(images, 16, 0.5, seed=0)
    beta = 0.1
    q = Q.clone()
    for _ in range(ir.N_ITER):
        s = q @ X.T
        w = {"Classic HNs": s, "10-Poly DAM": s ** 10, "Exp DAM": torch.exp(ir.EXP_DAM_BETA_IN["digits"] * s)}[label]
        q = torch.tanh(beta * (w @ X))
    got, targets = ir.retrieve_images(X, Q, ir.METHODS[label], beta, "digits")
    assert torch.equal(targets, X)
    assert float((got - q).abs().max()) <= REFERENCE_ATOL


def test_normalising_models_retrieve_transformed_patterns_exactly(images):
    X, _ = ir.make_queries(images, 4, 0.0, seed=1)
    for label in ("lnorm 2-entmax", "norm 2-entmax (β=20)"):
        states, targets = ir.retrieve_images(X, X, ir.METHODS[label], 1.0, "digits")
        m = ir.retrieval_metrics(states, targets)
        assert m == {"success": 1.0, "index_accuracy": 1.0, "exact": 1.0}
    ln = hfy.LayerNorm()
    assert torch.allclose(ir.retrieve_images(X, X, ir.METHODS["lnorm 2-entmax"], 1.0)[1], ln.predict(X))


def test_metrics_and_zero_states():
    targets = torch.eye(3, dtype=torch.float64)
    states = torch.stack([targets[0], targets[0], torch.zeros(3, dtype=torch.float64)])
    m = ir.retrieval_metrics(states, targets)
    assert m["success"] == pytest.approx(1 / 3) and m["index_accuracy"] == pytest.approx(1 / 3)
    assert m["exact"] == pytest.approx(1 / 3)


def test_smoke_run_and_checks():
    rows = ir.run("smoke")
    assert all(tuple(r) == COLUMNS for r in rows)
    n_points = 3 + 2  # capacity N values + robustness σ values
    assert len(rows) == n_points * 2 * 2 * len(ir.METRICS)
    assert all(0.0 <= r["value"] <= 1.0 for r in rows)
    cap = ir.summary(rows, "capacity")
    assert set(cap) == {(b, m) for b in ir.BETAS for m in ("1-entmax", "2-entmax")}
    # two well-separated digits from clean half-images: sparsemax at β = 1 gets both, exactly
    exact = ir.summary(rows, "capacity", "exact")[(1.0, "2-entmax")]
    assert exact["x"][0] == 2 and exact["median"][0] == 1.0
    report = ir.check(rows)
    # only the criteria these two models can decide are reported
    assert set(report) == {"sparse_ge_softmax", "low_beta_softmax_degrades", "low_beta_sparse_hold",
                           "robust_monotone"}
    assert all(isinstance(v, list) for v in report.values())
    assert set(ir.check(rows, betas=(1.0,))) == {"sparse_ge_softmax", "robust_monotone"}


def test_check_flags_a_violation():
    def rows_for(values, method):
        return [dict(experiment="E4/robustness", metric="success", beta=1.0, method=method, N=100.0,
                     sigma=s, value=v) for s, v in zip((0.0, 2.5, 5.0), values)]

    good = ir.check(rows_for((1.0, 0.5, 0.2), "2-entmax"))
    assert good["robust_monotone"] == []
    bad = ir.check(rows_for((1.0, 0.2, 0.5), "2-entmax"))
    assert len(bad["robust_monotone"]) == 1 and "σ=2.5 → 5" in bad["robust_monotone"][0]
    assert set(good) == {"robust_monotone"}  # nothing else can be decided from these rows


def test_bad_arguments():
    with pytest.raises(ValueError):
        ir.run("medium")
    with pytest.raises(ValueError):
        ir.run("smoke", methods=("3-entmax",))
    with pytest.raises(ValueError):
        ir.load_images("cifar")
