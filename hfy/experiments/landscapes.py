"""Two-dimensional energy landscapes: the harness of experiments E2 (contours) and E3 (basins).

Both experiments of the HFY papers use the same ten synthetic sets of five
patterns in the plane, drawn from one seeded torch generator, and show four
of them.  This module builds those sets, the grids of states laid over them,
and the two sweeps:

* :func:`contour_panel` evaluates the energy on a grid and follows one CCCP
  trajectory per pattern set (book chapter ``experiments/contours``);
* :func:`basin_labels` and :func:`basin_sweep` run the dynamics from every
  cell of a grid and record which pattern, if any, each cell converges to
  (book chapter ``experiments/basins``).

Everything is float64 and runs on the torch fast path (:func:`hfy.energy`,
:func:`hfy.update`, :func:`hfy.retrieve`), batched over the grid.

The post-transformations Ψ are named as in :func:`hfy.energy`: ``'identity'``
(Ψ = ½‖q‖²), ``'l2'`` (indicator of the unit ball) and ``'layernorm'``
(indicator of the centred ball of radius √D).  For ``'layernorm'`` the planar
points get a third coordinate −x₁ − x₂, so that every state sums to zero.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch

import hfy
from hfy._torch.energy import as_omega

from ._tidy import row

#: The pattern sets the papers' figures show (indices into the ten drawn sets).
SETS_SHOWN: Tuple[int, ...] = (0, 3, 8, 9)

#: Seed of the global torch generator in the reference scripts.
SEED = 42

#: Labels of the five score-side maps of the figures' columns, in order (see :func:`method_omega`).
METHODS: Tuple[str, ...] = ("1-entmax", "1.5-entmax", "2-entmax", "2-normmax", "5-normmax")

#: Post-transformations of the experiments.
PSIS: Tuple[str, ...] = ("identity", "l2", "layernorm")

#: Norm below which the ℓ2 post-transformation leaves a state at 0 (the scripts' guard).
L2_GUARD = 1e-6

#: A trajectory stops once no state moves by more than this in one update (sup norm):
#: rounding can make a converged state flicker in its last bit forever.
TRAJECTORY_TOL = 1e-12

#: A grid cell belongs to the basin of x_i if its final state lies closer than this to x_i.
BASIN_RADIUS = 1e-3

#: Run tiers of :func:`basin_sweep` (see :func:`tier_settings`).
TIERS = ("smoke", "book", "full")


@contextlib.contextmanager
def single_threaded():
    """Run torch on one intra-op thread inside the block, then restore the previous count.

    The problems here are tiny (N <= 5 memories, D <= 3, at most 10⁴ states):
    extra threads only add synchronisation, which on a busy machine makes the
    small matrix products many times slower.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _layer(layer: str):
    if layer == "torch":
        return hfy
    if layer == "reference":
        import hfy.reference as ref

        return ref
    if layer == "oracle":
        import hfy.oracle as oracle

        return oracle
    raise ValueError(f"`layer` must be 'torch', 'reference' or 'oracle'; got {layer!r}")


def method_omega(label: str, layer: str = "torch"):
    """The regulariser Ω of a column label.

    ``'α-entmax'`` gives Tsallis(α) (Shannon at α = 1) and ``'γ-normmax'`` gives NormEntropy(γ).

    Parameters
    ----------
    label : str
        One of :data:`METHODS`, or any ``'<number>-entmax'`` / ``'<number>-normmax'``.
    layer : {'torch', 'reference', 'oracle'}
        Which implementation: :mod:`hfy`, :mod:`hfy.reference` or :mod:`hfy.oracle`.

    Returns
    -------
    Regularizer
    """
    mod = _layer(layer)
    try:
        value, family = label.split("-")
        order = float(value)
    except ValueError:
        raise ValueError(f"`label` must look like '1.5-entmax' or '5-normmax'; got {label!r}") from None
    if family == "entmax":
        return mod.Shannon() if order == 1.0 else mod.Tsallis(order)
    if family == "normmax":
        return mod.NormEntropy(order)
    raise ValueError(f"`label` must end in '-entmax' or '-normmax'; got {label!r}")


