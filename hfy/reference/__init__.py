"""hfy.reference: the numpy float64 reference implementation.

Every algorithm here is written to be read next to the equations of the book.
It is the middle corner of the triangle oracle ↔ reference ↔ fast path.
"""

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
]
