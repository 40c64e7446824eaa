"""hfy.reference: the numpy float64 reference implementation.

Every algorithm here is written to be read next to the equations of the book.
It is the middle corner of the triangle oracle ↔ reference ↔ fast path.
"""

from .classical import Quadratic, classical_energy, classical_update, hebbian_weights
from .dense import ExponentialDAM, PolynomialDAM, SeparableDAM, dam_energy
from .energy import Retrieval, energy, lse_energy, retrieve, update
from .post_transforms import Identity, L2Normalize, LayerNorm, PostTransform, Sign, Tanh
from .retrieval import Certificate, certify, score_gap, separation
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
]