def _resolve_omega(omega) -> hfy.Regularizer:
    """A torch regulariser from a column label ('2-normmax'), a name ('softmax') or an object."""
    if isinstance(omega, str) and omega.endswith(("-entmax", "-normmax")):
        return method_omega(omega)
    return as_omega(omega)


def make_psi(name: str, parity: bool = False, layer: str = "torch"):
    """The post-transformation Ψ of the experiments.

    Parameters
    ----------
    name : {'identity', 'l2', 'layernorm'}
    parity : bool
        For ``'layernorm'``, the scripts' variant (switch ``ln_unbiased``):
        unbiased standard deviation (radius √(D − 1)) and ε = 1e-8 inside the
        square root.  The correct map (default) uses the biased standard
        deviation and ε = 0, which makes it the exact argmax over the centred
        ball of radius √D.  Ignored for the other names.
    layer : {'torch', 'reference', 'oracle'}
        Which implementation (the oracle has no parity layer norm and no ℓ2 guard).

    Returns
    -------
    PostTransform
        ``'l2'`` leaves states of norm at most :data:`L2_GUARD` at 0.
    """
    mod = _layer(layer)
    if name == "identity":
        return mod.Identity()
    if name == "l2":
        return mod.L2Normalize(1.0) if layer == "oracle" else mod.L2Normalize(radius=1.0, eps=L2_GUARD)
    if name == "layernorm":
        if not parity:
            return mod.LayerNorm()
        if layer == "oracle":
            raise ValueError("the oracle layer norm has no parity variant")
        return mod.LayerNorm(eps=1e-8, unbiased=True)
    raise ValueError(f"`name` must be one of {PSIS}; got {name!r}")


@dataclass
class PatternSet:
    """One synthetic memory and its random query.

    Attributes
    ----------
    index : int
        Position among the ten drawn sets.
    X : Tensor, shape (N, D)
        Memories, one per row: ℓ2-normalised (D = 2) or layer-normalised (D = 3).
    query : Tensor, shape (D,)
        The random query drawn with the set (zero for set 0).
    psi : str
        The post-transformation the set was prepared for.
    """

    index: int
    X: torch.Tensor
    query: torch.Tensor
    psi: str

    def start(self) -> torch.Tensor:
        """The initial state of the contour trajectories, q₀ = Xᵀ softmax(X q_rand), shape (D,)."""
        return self.X.transpose(0, 1) @ torch.softmax(self.X @ self.query, dim=-1)


def lift(points: torch.Tensor) -> torch.Tensor:
    """Append the coordinate −x₁ − x₂ to planar points: shape (..., 2) → (..., 3), each row summing to 0."""
    return torch.cat([points, -points.sum(-1, keepdim=True)], dim=-1)


def draw_raw_sets(n_sets: int = 10, n_patterns: int = 5, seed: int = SEED) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """The raw planar draws, in the reference scripts' order.

    A generator seeded with ``seed`` draws, for each set in turn, the patterns
    ``randn(n_patterns, 2)`` and then the query ``randn(2, 1)`` (float64); this
    is the stream of ``torch.manual_seed(seed)`` followed by the same calls on
    the global generator, without touching the global generator.  Set 0 is then
    replaced by the three points (−1, −1), (−1, 1), (1, −1) with query 0.

    Returns
    -------
    list of (Tensor (n, 2), Tensor (2,))
    """
    gen = torch.Generator().manual_seed(seed)
    sets = []
    for _ in range(n_sets):
        pattern = torch.randn(n_patterns, 2, dtype=torch.float64, generator=gen)
        query = torch.randn(2, 1, dtype=torch.float64, generator=gen)
        sets.append((pattern, query[:, 0]))
    corners = torch.tensor([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0]], dtype=torch.float64)
    sets[0] = (corners, torch.zeros(2, dtype=torch.float64))
    return sets


