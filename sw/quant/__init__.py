"""Quantization: weight schemes, spec files, varied and block-wise (BWQ) assignment.

Public entry points:

* :func:`quantize` — one tensor, one scheme (int, pot, apot, adaptivfloat, ternary, binary);
  :func:`level_set` — the integer magnitudes a scheme may produce.
* :class:`QuantizedTensor` / :class:`BitPlanes` — the sign-magnitude integer form.
* :func:`load_spec` — a spec file (TOML/JSON), a shorthand (``int4``, ``bwq3``) or a dict
  -> :class:`QuantSpec` (docs/quantization.md).
* :func:`quantize_model` — the quantize step: float model + spec + calibration batch ->
  :class:`~bitline.sw.integer.qmodel.QuantizedModel`.
"""

from bitline.sw.quant.schemes import BIT_RANGES, SCHEMES, level_set, quantize
from bitline.sw.quant.spec import QuantSpec
from bitline.sw.quant.spec_file import load_spec
from bitline.sw.quant.tensor import BitPlanes, QuantizedTensor

__all__ = [
    "quantize",
    "level_set",
    "SCHEMES",
    "BIT_RANGES",
    "QuantizedTensor",
    "BitPlanes",
    "QuantSpec",
    "load_spec",
    "quantize_model",
]


def __getattr__(name):
    # quantize_model pulls in the builder and the integer ops, which import
    # bitline.sw.integer.qmodel, which imports this package for QuantizedTensor: load it on first use
    # so that importing bitline.sw.integer.qmodel (or intops) first does not hit a circular import.
    if name == "quantize_model":
        from bitline.sw.quant.pipeline import quantize_model

        return quantize_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
