"""hfy.oracle: every map as the convex program that defines it, solved by cvxpy.

Slow and meant for small inputs: this layer is the ground truth the numpy
reference and the torch fast path are tested against.  cvxpy is imported
lazily, so ``import hfy`` never needs it.
"""

from ._core import SOLVER, SOLVER_OPTIONS
from .entmax import Tsallis, entmax
from .constrained_sparsemax import ConstrainedSparsemax, constrained_sparsemax
from .energy import energy, update
from .ksubsets import KSubsets, ksubsets
from .sequential_ksubsets import SequentialKSubsets, sequential_ksubsets
from .fenchel_young import Regularizer
from .post_transforms import Identity, L2Normalize, LayerNorm, PostTransform, Sign, Tanh
from .normmax import NormEntropy, normmax
from .softmax import Shannon, softmax
from .sparsemax import sparsemax

__all__ = [
    "softmax",
    "sparsemax",
    "entmax",
    "normmax",
    "Regularizer",
    "Shannon",
    "Tsallis",
    "NormEntropy",
    "ksubsets",
    "sequential_ksubsets",
    "constrained_sparsemax",
    "KSubsets",
    "SequentialKSubsets",
    "ConstrainedSparsemax",
    "energy",
    "update",
    "PostTransform",
    "Identity",
    "L2Normalize",
    "LayerNorm",
    "Sign",
    "Tanh",
    "SOLVER",
    "SOLVER_OPTIONS",
]