def pattern_sets(psi: str = "identity", which: Sequence[int] = SETS_SHOWN, parity: bool = False) -> List[PatternSet]:
    """The pattern sets of E2/E3, prepared for a post-transformation.

    Parameters
    ----------
    psi : {'identity', 'l2', 'layernorm'}
        For 'identity' and 'l2' the patterns are ℓ2-normalised onto the unit
        circle.  For 'layernorm' the patterns and the query get the third
        coordinate −x₁ − x₂ and the patterns are layer-normalised.
    which : sequence of int
        Indices among the ten drawn sets.
    parity : bool
        Layer-normalise with the scripts' unbiased std and ε = 1e-8.

    Returns
    -------
    list of PatternSet
    """
    if psi not in PSIS:
        raise ValueError(f"`psi` must be one of {PSIS}; got {psi!r}")
    raw = draw_raw_sets(max(10, max(which) + 1))
    out = []
    for i in which:
        pattern, query = raw[i]
        if psi == "layernorm":
            X = make_psi("layernorm", parity).predict(lift(pattern))
            query = lift(query)
        else:
            X = pattern / torch.linalg.vector_norm(pattern, dim=-1, keepdim=True)
        out.append(PatternSet(i, X, query, psi))
    return out


@dataclass
class Grid:
    """A regular grid of states over a planar box.

    Attributes
    ----------
    xx, yy : Tensor, shape (n,)
        The coordinates along each axis.
    points : Tensor, shape (n * n, D)
        The states, row-major over (y, x) as in ``meshgrid(xx, yy, indexing='xy')``;
        D = 3 (lifted) when built for 'layernorm'.
    """

    xx: torch.Tensor
    yy: torch.Tensor
    points: torch.Tensor

    @property
    def shape(self) -> Tuple[int, int]:
        return (self.yy.numel(), self.xx.numel())


def make_grid(X: torch.Tensor, n: int = 100, pad: float = 0.1, extra: Optional[torch.Tensor] = None) -> Grid:
    """An n × n grid over the bounding box of the patterns' first two coordinates, widened by ``pad``.

    Parameters
    ----------
    X : Tensor, shape (N, D)
        Patterns (D = 2, or D = 3 for the lifted layer-norm sets).
    n : int
        Points per axis.
    pad : float
        Margin added on each side of the box.
    extra : Tensor, shape (..., D), optional
        More points the box must contain (e.g. a trajectory).

    Returns
    -------
    Grid
    """
    pts = X[:, :2]
    if extra is not None:
        pts = torch.cat([pts, extra.reshape(-1, X.shape[1])[:, :2]])
    lo, hi = pts.amin(0) - pad, pts.amax(0) + pad
    xx = torch.linspace(float(lo[0]), float(hi[0]), n, dtype=X.dtype)
    yy = torch.linspace(float(lo[1]), float(hi[1]), n, dtype=X.dtype)
    gx, gy = torch.meshgrid(xx, yy, indexing="xy")
    points = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=-1)
    if X.shape[1] == 3:
        points = lift(points)
    return Grid(xx, yy, points)


