"""Fold explicit ``pad`` layers (ONNX Pad, ``F.pad``) into the conv / pooling that reads them.

The window layers already pad (their ``pads`` attribute; conv and average pooling with
zeros, max pooling with ``-inf``), so a constant Pad in front of one is folded into it where
the result is the same function:

* ``conv``: pad value 0; the pads add up.
* ``avgpool``: pad value 0, and the pooling counts its padding (``count_include_pad``) or
  has none of its own; the folded layer counts the padding (the Pad's zeros are real
  inputs of each window).
* ``maxpool``: pad value ``-inf``, or a value not above any input -- in the IR, value 0
  on a tensor written by a ReLU / ReLU6 (fused or standalone), whose values are >= 0.
"""

from __future__ import annotations

import numpy as np

from bitline.sw.frontend.ir import Layer, Model
from bitline.sw.passes.base import PassError, copy_model, producer, tensor_uses


__all__ = ["fold_pads"]


def _non_negative(model: Model, tensor: str) -> bool:
    source = producer(model, tensor)
    if source is None:
        return False
    return source.op in ("relu", "relu6") or source.activation in ("relu", "relu6")


def _refusal(model: Model, pad: Layer, consumer: Layer | None) -> str | None:
    """Why ``pad`` cannot fold into ``consumer`` (``None`` if it can)."""
    if consumer is None or consumer.op not in ("conv", "avgpool", "maxpool"):
        what = "the model output" if consumer is None else f"{consumer.name!r} ({consumer.op})"
        return f"a Pad folds only into a following Conv / pooling layer, not into {what}"
    value = float(pad.attrs.get("value", 0.0))
    if consumer.op == "conv" and value != 0.0:
        return f"a Conv pads with 0, not with the Pad's value {value}"
    if consumer.op == "avgpool":
        if value != 0.0:
            return f"an AveragePool pads with 0, not with the Pad's value {value}"
        if any(consumer.attrs["pads"]) and not consumer.attrs.get("count_include_pad", False):
            return (f"{consumer.name!r} has its own padding, which it does not count "
                    "(count_include_pad=0), while the Pad's zeros count")
    if consumer.op == "maxpool" and not (
        value == -np.inf or (value <= 0.0 and _non_negative(model, pad.inputs[0]))
    ):
        return (f"a MaxPool pads with -inf; the Pad's value {value} equals that only on an "
                "input >= 0 (after a ReLU) with value <= 0")
    return None


def fold_pads(model: Model) -> Model:
    """Return ``model`` with every ``pad`` layer folded into the window layer that reads it.

    Raises
    ------
    PassError
        If a pad layer has no single conv / pooling reader, or the fold would change the
        result (see the module docstring), naming the pad value and the reader.
    """
    model = copy_model(model)
    for pad in [layer for layer in model.layers if layer.op == "pad"]:
        uses = tensor_uses(model)[pad.output]
        readers = [layer for layer in model.layers if pad.output in layer.inputs]
        if uses == 1 and not readers:
            raise PassError(pad, _refusal(model, pad, None))
        if uses != 1 or len(readers) != 1:
            raise PassError(pad, f"output {pad.output!r} has {uses} readers; a Pad folds only "
                            "into one following Conv / pooling layer")
        consumer = readers[0]
        reason = _refusal(model, pad, consumer)
        if reason is not None:
            raise PassError(pad, reason)
        consumer.attrs["pads"] = tuple(
            int(a) + int(b) for a, b in zip(consumer.attrs.get("pads", (0, 0, 0, 0)),
                                            pad.attrs["pads"]))
        if consumer.op == "avgpool":
            consumer.attrs["count_include_pad"] = True
        consumer.inputs[consumer.inputs.index(pad.output)] = pad.inputs[0]
        consumer.input_shape = pad.input_shape
        model.layers.remove(pad)
    return model
