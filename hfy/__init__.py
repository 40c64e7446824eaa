"""hfy: Hopfield-Fenchel-Young networks.

The top-level package is the torch fast path.  Its numpy twin is
:mod:`hfy.reference` and its cvxpy twin (the definitions, as convex programs)
is :mod:`hfy.oracle`; the same names mean the same maps in all three.
"""

from ._torch.entmax import (
    Entmax,
    Entmax15,
    Entmax15Loss,
    EntmaxBisect,
    EntmaxBisectLoss,
    LearnableEntmax,
    Sparsemax,
    SparsemaxBisect,
    SparsemaxBisectLoss,
    SparsemaxLoss,
    Tsallis,
    entmax,
    entmax15,
    entmax15_loss,
    entmax_bisect,
    entmax_bisect_loss,
    entmax_loss,
    sparsemax,
    sparsemax_bisect,
    sparsemax_bisect_loss,
    sparsemax_loss,
)
from ._torch.fenchel_young import FenchelYoungLoss, Regularizer, fenchel_young_loss
from ._torch.normmax import (
    NormEntropy,
    Normmax,
    NormmaxBisect,
    NormmaxBisectLoss,
    normmax,
    normmax_bisect,
    normmax_bisect_loss,
    normmax_loss,
)
from ._torch.classical import Quadratic
from ._torch.dense import ExponentialDAM, PolynomialDAM, SeparableDAM
from ._torch.energy import HFY, Retrieval, energy, retrieve, update
from ._torch.post_transforms import Identity, L2Normalize, LayerNorm, PostTransform, Sign, Tanh
from ._torch.retrieval import Certificate, certify, separation
from ._torch.ksubsets import ConstrainedSparsemax, KSubsets, budget_bisect, constrained_sparsemax, ksubsets
from ._torch.sequential_ksubsets import SequentialKSubsets, budgeted_viterbi, sequential_ksubsets
from ._torch.softmax import Shannon, softmax
from ._torch.sparsemap import SparseMAP, sparsemap

__version__ = "0.1.0"

__all__ = [
    # maps
    "softmax",
    "sparsemax",
    "entmax",
    "entmax15",
    "normmax",
    "ksubsets",
    "sequential_ksubsets",
    "constrained_sparsemax",
    "sparsemap",
    "budgeted_viterbi",
    # regularisers and losses
    "Regularizer",
    "Shannon",
    "Tsallis",
    "NormEntropy",
    "KSubsets",
    "SequentialKSubsets",
    "ConstrainedSparsemax",
    "SparseMAP",
    "fenchel_young_loss",
    "FenchelYoungLoss",
    "entmax_loss",
    "normmax_loss",
    # energies and dynamics
    "energy",
    "update",
    "retrieve",
    "Retrieval",
    "HFY",
    "certify",
    "Certificate",
    "separation",
    # post-transformations
    "PostTransform",
    "Identity",
    "L2Normalize",
    "LayerNorm",
    "Sign",
    "Tanh",
    # special cases
    "Quadratic",
    "SeparableDAM",
    "PolynomialDAM",
    "ExponentialDAM",
    # modules
    "Entmax",
    "Normmax",
    "LearnableEntmax",
    # drop-in names of the entmax package
    "Sparsemax",
    "Entmax15",
    "EntmaxBisect",
    "SparsemaxBisect",
    "NormmaxBisect",
    "entmax_bisect",
    "sparsemax_bisect",
    "normmax_bisect",
    "budget_bisect",
    "sparsemax_loss",
    "entmax15_loss",
    "entmax_bisect_loss",
    "sparsemax_bisect_loss",
    "normmax_bisect_loss",
    "SparsemaxLoss",
    "Entmax15Loss",
    "EntmaxBisectLoss",
    "SparsemaxBisectLoss",
    "NormmaxBisectLoss",
    "__version__",
]