def landscape_energy(q: torch.Tensor, X: torch.Tensor, omega, psi: str = "identity", beta: float = 1.0,
                     parity_entropy: bool = False, parity: bool = False) -> torch.Tensor:
    """The energy drawn in the contour plots (eq-contours-sshn, eq-contours-indicator).

    For Ψ = identity this is the non-negative sparse-Hopfield form
    (``constant='sshn'`` of :func:`hfy.energy`),
    E(q) = −β⁻¹Ω*(βXq) + ½‖q‖² + β⁻¹H(u) + ½M²;
    for the indicator Ψ ('l2', 'layernorm') it is the Fenchel-Young form
    (``constant='fy'``), +inf outside the feasible set.  With
    ``parity_entropy`` it is the papers' normmax energy (eq-contours-parity).

    Parameters
    ----------
    q : Tensor, shape (..., D)
    X : Tensor, shape (N, D)
    omega : str or hfy.Regularizer
        A column label of :data:`METHODS` or a regulariser.
    psi : {'identity', 'l2', 'layernorm'}
    beta : float
    parity_entropy : bool
        Switch ``normmax_entropy_l2``: for a γ-normmax Ω, evaluate the energy
        at p = ŷ_γ(βXq) with the 2-norm entropy H₂(p) = 1 − ‖p‖₂ (and H₂(u)
        in the constant) in place of H_γ, as the papers' plotting code does.
        No effect on other Ω.
    parity : bool
        Layer norm of the scripts (see :func:`make_psi`).

    Returns
    -------
    Tensor, shape (...)
    """
    reg = _resolve_omega(omega)
    post = make_psi(psi, parity)
    constant = "sshn" if psi == "identity" else "fy"
    if not (parity_entropy and isinstance(reg, hfy.NormEntropy)):
        return hfy.energy(q, X, beta, reg, post, constant=constant)
    n = X.shape[0]
    theta = beta * (q @ X.transpose(0, 1))
    p = reg.predict(theta)
    h2 = 1.0 - torch.linalg.vector_norm(p, dim=-1)
    h2_u = 1.0 - n ** -0.5
    value = post.psi(q) - ((theta * p).sum(-1) + h2) / beta
    if psi == "identity":
        return value + h2_u / beta + 0.5 * (X * X).sum(-1).max()
    u = torch.full((n,), 1.0 / n, dtype=X.dtype)
    return value + post.conjugate(u @ X) + h2_u / beta


@dataclass
class Trajectory:
    """States and energies along CCCP trajectories.

    Attributes
    ----------
    path : Tensor, shape (T + 1, ..., D)
        q₀, q₁, …, q_T.
    energies : Tensor, shape (T + 1, ...)
        :func:`landscape_energy` at every state.
    p : Tensor, shape (..., N)
        ŷ_Ω(βXq_T), the weights at the final state.
    n_iter : int
        T, the number of updates applied.
    """

    path: torch.Tensor
    energies: torch.Tensor
    p: torch.Tensor
    n_iter: int


def trajectory(q0: torch.Tensor, X: torch.Tensor, omega, psi: str = "identity", beta: float = 1.0,
               max_iter: int = 1000, tol: float = TRAJECTORY_TOL, parity: bool = False,
               parity_entropy: bool = False) -> Trajectory:
    """Follow q ← ŷ_Ψ(Xᵀ ŷ_Ω(βXq)) (eq-contours-update) from a batch of initial states, keeping every state.

    All states are updated together; the loop stops once every state moved by
    at most ``tol`` (sup norm) in one update, or after ``max_iter`` updates.

    Parameters
    ----------
    q0 : Tensor, shape (..., D)
    X : Tensor, shape (N, D)
    omega : str or hfy.Regularizer
    psi : {'identity', 'l2', 'layernorm'}
    beta : float
    max_iter : int
        1000 in the papers' contour plots.
    tol : float
        Stop when no state moved by more than this; 0 stops only at an exact fixed point.
    parity, parity_entropy : bool
        Passed to :func:`make_psi` and :func:`landscape_energy`.

    Returns
    -------
    Trajectory
    """
    reg = _resolve_omega(omega)
    post = make_psi(psi, parity)
    states = [q0]
    q = q0
    for _ in range(int(max_iter)):
        q_next = hfy.update(q, X, beta, reg, post)
        states.append(q_next)
        if bool(((q_next - q).abs().amax(-1) <= tol).all()):
            break
        q = q_next
    path = torch.stack(states)
    energies = landscape_energy(path, X, reg, psi, beta, parity_entropy=parity_entropy, parity=parity)
    p = reg.predict(beta * (path[-1] @ X.transpose(0, 1)))
    return Trajectory(path, energies, p, len(states) - 1)


