"""The float forward pass of a calibration batch, run once and shared by the quantizer's steps.

Activation calibration (:func:`~.calibrate.calibrate_activations`), the layer input
statistics (:func:`~.pipeline.layer_statistics`) and the output-sensitivity probes
(:func:`~.pipeline.layer_gains`) all read the float tensors of the same model on the same
batch, and ``bitline compare`` quantizes one model under several specs. Running the float
model once per (model, batch) instead of once per caller and spec took the ResNet-18
comparison from 51 forward passes to 22 (scripts/bench_compile.py, docs/performance.md
"Compile speed").

The memo holds the *last* (model, batch) only, so at most one set of tensors stays alive
(55 MB for 16 ResNet-18 CIFAR images). Its key is the model object and the identity of its
layers plus a SHA-1 of every weight and bias array and of the batch, so a weight edited in
place, a layer replaced or a different batch is a miss, never a stale hit. The cached
arrays are read-only: a caller that wrote into one would change what the next caller reads.
"""

from __future__ import annotations

import hashlib

import numpy as np

from bitline.sw.frontend.float_model import run_float
from bitline.sw.frontend.ir import Model

__all__ = ["digest", "model_key", "float_tensors", "clear"]

#: ``[(key, model, tensors)]``: the last forward pass (the model is held so that the ids in
#: the key cannot be reused by another object while the entry lives).
_LAST: list[tuple] = []


def digest(arrays) -> str:
    """SHA-1 (hex) of the dtype, shape and bytes of each array in turn (``None`` allowed)."""
    digest = hashlib.sha1(usedforsecurity=False)
    for array in arrays:
        if array is None:
            digest.update(b"none")
            continue
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def model_key(model: Model) -> tuple:
    """Return a key that changes when ``model``'s layers or any weight or bias changes.

    The layer objects are compared by identity (IR passes and the quantizer build new
    layers rather than editing attributes) and the weight and bias arrays by content.
    """
    layers = model.layers
    return (id(model), tuple(id(layer) for layer in layers),
            digest(array for layer in layers for array in (layer.weight, layer.bias)))


def float_tensors(model: Model, calib_x: np.ndarray) -> dict[str, np.ndarray]:
    """Return ``run_float(model, calib_x, return_all=True)``, computed once per (model, batch).

    The arrays are read-only and shared between callers; copy one before writing to it.
    """
    calib_x = np.asarray(calib_x, dtype=np.float32)
    key = (model_key(model), digest([calib_x]))
    if _LAST and _LAST[0][0] == key:
        return _LAST[0][2]
    _LAST.clear()                  # drop the previous tensors before computing new ones
    tensors = run_float(model, calib_x, return_all=True)
    # run_float returns the batch itself as the input tensor: keep a copy, so that the
    # caller's array is not made read-only.
    tensors[model.input_name] = tensors[model.input_name].copy()
    for array in tensors.values():
        array.setflags(write=False)
    _LAST.append((key, model, tensors))
    return tensors


def clear() -> None:
    """Forget the memoized forward pass (frees its tensors)."""
    _LAST.clear()
