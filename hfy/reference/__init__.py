"""hfy.reference: the numpy float64 reference implementation.

Every algorithm here is written to be read next to the equations of the book.
It is the middle corner of the triangle oracle ↔ reference ↔ fast path.
"""

from .classical import Quadratic, classical_energy, classical_update, hebbian_weights
from .dense import ExponentialDAM, PolynomialDAM, SeparableDAM, dam_energy
from .energy import Retrieval, energy, lse_energy, retrieve, update
from .post_transforms import Identity, L2Normalize, LayerNorm, PostTransform, Sign, Tanh
from .retrieval import Certificate, certify, score_gap, separation
from .constrained_sparsemax import ConstrainedSparsemax, constrained_sparsemax
from .ksubsets import KSubsets, ksubsets, ksubsets_jacobian
from .sequential_ksubsets import SequentialKSubsets, budgeted_viterbi, sequential_ksubsets
from .sparsemap import SparseMAP, sparsemap_active_set, sparsemap_jacobian
from .entmax import Tsallis, entmax, entmax15, entmax_alpha_derivative
from .fenchel_young import Regularizer, fenchel_young_loss
from .normmax import NormEntropy, normmax
from .softmax import Shannon, softmax
from .sparsemax import sparsemax, sparsemax_threshold

__all__ = [
    "softmax",
    "sparsemax",
    "entmax",
    "entmax15",
    "normmax",
    "Regularizer",
    "Shannon",
    "Tsallis",
    "NormEntropy",
    "fenchel_young_loss",
    "sparsemax_threshold",
    "entmax_alpha_derivative",
    "energy",
    "update",
    "retrieve",
    "Retrieval",
    "lse_energy",
    "certify",
    "Certificate",
    "separation",
    "score_gap",
    "PostTransform",
    "Identity",
    "L2Normalize",
    "LayerNorm",
    "Sign",
    "Tanh",
    "Quadratic",
    "hebbian_weights",
    "classical_energy",
    "classical_update",
    "SeparableDAM",
    "PolynomialDAM",
    "ExponentialDAM",
    "dam_energy",
    "ksubsets",
    "ksubsets_jacobian",
    "KSubsets",
    "sequential_ksubsets",
    "budgeted_viterbi",
    "SequentialKSubsets",
    "constrained_sparsemax",
    "ConstrainedSparsemax",
    "SparseMAP",
    "sparsemap_active_set",
    "sparsemap_jacobian",
]