@dataclass
class ContourPanel:
    """Everything one panel of the contour figure shows.

    Attributes
    ----------
    method : str
    grid : Grid
    energy : Tensor, shape (n, n)
        Energy on the grid (+inf outside the feasible set of an indicator Ψ).
    trajectory : Trajectory
        One trajectory (batch shape ()).
    """

    method: str
    grid: Grid
    energy: torch.Tensor
    trajectory: Trajectory


def contour_panel(pset: PatternSet, method: str, beta: float = 1.0, n: int = 100, max_iter: int = 1000,
                  parity: bool = False, parity_entropy: bool = False) -> ContourPanel:
    """Energy on an n × n grid and the trajectory from :meth:`PatternSet.start` for one set and one Ω.

    The grid covers the patterns and the trajectory, widened by 0.1 (for
    Ψ = identity the trajectory stays in the convex hull of the patterns, so
    this is the patterns' bounding box ± 0.1).
    """
    with single_threaded():
        traj = trajectory(pset.start(), pset.X, method, pset.psi, beta, max_iter, parity=parity,
                          parity_entropy=parity_entropy)
        grid = make_grid(pset.X, n, extra=traj.path)
        e = landscape_energy(grid.points, pset.X, method, pset.psi, beta, parity_entropy=parity_entropy,
                             parity=parity)
    return ContourPanel(method, grid, e.reshape(grid.shape), traj)


def basin_labels(points: torch.Tensor, X: torch.Tensor, omega, psi: str = "identity", beta: float = 4.0,
                 max_iter: int = 50, radius: float = BASIN_RADIUS,
                 parity: bool = False) -> Tuple[torch.Tensor, hfy.Retrieval]:
    """Run the dynamics from every point and label it by the pattern it reaches (eq-basins-update, eq-basins-label).

    Parameters
    ----------
    points : Tensor, shape (M, D)
        Initial states, used as given (not projected first, as in the papers).
    X : Tensor, shape (N, D)
    omega : str or hfy.Regularizer
    psi : {'identity', 'l2', 'layernorm'}
    beta : float
    max_iter : int
        Number of updates (50 in the papers).  The tolerance is 0, so a state
        stops early only at an exact fixed point, where further updates would
        not move it: the result equals ``max_iter`` plain updates.
    radius : float
        Distance to x_i below which the final state counts as x_i.
    parity : bool
        Layer norm of the scripts (see :func:`make_psi`).

    Returns
    -------
    labels : Tensor of int64, shape (M,)
        i if the final state is within ``radius`` of x_i, −1 otherwise.
    result : hfy.Retrieval
    """
    reg = _resolve_omega(omega)
    result = hfy.retrieve(points, X, beta, reg, make_psi(psi, parity), max_iter=max_iter, tol=0.0)
    dist = torch.cdist(result.q, X)
    nearest = dist.argmin(-1)
    hit = dist.gather(-1, nearest.unsqueeze(-1)).squeeze(-1) < radius
    return torch.where(hit, nearest, torch.full_like(nearest, -1)), result


def tier_settings(tier: str) -> Dict[str, object]:
    """Grid size, pattern sets, β values and Ψ of the basin sweep at each tier.

    * ``'smoke'``: 12 × 12 grid, sets 0 and 3, β = 4, Ψ ∈ {identity, l2};
    * ``'book'``: the papers' protocol, 100 × 100 grid, sets {0, 3, 8, 9}, β ∈ {4, 10}, all three Ψ;
    * ``'full'``: the same on all ten drawn sets.
    """
    if tier == "smoke":
        return dict(n=12, which=(0, 3), betas=(4.0,), psis=("identity", "l2"))
    if tier == "book":
        return dict(n=100, which=SETS_SHOWN, betas=(4.0, 10.0), psis=PSIS)
    if tier == "full":
        return dict(n=100, which=tuple(range(10)), betas=(4.0, 10.0), psis=PSIS)
    raise ValueError(f"`tier` must be one of {TIERS}; got {tier!r}")


