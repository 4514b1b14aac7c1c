"""The ONNX front-end: load an ONNX model into the bitline IR (:mod:`bitline.sw.frontend.ir`).

The importer is a pure function of the ONNX graph. It only *converts*: every ONNX node
becomes at most one IR layer (Identity, Dropout and shape-preserving Flatten/Reshape become
aliases; BatchNormalization a ``batchnorm`` layer, the Add of a constant an ``add_constant``
layer, Relu / Clip a standalone ``relu`` / ``relu6``); all shapes are computed here, without
ONNX shape inference. This module reads the file and walks the graph; the per-op
converters are :mod:`bitline.sw.frontend.onnx_ops`. :func:`load_onnx` then runs the
rewrites of :mod:`bitline.sw.passes` (by default :data:`~bitline.sw.passes.DEFAULT_PASSES`:
fold BatchNorm and constant Adds into the producing Conv/Gemm, fuse ReLU / ReLU6 into their
producer).

Every user error raises :class:`FrontendError` (a ``ValueError``) whose message names the
file, the node and its op type, and the bad value. See docs/frontend.md.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import numpy_helper

from bitline.sw.frontend.ir import Layer, Model
from bitline.sw.frontend.qdq import QuantizationError, strip_quantization
from bitline.sw.frontend.onnx_ops import (
    ALLOWED_ATTRS, SUPPORTED_OPS, OnnxNode, OpConverters, batched,
)
from bitline.sw.frontend.onnx_ops_more import MoreConverters
from bitline.sw.frontend.simplify import simplify_onnx
from bitline.sw.passes import DEFAULT_PASSES, Pass, PassError, run_passes

__all__ = ["FrontendError", "load_onnx", "MIN_OPSET"]

#: Oldest default-domain opset accepted (Clip bounds are attributes before 11, inputs after).
MIN_OPSET = 9


class FrontendError(ValueError):
    """A model the front-end cannot import; the message names file, node, op and value."""


def load_onnx(source, *, name: str | None = None,
              passes: Sequence[Pass] = DEFAULT_PASSES, simplify: bool = True) -> Model:
    """Import an ONNX model into the IR.

    Parameters
    ----------
    source:
        A path (``str`` or ``os.PathLike``) to an ``.onnx`` file, the serialized bytes of
        one, or an ``onnx.ModelProto``.
    name:
        Model name; defaults to the graph name, else the file stem, else ``"model"``.
    passes:
        IR passes run after the conversion, in order (default
        :data:`bitline.sw.passes.DEFAULT_PASSES`); ``()`` returns the converted IR as it is.
    simplify:
        Simplify a copy of the graph first (:func:`bitline.sw.frontend.simplify.simplify_onnx`:
        shape subgraphs and other constant arithmetic folded, Identity / Dropout, dead nodes
        and unused initializers removed); ``False`` converts the graph as it is written.

    Returns
    -------
    Model
        Layers in topological order with float32 weights; with the default passes BatchNorm
        folded and ReLU/ReLU6 fused where possible. Shapes exclude the batch dimension.

    Raises
    ------
    FrontendError
        If the file is missing, truncated or malformed, fails ``onnx.checker``, or uses an op,
        attribute, rank or parameter the front-end does not support, or if a pass refuses
        a layer (e.g. a BatchNorm that cannot be folded). The message names the file, the
        node, its op type and the offending value.
    """
    proto, label = _read(source)
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as error:
        detail = " ".join(str(error).split()) or "invalid"
        if len(detail) > 400:
            detail = detail[:400] + " ..."
        raise FrontendError(f"{label}: not a valid ONNX model: {detail}") from None
    if name is None:
        name = proto.graph.name or (Path(label).stem if label[:1] != "<" else "") or "model"
    # A quantized file (QDQ / QONNX nodes) becomes its float graph plus the record of its
    # quantization (sw/frontend/qdq.py), before anything could fold its integer weights.
    try:
        proto, quantization = strip_quantization(proto, label)
    except QuantizationError as error:
        raise FrontendError(str(error)) from None
    if simplify:
        proto = simplify_onnx(proto)
    importer = _Importer(proto, label)
    model = importer.run(name)
    if quantization is not None:
        model = replace(model, quantization=quantization)
    try:
        return run_passes(model, passes)
    except PassError as error:
        op_type = importer.op_types.get(error.layer, error.op)
        raise FrontendError(
            f"{label}: node {error.layer!r} ({op_type}): {error.reason}"
        ) from None


def _read(source) -> tuple[onnx.ModelProto, str]:
    if isinstance(source, onnx.ModelProto):
        return source, "<ModelProto>"
    if isinstance(source, (bytes, bytearray, memoryview)):
        label = "<bytes>"
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        label = os.fspath(source)
        path = Path(label)
        if not path.is_file():
            raise FrontendError(f"{label}: no such ONNX file")
        try:
            data = path.read_bytes()
        except OSError as error:
            raise FrontendError(f"{label}: cannot read: {error.strerror or error}") from None
    else:
        raise FrontendError(
            f"load_onnx needs a path, bytes or onnx.ModelProto, not {type(source).__name__}"
        )
    if not data:
        raise FrontendError(f"{label}: empty file, not an ONNX model")
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as error:
        raise FrontendError(
            f"{label}: malformed or truncated ONNX file ({type(error).__name__}: {error})"
        ) from None
    if not proto.HasField("graph"):
        raise FrontendError(f"{label}: malformed or truncated ONNX file (no graph)")
    return proto, label


def _attrs(proto: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in proto.attribute}


def _decode(value):
    return value.decode() if isinstance(value, bytes) else value


class _Importer(OpConverters, MoreConverters):
    """State of one import: constants, activation shapes, aliases and the layer list.

    The per-op converters (``_op_<OpType>``) are inherited from
    :class:`~bitline.sw.frontend.onnx_ops.OpConverters` and
    :class:`~bitline.sw.frontend.onnx_ops_more.MoreConverters`; this class holds the graph walk and
    the tensor tables they read and write.
    """

    def __init__(self, proto: onnx.ModelProto, label: str):
        self.proto = proto
        self.graph = proto.graph
        self.label = label
        self.constants: dict[str, np.ndarray] = {}
        for init in self.graph.initializer:
            array = numpy_helper.to_array(init)
            if array.dtype.kind not in "biuf":     # strings would be parsed as numbers later
                raise FrontendError(
                    f"{label}: initializer {init.name!r} has data type "
                    f"{onnx.TensorProto.DataType.Name(init.data_type)}, not a number type"
                )
            self.constants[init.name] = array
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.aliases: dict[str, str] = {}
        self.layers: list[Layer] = []
        # ONNX op type of each layer, for messages about a layer a pass refuses.
        self.op_types: dict[str, str] = {}
        # Transposes that move no data: tensor -> (source tensor, its shape as permuted).
        self.views: dict[str, tuple[str, tuple[int, ...]]] = {}
        self.output_transform: str | None = None
        self.opset = 0

    # -- errors -------------------------------------------------------------------------
    def error(self, node: OnnxNode, message: str) -> FrontendError:
        return FrontendError(f"{self.label}: node {node.name!r} ({node.op}): {message}")

    def image_error(self, node: OnnxNode, shape: tuple[int, ...]) -> FrontendError:
        return self.error(node, f"input must be an image (N, C, H, W), not shape {batched(shape)}")

    # -- driver -------------------------------------------------------------------------
    def run(self, name: str) -> Model:
        opset = self.opset = self._opset()
        if opset < MIN_OPSET:
            raise FrontendError(
                f"{self.label}: opset {opset} is not supported (need >= {MIN_OPSET})"
            )
        input_name, input_shape = self._graph_input()
        self.shapes[input_name] = input_shape
        if len(self.graph.output) != 1:
            names = [o.name for o in self.graph.output]
            raise FrontendError(
                f"{self.label}: the graph must have exactly one output, not {len(names)} {names}"
            )
        nodes = self._named_nodes()
        for node in nodes:
            self._convert(node)
        output_name = self.resolve(self.graph.output[0].name)
        if output_name not in self.shapes:
            raise FrontendError(
                f"{self.label}: graph output {self.graph.output[0].name!r} is not computed "
                "from the graph input"
            )
        return Model(
            name=name,
            input_name=input_name,
            input_shape=input_shape,
            layers=self.layers,
            output_name=output_name,
            source=self.label,
            output_transform=self.output_transform,
        )

    def _opset(self) -> int:
        for entry in self.proto.opset_import:
            if entry.domain in ("", "ai.onnx"):
                return int(entry.version)
        raise FrontendError(f"{self.label}: no default-domain opset in opset_import")

    def _graph_input(self) -> tuple[str, tuple[int, ...]]:
        inputs = [i for i in self.graph.input if i.name not in self.constants]
        if len(inputs) != 1:
            names = [i.name for i in inputs]
            raise FrontendError(
                f"{self.label}: the graph must have exactly one input (besides initializers), "
                f"not {len(names)} {names}"
            )
        value = inputs[0]
        tensor_type = value.type.tensor_type
        if tensor_type.elem_type != onnx.TensorProto.FLOAT:
            dtype = onnx.TensorProto.DataType.Name(tensor_type.elem_type)
            raise FrontendError(
                f"{self.label}: graph input {value.name!r} must be float32, not {dtype}"
            )
        dims = list(tensor_type.shape.dim)
        if len(dims) not in (2, 4):
            raise FrontendError(
                f"{self.label}: graph input {value.name!r} must have rank 4 (N, C, H, W) or "
                f"2 (N, F), not rank {len(dims)}"
            )
        batch = dims[0]
        if batch.HasField("dim_value") and batch.dim_value not in (0, 1):
            raise FrontendError(
                f"{self.label}: graph input {value.name!r} has batch size {batch.dim_value}; "
                "use 1 or a dynamic batch dimension"
            )
        shape = []
        for axis, dim in enumerate(dims[1:], start=1):
            if not dim.HasField("dim_value") or dim.dim_value <= 0:
                what = dim.dim_param if dim.HasField("dim_param") else "unknown"
                raise FrontendError(
                    f"{self.label}: graph input {value.name!r} needs a static size for axis "
                    f"{axis}, not {what!r}"
                )
            shape.append(int(dim.dim_value))
        return value.name, tuple(shape)

    def _named_nodes(self) -> list[OnnxNode]:
        seen: set[str] = set()
        nodes = []
        for index, proto in enumerate(self.graph.node):
            name = proto.name or f"{proto.op_type.lower()}_{index}"
            if name in seen:
                name = f"{name}_{index}"
            seen.add(name)
            nodes.append(OnnxNode(name, proto))
        return nodes

    # -- tensors ------------------------------------------------------------------------
    def resolve(self, tensor: str) -> str:
        while tensor in self.aliases:
            tensor = self.aliases[tensor]
        return tensor

    def activation(self, node: OnnxNode, index: int, role: str = "input") -> tuple[str, tuple]:
        """Return the resolved name and shape of activation input ``index`` of ``node``."""
        inputs = node.proto.input
        if index >= len(inputs) or not inputs[index]:
            raise self.error(node, f"{role} (input {index}) is missing")
        tensor = self.resolve(inputs[index])
        if tensor in self.views:
            source, shape = self.views[tensor]
            if node.op not in ("Flatten", "Reshape"):
                raise self.error(
                    node, f"{role} {inputs[index]!r} is a Transpose to {batched(shape)}; a "
                    "Transpose is only supported as a layout no-op before a Flatten / Reshape "
                    "to a vector"
                )
            return source, self.shapes[source]
        if tensor in self.shapes:
            return tensor, self.shapes[tensor]
        if tensor in self.constants:
            raise self.error(
                node,
                f"{role} {inputs[index]!r} is a constant; only activations computed from the "
                "graph input are supported here",
            )
        raise self.error(node, f"{role} {inputs[index]!r} is not computed from the graph input")

    def constant(self, node: OnnxNode, index: int, role: str, required: bool = True):
        """Return constant input ``index`` of ``node`` (``None`` if optional and absent)."""
        inputs = node.proto.input
        if index >= len(inputs) or not inputs[index]:
            if required:
                raise self.error(node, f"{role} (input {index}) is missing")
            return None
        tensor = self.resolve(inputs[index])
        if tensor not in self.constants:
            raise self.error(
                node,
                f"{role} {inputs[index]!r} is not an initializer or Constant (weights and "
                "parameters must be constant)",
            )
        return self.constants[tensor]

    def check_attrs(self, node: OnnxNode) -> dict:
        attrs = {key: _decode(value) for key, value in _attrs(node.proto).items()}
        unknown = sorted(set(attrs) - ALLOWED_ATTRS[node.op])
        if unknown:
            raise self.error(node, f"unsupported attribute {unknown[0]}={attrs[unknown[0]]!r}")
        return attrs

    def check_outputs(self, node: OnnxNode, count: int = 1) -> str:
        outputs = node.proto.output
        extra = [o for o in outputs[count:] if o and self._is_used(o)]
        if extra:
            raise self.error(node, f"optional output {extra[0]!r} is not supported")
        return outputs[0]

    def _is_used(self, tensor: str) -> bool:
        if any(o.name == tensor for o in self.graph.output):
            return True
        return any(tensor in n.input for n in self.graph.node)

    def add_layer(self, node: OnnxNode, op: str, inputs: list[str], input_shape, output_shape,
                  *, name: str | None = None, output: str | None = None, **fields) -> Layer:
        """Append a layer for ``node`` (its name and first output unless ``name`` / ``output``)."""
        layer = Layer(
            name=name or node.name,
            op=op,
            inputs=inputs,
            output=output or node.proto.output[0],
            input_shape=tuple(int(d) for d in input_shape),
            output_shape=tuple(int(d) for d in output_shape),
            **fields,
        )
        self.layers.append(layer)
        self.shapes[layer.output] = layer.output_shape
        self.op_types[layer.name] = node.op
        return layer

    def alias(self, node: OnnxNode, source: str) -> None:
        self.aliases[node.proto.output[0]] = source

    # -- conversion ----------------------------------------------------------------
    def _convert(self, node: OnnxNode) -> None:
        if node.proto.domain not in ("", "ai.onnx") or node.op not in SUPPORTED_OPS:
            domain = f" (domain {node.proto.domain!r})" if node.proto.domain else ""
            raise self.error(
                node,
                f"unsupported op{domain}; supported: {', '.join(SUPPORTED_OPS)}",
            )
        getattr(self, f"_op_{node.op}")(node)
