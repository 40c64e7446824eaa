"""Retrieval theory (book/theory/retrieval.md): exact one-step retrieval from the margin, stationarity iff Δ_i >= m/β,
certified basins, softmax's lack of exactness, and exact retrieval with ℓ2 / layer-norm post-transformations.

"Exact" means bitwise: when the weights are exactly e_i the update Xᵀe_i is x_i itself, so these
tests use ``==`` (``torch.equal`` / ``np.array_equal``).  The only exception is a normalising Ψ,
which recomputes x_i/‖x_i‖ from a row whose norm is 1 up to rounding: there the result is x_i up to
FEW_ULPS units in the last place of its largest entry.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import hfy
import hfy.reference as ref
from hfy.testing import PROPERTY_ATOL, REFERENCE_ATOL, random_scores

#: normalising Ψ return x_i up to this many ulps of max |x_i| (observed: at most 2).
FEW_ULPS = 4

#: maps with a margin: (id, torch Ω, reference Ω, name accepted by ``certify``).
MAPS = [
    ("entmax15", hfy.Tsallis(1.5), ref.Tsallis(1.5)),
    ("sparsemax", hfy.Tsallis(2.0), ref.Tsallis(2.0)),
    ("normmax2", hfy.NormEntropy(2.0), ref.NormEntropy(2.0)),
    ("normmax5", hfy.NormEntropy(5.0), ref.NormEntropy(5.0)),
    ("entmax1.3", hfy.Tsallis(1.3), ref.Tsallis(1.3)),
    ("normmax-inf", hfy.NormEntropy(math.inf), ref.NormEntropy(math.inf)),
]
IDS = [m[0] for m in MAPS]
MARGINS = {"entmax15": 2.0, "sparsemax": 1.0, "normmax2": 1.0, "normmax5": 1.0, "entmax1.3": 1 / (1.3 - 1),
           "normmax-inf": 1.0}

#: random cases per map for the one-step proposition (at least 1000 are required).
ONE_STEP_CASES = 1000


def T(a):
    return torch.from_numpy(np.asarray(a, dtype=np.float64))


def sphere(n, d, seed, radius=1.0):
    """n points on the sphere of the given radius: every point is an extreme point (convex position)."""
    v = random_scores((n, d), 1.0, seed)
    return radius * v / np.linalg.norm(v, axis=1, keepdims=True)


def assert_few_ulps(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert float(np.max(np.abs(a - b))) <= FEW_ULPS * np.finfo(np.float64).eps * float(np.max(np.abs(b)))


def top_gap(theta):
    """(argmax, θ_i − max_{j≠i} θ_j) of a 1-D score vector."""
    i = int(np.argmax(theta))
    return i, float(theta[i] - np.max(np.delete(theta, i)))


@pytest.mark.parametrize("name,fast,reference", MAPS, ids=IDS)
def test_margins(name, fast, reference):
    assert fast.margin == reference.margin == MARGINS[name]
    assert hfy.Shannon().margin == ref.Shannon().margin == math.inf


# --- one step (eq-retrieval-one-step) ---------------------------------------------------------------------------


def check_one_step(m, theta, out, p, X, equal):
    """For every row whose own scores have gap >= m at i: weights e_i and update x_i exactly.  Returns the count."""
    count = 0
    for k in range(theta.shape[0]):
        i, gap = top_gap(theta[k])
        if gap >= m:
            assert equal(out[k], X[i]), (k, i, gap)
            assert p[k, i] == 1 and int((p[k] != 0).sum()) == 1
            count += 1
    return count


@pytest.mark.parametrize("name,fast,reference", MAPS, ids=IDS)
def test_one_step_exact_retrieval(name, fast, reference):
    """β·(x_iᵀq − max_{j≠i} x_jᵀq) >= m  ⟹  q⁽¹⁾ = x_i exactly, in every case (including β·gap = m exactly).

    Each query gets its own scale c (the update sees β·c·Xq, so c plays the part of a per-query β).
    The condition is evaluated on the scores each layer itself computes (β·(q @ Xᵀ) on the batch), so a
    case whose gap rounds below the margin is not counted.  Memories with N = 300 go through the top-64
    fast path of ``hfy.update``.
    """
    m = fast.margin
    rng = np.random.default_rng(sum(map(ord, name)))
    counted = {"torch": 0, "reference": 0}
    while min(counted.values()) < ONE_STEP_CASES:
        n = int(rng.choice([2, 3, 5, 8, 13, 20, 300]))
        d = int(rng.integers(2, 12))
        beta = float(rng.choice([0.1, 1.0, 7.0]))
        X = random_scores((n, d), float(rng.choice([0.1, 1.0, 10.0])), int(rng.integers(1 << 30)))
        Q = random_scores((60, d), 1.0, int(rng.integers(1 << 30)))
        s = np.sort(Q @ X.T, axis=-1)
        slack = rng.uniform(0.0, 2.0, (60, 1))
        slack[:10] = 0.0  # these sit exactly on the margin (up to the rounding of the scores)
        Q = Q * (m / (beta * (s[:, -1:] - s[:, -2:-1])) * (1.0 + slack))
        Qt, Xt = T(Q), T(X)
        theta_t = (beta * (Qt @ Xt.transpose(0, 1))).numpy()
        out, p = hfy.update(Qt, Xt, beta, fast, "identity", return_weights=True)
        counted["torch"] += check_one_step(m, theta_t, out, p, Xt, torch.equal)
        fast_out = hfy.update(Qt, Xt, beta, fast, "identity")  # top-64 path when N = 300
        check_one_step(m, theta_t, fast_out, p, Xt, torch.equal)
        out_r, p_r = ref.update(Q, X, beta, reference, "identity")
        counted["reference"] += check_one_step(m, beta * (Q @ X.T), out_r, p_r, X, np.array_equal)
    assert min(counted.values()) >= ONE_STEP_CASES


@pytest.mark.parametrize("name,fast,reference", MAPS, ids=IDS)
def test_gap_below_the_margin_is_not_one_hot(name, fast, reference):
    """The margin is tight: at β·gap = m(1 − 10⁻³) the weights are not one-hot."""
    m = fast.margin
    X = sphere(6, 4, 5)
    q = random_scores((30, 4), 1.0, 6)
    for qq in q:
        s = np.sort(qq @ X.T)
        beta = m / (s[-1] - s[-2]) * (1 - 1e-3)
        _, p = hfy.update(T(qq), T(X), beta, fast, "identity", return_weights=True)
        assert int((p > 0).sum()) >= 2


# --- stationarity iff Δ_i >= m/β (eq-retrieval-fixed-point) -----------------------------------------------------


@pytest.mark.parametrize("name,fast,reference", MAPS, ids=IDS)
def test_stationarity_iff_separation(name, fast, reference):
    """For patterns in convex position (on a sphere), x_i is a fixed point iff Δ_i >= m/β.

    In exact arithmetic x_i is fixed iff its weights are e_i.  In floating point a mixture whose other
    weights are below machine epsilon relative to 1 (α-entmax just under the margin: p_j ∝ δ^{1/(α−1)})
    rounds back to x_i, so the "iff" is asserted on the weights, and the motion of x_i where it is visible.

    The β are placed between consecutive separations (and below and above all of them), so that
    no Δ_i sits on the threshold m/β and every memory switches status somewhere along the sweep.
    """
    m = fast.margin
    X = sphere(12, 5, 11, radius=2.0)
    delta = ref.separation(X)
    assert np.all(delta > 0)
    levels = np.sort(delta)
    thresholds = np.concatenate([[levels[0] / 2], (levels[1:] + levels[:-1]) / 2, [2 * levels[-1]]])
    thresholds = thresholds[np.concatenate([[True], np.diff(levels) > 0, [True]])]
    Xt = T(X)
    for threshold in thresholds:
        beta = m / threshold
        want = delta >= m / beta
        q_t, p_t = hfy.update(Xt, Xt, beta, fast, "identity", return_weights=True)
        q_r, p_r = ref.update(X, X, beta, reference, "identity")
        eye = np.eye(X.shape[0])
        for i in range(X.shape[0]):
            one_hot_t = np.array_equal(p_t[i].numpy(), eye[i])
            one_hot_r = np.array_equal(p_r[i], eye[i])
            assert one_hot_t == one_hot_r == bool(want[i]), (name, i, beta)
            if want[i]:
                assert torch.equal(q_t[i], Xt[i]) and np.array_equal(q_r[i], X[i])
            elif float(p_t[i].max()) < 1 - 1e3 * np.finfo(np.float64).eps:  # a visible mixture moves x_i
                assert float((q_t[i] - Xt[i]).norm()) > 0 and not np.array_equal(q_r[i], X[i])
        np.testing.assert_array_equal(hfy.certify(Xt, beta, fast).fixed_point.numpy(), want)
        np.testing.assert_array_equal(ref.certify(X, beta, reference).fixed_point, want)
    # the sweep covers both extremes: every memory fixed at the first β, none at the last
    assert np.all(delta >= thresholds[0]) and np.all(delta < thresholds[-1])


# --- certified basins (eq-retrieval-basin) ------------------------------------------------------------------------


def ball_samples(center, radius, count, rng):
    """Uniform samples in the ball B(center, radius), plus points just inside its boundary."""
    d = center.shape[0]
    v = rng.standard_normal((count, d))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    r = radius * rng.uniform(0, 1, (count, 1)) ** (1.0 / d)
    r[: count // 10] = radius * (1 - 1e-9)
    return center + r * v


@pytest.mark.parametrize("name,fast,reference", MAPS, ids=IDS)
def test_certified_memories_and_basins(name, fast, reference):
    m = fast.margin
    rng = np.random.default_rng(21)
    X = sphere(16, 6, 22, radius=3.0)
    Xt = T(X)
    delta = ref.separation(X)
    for beta in (2 * m / np.median(delta), 8 * m / np.median(delta)):
        cert = hfy.certify(Xt, beta, fast)
        fixed = cert.fixed_point.numpy()
        radius = cert.basin_radius.numpy()
        assert fixed.sum() >= 4
        np.testing.assert_array_equal(radius[~fixed], 0.0)
        np.testing.assert_allclose(radius[fixed], (delta[fixed] - m / beta) / (2 * 3.0), rtol=0, atol=REFERENCE_ATOL)
        for i in np.flatnonzero(fixed):
            assert torch.equal(hfy.update(Xt[i], Xt, beta, fast, "identity"), Xt[i])
            q = ball_samples(X[i], radius[i], 30, rng)
            out_t = hfy.update(T(q), Xt, beta, fast, "identity").numpy()
            out_r, _ = ref.update(q, X, beta, reference, "identity")
            assert np.array_equal(out_t, np.broadcast_to(X[i], q.shape)), (name, i)
            assert np.array_equal(out_r, np.broadcast_to(X[i], q.shape)), (name, i)
            # retrieve: one update reaches x_i, the next confirms it
            r = hfy.retrieve(T(q), Xt, beta, fast, "identity", max_iter=5, tol=0.0)
            assert bool(r.converged.all()) and bool((r.n_iter <= 2).all())
            assert torch.equal(r.q, Xt[i].expand_as(r.q))


@pytest.mark.parametrize("name,fast,reference", MAPS, ids=IDS)
def test_reference_certify_equals_torch(name, fast, reference):
    X = random_scores((15, 7), 1.5, 31)
    for beta in (0.1, 1.0, 10.0, 100.0):
        for omega_t, omega_r in ((fast, reference), ("sparsemax", "sparsemax"), ("softmax", "softmax")):
            ct = hfy.certify(T(X), beta, omega_t)
            cr = ref.certify(X, beta, omega_r)
            assert ct.margin == cr.margin and ct.beta == cr.beta == beta
            np.testing.assert_allclose(ct.separation.numpy(), cr.separation, rtol=0, atol=REFERENCE_ATOL)
            np.testing.assert_array_equal(ct.fixed_point.numpy(), cr.fixed_point)
            np.testing.assert_allclose(ct.basin_radius.numpy(), cr.basin_radius, rtol=0, atol=REFERENCE_ATOL)
            np.testing.assert_allclose(ct.max_norm, cr.max_norm, rtol=0, atol=REFERENCE_ATOL)


def test_separation_and_score_gap():
    X = random_scores((9, 4), 1.0, 41)
    G = X @ X.T
    want = np.array([G[i, i] - np.max(np.delete(G[i], i)) for i in range(9)])
    np.testing.assert_allclose(ref.separation(X), want, rtol=0, atol=REFERENCE_ATOL)
    np.testing.assert_allclose(hfy.separation(T(X)).numpy(), want, rtol=0, atol=REFERENCE_ATOL)
    assert ref.separation(X[:1])[0] == math.inf and float(hfy.separation(T(X[:1]))[0]) == math.inf
    q = random_scores((5, 4), 1.0, 42)
    s = q @ X.T
    for i in (0, 4, 8):
        np.testing.assert_allclose(ref.score_gap(q, X, i), s[:, i] - np.max(np.delete(s, i, axis=1), axis=1),
                                   rtol=0, atol=REFERENCE_ATOL)


# --- softmax is never exact --------------------------------------------------------------------------------------


def test_softmax_is_never_exact():
    X = sphere(10, 6, 51, radius=2.0)
    Xt = T(X)
    delta = ref.separation(X)
    beta = 3.0 / delta.min()  # β·Δ_i >= 3: past the sparsemax and normmax margins, far from exp underflow
    assert np.all(beta * delta <= 745 / 20)
    for cert in (hfy.certify(Xt, beta, "softmax"), ref.certify(X, beta, "softmax")):
        assert cert.margin == math.inf
        assert not np.any(np.asarray(cert.fixed_point))
        np.testing.assert_array_equal(np.asarray(cert.basin_radius), 0.0)
    assert bool(hfy.certify(Xt, beta, "sparsemax").fixed_point.all())
    q_soft, p_soft = hfy.update(Xt, Xt, beta, "softmax", "identity", return_weights=True)
    q_sparse = hfy.update(Xt, Xt, beta, "sparsemax", "identity")
    assert torch.equal(q_sparse, Xt)  # the sparse memory is exact at this β
    for i in range(X.shape[0]):
        assert not torch.equal(q_soft[i], Xt[i])
        assert bool((p_soft[i] > 0).all())  # full support: every memory keeps some weight
    r_soft, _ = ref.update(X, X, beta, "softmax", "identity")
    assert not np.any(np.all(r_soft == X, axis=1))
    # iterating does not help: the fixed point near x_i is not x_i
    r = hfy.retrieve(Xt, Xt, beta, "softmax", "identity", max_iter=500, tol=REFERENCE_ATOL)
    assert bool(r.converged.all())
    assert bool(((r.q - Xt).abs().amax(-1) > 0).all())


# --- post-transformations ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,fast,reference", MAPS[:4], ids=IDS[:4])
@pytest.mark.parametrize("psi,rpsi", [(hfy.L2Normalize(), ref.L2Normalize()), (hfy.LayerNorm(), ref.LayerNorm())],
                         ids=["l2", "layernorm"])
def test_post_transform_exact_retrieval(name, fast, reference, psi, rpsi):
    """Pre-normalised memories + idempotent Ψ: the gap condition gives q⁽¹⁾ = x_i (to a few ulps)."""
    m = fast.margin
    rng = np.random.default_rng(61)
    X = rpsi.predict(random_scores((10, 8), 3.0, 62))
    Xt = T(X)
    model = hfy.HFY(T(random_scores((10, 8), 3.0, 62)), 1.0, fast, psi, pretransform=True)
    np.testing.assert_allclose(model.X.numpy(), X, rtol=0, atol=REFERENCE_ATOL)
    count = 0
    for q in rpsi.predict(random_scores((300, 8), 1.0, 63)):
        s = np.sort(q @ X.T)
        beta = m / (s[-1] - s[-2]) * (1 + rng.uniform(1e-9, 1.0))
        i, gap = top_gap(beta * (q @ X.T))
        if gap < m:
            continue
        out_t = hfy.update(T(q), Xt, beta, fast, psi)
        out_r, p_r = ref.update(q, X, beta, reference, rpsi)
        assert p_r[i] == 1
        assert_few_ulps(out_t.numpy(), X[i])
        assert_few_ulps(out_r, X[i])
        count += 1
    assert count >= 250
    # memories separated by Δ_i >= m/β are fixed points (the sufficient direction of the post-transformation result)
    delta = ref.separation(X)
    beta = 2 * m / delta[delta > 0].min() if np.any(delta > 0) else 1.0
    fixed = delta >= m / beta
    assert fixed.any()
    out = hfy.update(Xt, Xt, beta, fast, psi).numpy()
    for i in np.flatnonzero(fixed):
        assert_few_ulps(out[i], X[i])


def test_l2_fixed_points_beyond_the_hull_condition():
    """The fixed-point result with Ψ is only sufficient: for ℓ2 a mixture Xᵀp parallel to x_i still normalises to x_i."""
    x = np.array([1.0, 0.0])
    X = np.stack([x, np.array([0.6, 0.8]), np.array([0.6, -0.8])])  # symmetric neighbours: Xᵀp ∥ x_1
    beta = 0.5  # far below the margin: p is not one-hot
    q_next, p = ref.update(x, X, beta, ref.Tsallis(2.0), ref.L2Normalize())
    assert p[0] < 1
    np.testing.assert_allclose(q_next, x, rtol=0, atol=PROPERTY_ATOL)
    np.testing.assert_allclose(hfy.update(T(x), T(X), beta, "sparsemax", "l2").numpy(), x, rtol=0,
                               atol=PROPERTY_ATOL)


# --- CUDA ------------------------------------------------------------------------------------------------------

cuda = pytest.mark.cuda
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def check_exact_retrieval_on(device, fast):
    """One-step exactness and certified fixed points on ``device`` (float64 and float32), on its own scores."""
    m = fast.margin
    rng = np.random.default_rng(71)
    counted = 0
    for n in (7, 300):
        X = sphere(n, 8, 72, radius=2.0)
        Q = random_scores((200, 8), 1.0, 73)
        s = np.sort(Q @ X.T, axis=-1)
        Q = Q * (m / (s[:, -1:] - s[:, -2:-1]) * (1 + rng.uniform(0, 1, (200, 1))))
        for dtype in (torch.float64, torch.float32):
            Xd, Qd = T(X).to(device, dtype), T(Q).to(device, dtype)
            theta = (1.0 * (Qd @ Xd.transpose(0, 1))).double().cpu().numpy()
            out, p = hfy.update(Qd, Xd, 1.0, fast, "identity", return_weights=True)
            fast_out = hfy.update(Qd, Xd, 1.0, fast, "identity")
            assert out.device.type == device and out.dtype == dtype
            counted += check_one_step(m, theta, out, p, Xd, torch.equal)
            check_one_step(m, theta, fast_out, p, Xd, torch.equal)
        cert = hfy.certify(T(X).to(device), 2 * m / float(ref.separation(X).min()), fast)
        assert bool(cert.fixed_point.all()) and cert.fixed_point.device.type == device
        Xd = T(X).to(device)
        assert torch.equal(hfy.update(Xd, Xd, cert.beta, fast, "identity"), Xd)
    assert counted >= 600


@cuda
@needs_cuda
@pytest.mark.parametrize("name,fast,reference", MAPS, ids=IDS)
def test_cuda_exact_retrieval(name, fast, reference):
    check_exact_retrieval_on("cuda", fast)