@dataclass
class BasinMap:
    """The basins of one pattern set for one (β, Ψ, Ω).

    Attributes
    ----------
    index : int
        Pattern set.
    beta : float
    psi : str
    method : str
    X : Tensor, shape (N, D)
    grid : Grid
    labels : Tensor of int64, shape (n, n)
        Pattern index, or −1 for "no single pattern".
    support : Tensor of int64, shape (n, n)
        Support size of ŷ_Ω(βXq) at the final state.
    """

    index: int
    beta: float
    psi: str
    method: str
    X: torch.Tensor
    grid: Grid
    labels: torch.Tensor
    support: torch.Tensor

    @property
    def single_fraction(self) -> float:
        """Fraction of grid cells that end within :data:`BASIN_RADIUS` of a single pattern."""
        return float((self.labels >= 0).double().mean())


def basin_sweep(tier: str = "book", methods: Sequence[str] = METHODS, parity: bool = False,
                **overrides) -> List[BasinMap]:
    """Basins of attraction for every (β, Ψ, pattern set, Ω) of a tier.

    Parameters
    ----------
    tier : {'smoke', 'book', 'full'}
        See :func:`tier_settings`.
    methods : sequence of str
        Column labels (default: all five maps).
    parity : bool
        Scripts' layer norm.
    **overrides
        Replace any of the tier's settings (``n``, ``which``, ``betas``, ``psis``).

    Returns
    -------
    list of BasinMap
    """
    cfg = dict(tier_settings(tier))
    unknown = set(overrides) - set(cfg)
    if unknown:
        raise ValueError(f"unknown settings {sorted(unknown)}; expected some of {sorted(cfg)}")
    cfg.update(overrides)
    maps = []
    with single_threaded():
        for psi in cfg["psis"]:
            for pset in pattern_sets(psi, cfg["which"], parity):
                grid = make_grid(pset.X, cfg["n"])
                for beta in cfg["betas"]:
                    for method in methods:
                        labels, result = basin_labels(grid.points, pset.X, method, psi, beta, parity=parity)
                        support = (result.p > 0).sum(-1)
                        maps.append(BasinMap(pset.index, float(beta), psi, method, pset.X, grid,
                                             labels.reshape(grid.shape), support.reshape(grid.shape)))
    return maps


def basin_table(maps: Sequence[BasinMap]) -> Dict[Tuple[float, str], Dict[str, float]]:
    """Fraction of grid cells converging to a single pattern, averaged over pattern sets.

    Returns
    -------
    dict
        ``{(beta, psi): {method: fraction}}``, methods in sweep order.
    """
    sums: Dict[Tuple[float, str], Dict[str, List[float]]] = {}
    for m in maps:
        sums.setdefault((m.beta, m.psi), {}).setdefault(m.method, []).append(m.single_fraction)
    return {key: {meth: sum(v) / len(v) for meth, v in row.items()} for key, row in sums.items()}


def basin_rows(maps: Sequence[BasinMap], tier: str = "book", parity: bool = False) -> List[Dict[str, object]]:
    """Tidy result rows (one per map) in the experiments' CSV layout, metric ``single_pattern_fraction``.

    See :mod:`hfy.experiments._tidy` for the columns and :func:`hfy.experiments._tidy.write_csv` to store them.
    """
    rows = []
    for m in maps:
        reg = method_omega(m.method)
        param = getattr(reg, "alpha", getattr(reg, "gamma", 1.0))
        rows.append(row(experiment="E3", dataset=f"synthetic2d-set{m.index}", method=m.method,
                        omega=type(reg).__name__, omega_param=float(param), psi=m.psi, beta=m.beta,
                        N=int(m.X.shape[0]), seed=SEED, tier=tier,
                        parity="ln_unbiased" if (parity and m.psi == "layernorm") else "",
                        metric="single_pattern_fraction", value=m.single_fraction))
    return rows
