"""Quantization: weight schemes, spec files, varied and block-wise (BWQ) assignment.

Public entry points:

* :func:`quantize` — one tensor, one scheme (int, pot, apot, adaptivfloat, ternary, binary).
* :class:`QuantizedTensor` / :class:`BitPlanes` — the sign-magnitude integer form.
"""

from .schemes import BIT_RANGES, SCHEMES, level_set, quantize
from .tensor import BitPlanes, QuantizedTensor

__all__ = [
    "quantize",
    "level_set",
    "SCHEMES",
    "BIT_RANGES",
    "QuantizedTensor",
    "BitPlanes",
]
