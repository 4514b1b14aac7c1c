"""What every IR pass shares: the pass type, its error, running a list of passes, graph queries.

A *pass* is a function ``Model -> Model`` on the IR (:mod:`bitline.sw.frontend.ir`). It is
pure: it returns a new :class:`~bitline.sw.frontend.ir.Model` and never mutates the one it is
given (layers are copied before they are rewritten; arrays are replaced, never written in
place), so a caller may keep and compare the model before and after a pass.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import replace

from bitline.sw.frontend.ir import Layer, Model

__all__ = ["Pass", "PassError", "run_passes", "copy_model", "tensor_uses", "producer", "absorb"]

#: A rewrite of the IR: takes a model, returns a new one.
Pass = Callable[[Model], Model]


class PassError(ValueError):
    """A pass cannot rewrite a layer the rest of the compiler cannot take as it is.

    Attributes
    ----------
    layer:
        Name of the layer the pass refused.
    op:
        The layer's IR op.
    reason:
        Why, naming the values involved (without the layer name).
    """

    def __init__(self, layer: Layer, reason: str):
        super().__init__(f"layer {layer.name!r} ({layer.op}): {reason}")
        self.layer = layer.name
        self.op = layer.op
        self.reason = reason


def run_passes(model: Model, passes: Iterable[Pass]) -> Model:
    """Return ``model`` rewritten by each pass of ``passes`` in turn (``model`` is untouched).

    Raises
    ------
    PassError
        From the first pass that refuses a layer.
    """
    for rewrite in passes:
        model = rewrite(model)
    return model


def copy_model(model: Model) -> Model:
    """Return a copy of ``model`` whose layers (with their input lists and attrs) are new.

    Weights, biases and attribute values are shared: passes replace them, never write them.
    """
    layers = [replace(layer, inputs=list(layer.inputs), attrs=dict(layer.attrs))
              for layer in model.layers]
    return replace(model, layers=layers)


def tensor_uses(model: Model) -> Counter:
    """Return how often each tensor is read; the model output counts as one read."""
    uses = Counter(tensor for layer in model.layers for tensor in layer.inputs)
    uses[model.output_name] += 1
    return uses


def producer(model: Model, tensor: str) -> Layer | None:
    """Return the layer that writes ``tensor`` (``None`` for the model input)."""
    for layer in model.layers:
        if layer.output == tensor:
            return layer
    return None


def absorb(model: Model, into: Layer, follower: Layer) -> None:
    """Remove ``follower`` from ``model``; ``into`` now writes the follower's output tensor.

    Only for a pass's own copy (:func:`copy_model`): it edits ``model`` and ``into``.
    """
    into.output = follower.output
    into.output_shape = follower.output_shape
    model.layers.remove(follower)
