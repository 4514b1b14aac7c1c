"""The ONNX front-end: load an ONNX model into the bitline IR (:mod:`bitline.sw.frontend.ir`).

The importer is a pure function of the ONNX graph. It only *converts*: every ONNX node
becomes at most one IR layer (Identity, Dropout and shape-preserving Flatten/Reshape become
aliases; BatchNormalization a ``batchnorm`` layer, the Add of a constant an ``add_constant``
layer, Relu / Clip a standalone ``relu`` / ``relu6``); all shapes are computed here, without
ONNX shape inference. :func:`load_onnx` then runs the rewrites of :mod:`bitline.sw.passes`
(by default :data:`~bitline.sw.passes.DEFAULT_PASSES`: fold BatchNorm and constant Adds into
the producing Conv/Gemm, fuse ReLU / ReLU6 into their producer).

Every user error raises :class:`FrontendError` (a ``ValueError``) whose message names the
file, the node and its op type, and the bad value. See docs/frontend.md.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import numpy_helper

from bitline.sw.frontend.im2col import conv_output_hw
from bitline.sw.frontend.ir import Layer, Model
from bitline.sw.passes import DEFAULT_PASSES, Pass, PassError, run_passes

__all__ = ["FrontendError", "load_onnx", "SUPPORTED_OPS", "MIN_OPSET"]

#: Oldest default-domain opset accepted (Clip bounds are attributes before 11, inputs after).
MIN_OPSET = 9

#: ONNX op types the front-end understands.
SUPPORTED_OPS = (
    "Conv", "Gemm", "MatMul", "Relu", "Clip", "MaxPool", "AveragePool", "GlobalAveragePool",
    "Add", "Flatten", "Reshape", "Squeeze", "BatchNormalization", "Identity", "Dropout",
    "Constant",
)

# Attributes each op may carry; anything else is rejected rather than silently ignored.
_ALLOWED_ATTRS = {
    "Conv": {"auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"},
    "Gemm": {"alpha", "beta", "transA", "transB"},
    "MatMul": set(),
    "Relu": set(),
    "Clip": {"min", "max"},
    "MaxPool": {"auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "storage_order",
                "strides"},
    "AveragePool": {"auto_pad", "ceil_mode", "count_include_pad", "dilations", "kernel_shape",
                    "pads", "strides"},
    "GlobalAveragePool": set(),
    "Add": set(),
    "Flatten": {"axis"},
    "Reshape": {"allowzero"},
    "Squeeze": {"axes"},
    "BatchNormalization": {"epsilon", "momentum", "training_mode", "spatial"},
    "Identity": set(),
    "Dropout": {"ratio", "seed"},
    "Constant": {"value", "value_float", "value_floats", "value_int", "value_ints"},
}


class FrontendError(ValueError):
    """A model the front-end cannot import; the message names file, node, op and value."""


@dataclass
class _Node:
    """An ONNX node with the unique name used in messages and in the IR."""

    name: str
    proto: onnx.NodeProto

    @property
    def op(self) -> str:
        return self.proto.op_type


def load_onnx(source, *, name: str | None = None,
              passes: Sequence[Pass] = DEFAULT_PASSES) -> Model:
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
    importer = _Importer(proto, label)
    model = importer.run(name)
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


def _batched(shape: tuple[int, ...]) -> str:
    """Format a per-sample shape with its batch axis, ``(N, C, H, W)``."""
    return "(" + ", ".join(["N", *map(str, shape)]) + ")"


def _decode(value):
    return value.decode() if isinstance(value, bytes) else value


class _Importer:
    """State of one import: constants, activation shapes, aliases and the layer list."""

    def __init__(self, proto: onnx.ModelProto, label: str):
        self.proto = proto
        self.graph = proto.graph
        self.label = label
        self.constants: dict[str, np.ndarray] = {
            init.name: numpy_helper.to_array(init) for init in self.graph.initializer
        }
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.aliases: dict[str, str] = {}
        self.layers: list[Layer] = []
        # ONNX op type of each layer, for messages about a layer a pass refuses.
        self.op_types: dict[str, str] = {}

    # -- errors -------------------------------------------------------------------------
    def error(self, node: _Node, message: str) -> FrontendError:
        return FrontendError(f"{self.label}: node {node.name!r} ({node.op}): {message}")

    def image_error(self, node: _Node, shape: tuple[int, ...]) -> FrontendError:
        return self.error(node, f"input must be an image (N, C, H, W), not shape {_batched(shape)}")

    # -- driver -------------------------------------------------------------------------
    def run(self, name: str) -> Model:
        opset = self._opset()
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

    def _named_nodes(self) -> list[_Node]:
        seen: set[str] = set()
        nodes = []
        for index, proto in enumerate(self.graph.node):
            name = proto.name or f"{proto.op_type.lower()}_{index}"
            if name in seen:
                name = f"{name}_{index}"
            seen.add(name)
            nodes.append(_Node(name, proto))
        return nodes

    # -- tensors ------------------------------------------------------------------------
    def resolve(self, tensor: str) -> str:
        while tensor in self.aliases:
            tensor = self.aliases[tensor]
        return tensor

    def activation(self, node: _Node, index: int, role: str = "input") -> tuple[str, tuple]:
        """Return the resolved name and shape of activation input ``index`` of ``node``."""
        inputs = node.proto.input
        if index >= len(inputs) or not inputs[index]:
            raise self.error(node, f"{role} (input {index}) is missing")
        tensor = self.resolve(inputs[index])
        if tensor in self.shapes:
            return tensor, self.shapes[tensor]
        if tensor in self.constants:
            raise self.error(
                node,
                f"{role} {inputs[index]!r} is a constant; only activations computed from the "
                "graph input are supported here",
            )
        raise self.error(node, f"{role} {inputs[index]!r} is not computed from the graph input")

    def constant(self, node: _Node, index: int, role: str, required: bool = True):
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

    def check_attrs(self, node: _Node) -> dict:
        attrs = {key: _decode(value) for key, value in _attrs(node.proto).items()}
        unknown = sorted(set(attrs) - _ALLOWED_ATTRS[node.op])
        if unknown:
            raise self.error(node, f"unsupported attribute {unknown[0]}={attrs[unknown[0]]!r}")
        return attrs

    def check_outputs(self, node: _Node, count: int = 1) -> str:
        outputs = node.proto.output
        extra = [o for o in outputs[count:] if o and self._is_used(o)]
        if extra:
            raise self.error(node, f"optional output {extra[0]!r} is not supported")
        return outputs[0]

    def _is_used(self, tensor: str) -> bool:
        if any(o.name == tensor for o in self.graph.output):
            return True
        return any(tensor in n.input for n in self.graph.node)

    def add_layer(self, node: _Node, op: str, inputs: list[str], input_shape, output_shape,
                  **fields) -> Layer:
        layer = Layer(
            name=node.name,
            op=op,
            inputs=inputs,
            output=node.proto.output[0],
            input_shape=tuple(int(d) for d in input_shape),
            output_shape=tuple(int(d) for d in output_shape),
            **fields,
        )
        self.layers.append(layer)
        self.shapes[layer.output] = layer.output_shape
        self.op_types[layer.name] = node.op
        return layer

    def alias(self, node: _Node, source: str) -> None:
        self.aliases[node.proto.output[0]] = source

    # -- conversion ----------------------------------------------------------------
    def _convert(self, node: _Node) -> None:
        if node.proto.domain not in ("", "ai.onnx") or node.op not in SUPPORTED_OPS:
            domain = f" (domain {node.proto.domain!r})" if node.proto.domain else ""
            raise self.error(
                node,
                f"unsupported op{domain}; supported: {', '.join(SUPPORTED_OPS)}",
            )
        getattr(self, f"_op_{node.op}")(node)

    def _op_Constant(self, node: _Node) -> None:
        attrs = self.check_attrs(node)
        if len(attrs) != 1:
            raise self.error(node, f"needs exactly one value attribute, not {sorted(attrs)}")
        (key, value), = attrs.items()
        if key == "value":
            array = numpy_helper.to_array(value)
        else:
            array = np.asarray(value, dtype=np.float32 if "float" in key else np.int64)
        self.constants[node.proto.output[0]] = array

    def _op_Identity(self, node: _Node) -> None:
        self.check_attrs(node)
        self._alias_or_constant(node)

    def _op_Dropout(self, node: _Node) -> None:
        self.check_attrs(node)
        self.check_outputs(node)
        if len(node.proto.input) > 2 and node.proto.input[2]:
            training = self.constant(node, 2, "training_mode")
            if bool(np.asarray(training).reshape(-1)[0]):
                raise self.error(node, "training_mode=True is not supported")
        self._alias_or_constant(node)

    def _alias_or_constant(self, node: _Node) -> None:
        source = self.resolve(node.proto.input[0]) if node.proto.input else ""
        if source in self.constants:
            self.constants[node.proto.output[0]] = self.constants[source]
            return
        self.activation(node, 0)
        self.alias(node, source)

    # compute layers ---------------------------------------------------------------------
    def _window(self, node: _Node, attrs: dict, spatial: tuple[int, int],
                kernel: tuple[int, int], dilation: tuple[int, int]):
        """Return ``(stride, pads, (out_h, out_w))`` of a conv or pooling node."""
        stride = tuple(int(s) for s in attrs.get("strides", (1, 1)))
        if len(stride) != 2 or min(stride) < 1:
            raise self.error(node, f"strides must be two integers >= 1, not {list(stride)}")
        auto_pad = attrs.get("auto_pad", "NOTSET")
        h, w = spatial
        if auto_pad == "NOTSET":
            pads = tuple(int(p) for p in attrs.get("pads", (0, 0, 0, 0)))
            if len(pads) != 4 or min(pads) < 0:
                raise self.error(node, f"pads must be four integers >= 0, not {list(pads)}")
        elif auto_pad == "VALID":
            pads = (0, 0, 0, 0)
        elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            begin, end = [], []
            for size, k, s, d in zip((h, w), kernel, stride, dilation):
                out = -(-size // s)
                total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
                # SAME_UPPER puts the odd pixel at the end, SAME_LOWER at the beginning.
                head = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
                begin.append(head)
                end.append(total - head)
            pads = (begin[0], begin[1], end[0], end[1])
        else:
            raise self.error(node, f"unsupported attribute auto_pad={auto_pad!r}")
        try:
            out_hw = conv_output_hw(h, w, kernel, stride, pads, dilation)
        except ValueError as error:
            raise self.error(node, str(error)) from None
        return stride, pads, out_hw

    def _op_Conv(self, node: _Node) -> None:
        attrs = self.check_attrs(node)
        self.check_outputs(node)
        source, shape = self.activation(node, 0)
        weight = self.constant(node, 1, "weight").astype(np.float32)
        bias = self.constant(node, 2, "bias", required=False)
        if weight.ndim != 4:
            raise self.error(
                node, f"only 2-D convolutions are supported (weight rank 4), not weight shape "
                f"{weight.shape}"
            )
        if len(shape) != 3:
            raise self.image_error(node, shape)
        channels = shape[0]
        out_channels, per_group, kh, kw = weight.shape
        groups = int(attrs.get("group", 1))
        if groups == 1:
            if per_group != channels:
                raise self.error(
                    node, f"weight shape {weight.shape} does not match {channels} input channels"
                )
        elif not (groups == channels == out_channels and per_group == 1):
            raise self.error(
                node,
                f"unsupported attribute group={groups}: only 1 or depthwise (group == input "
                f"channels == output channels) is supported; input channels {channels}, "
                f"output channels {out_channels}",
            )
        kernel = (kh, kw)
        if "kernel_shape" in attrs and tuple(attrs["kernel_shape"]) != kernel:
            raise self.error(
                node, f"kernel_shape {list(attrs['kernel_shape'])} does not match weight shape "
                f"{weight.shape}"
            )
        dilation = tuple(int(d) for d in attrs.get("dilations", (1, 1)))
        if len(dilation) != 2 or min(dilation) < 1:
            raise self.error(node, f"dilations must be two integers >= 1, not {list(dilation)}")
        stride, pads, (out_h, out_w) = self._window(node, attrs, shape[1:], kernel, dilation)
        if bias is not None:
            bias = bias.astype(np.float32)
            if bias.shape != (out_channels,):
                raise self.error(node, f"bias shape {bias.shape} is not ({out_channels},)")
        self.add_layer(
            node, "conv", [source], shape, (out_channels, out_h, out_w),
            attrs={"stride": stride, "pads": pads, "dilation": dilation, "groups": groups},
            weight=np.ascontiguousarray(weight), bias=bias,
        )

    def _vector_input(self, node: _Node, index: int = 0) -> tuple[str, tuple]:
        source, shape = self.activation(node, index)
        if len(shape) != 1:
            raise self.error(
                node, f"input must be a vector (N, F), not shape {_batched(shape)};"
                " insert a Flatten"
            )
        return source, shape

    def _op_Gemm(self, node: _Node) -> None:
        attrs = self.check_attrs(node)
        self.check_outputs(node)
        if int(attrs.get("transA", 0)) != 0:
            raise self.error(node, f"unsupported attribute transA={attrs['transA']}")
        source, (features,) = self._vector_input(node)
        matrix = self.constant(node, 1, "weight B").astype(np.float32)
        if matrix.ndim != 2:
            raise self.error(node, f"weight B must be a matrix, not shape {matrix.shape}")
        weight = matrix if int(attrs.get("transB", 0)) else matrix.T
        if weight.shape[1] != features:
            raise self.error(
                node, f"weight shape {matrix.shape} (transB={int(attrs.get('transB', 0))}) does "
                f"not match {features} input features"
            )
        weight = weight * np.float32(attrs.get("alpha", 1.0))
        out_features = weight.shape[0]
        bias = self.constant(node, 2, "bias C", required=False)
        if bias is not None:
            try:
                bias = np.broadcast_to(bias.astype(np.float32), (1, out_features))[0]
            except ValueError:
                raise self.error(
                    node, f"bias C shape {bias.shape} does not broadcast to (1, {out_features})"
                ) from None
            bias = bias * np.float32(attrs.get("beta", 1.0))
        self.add_layer(
            node, "gemm", [source], (features,), (out_features,),
            weight=np.ascontiguousarray(weight, dtype=np.float32),
            bias=None if bias is None else np.ascontiguousarray(bias, dtype=np.float32),
        )

    def _op_MatMul(self, node: _Node) -> None:
        self.check_attrs(node)
        self.check_outputs(node)
        source, (features,) = self._vector_input(node)
        matrix = self.constant(node, 1, "second operand B").astype(np.float32)
        if matrix.ndim != 2 or matrix.shape[0] != features:
            raise self.error(
                node, f"second operand shape {matrix.shape} is not ({features}, out_features)"
            )
        self.add_layer(
            node, "gemm", [source], (features,), (matrix.shape[1],),
            weight=np.ascontiguousarray(matrix.T),
        )

    def _op_BatchNormalization(self, node: _Node) -> None:
        attrs = self.check_attrs(node)
        self.check_outputs(node)
        if int(attrs.get("training_mode", 0)):
            raise self.error(node, "unsupported attribute training_mode=1")
        if int(attrs.get("spatial", 1)) != 1:
            raise self.error(node, f"unsupported attribute spatial={attrs['spatial']}")
        source, shape = self.activation(node, 0)
        channels = shape[0]
        params = [
            self.constant(node, index, role).astype(np.float64)
            for index, role in enumerate(("scale", "B", "mean", "var"), start=1)
        ]
        for role, value in zip(("scale", "B", "mean", "var"), params):
            if value.shape != (channels,):
                raise self.error(node, f"{role} shape {value.shape} is not ({channels},)")
        scale, offset, mean, var = params
        gain = scale / np.sqrt(var + float(attrs.get("epsilon", 1e-5)))
        self.add_layer(
            node, "batchnorm", [source], shape, shape,
            attrs={"gain": gain, "shift": offset - gain * mean},
        )

    # activations and others --------------------------------------------------------------
    def _op_Relu(self, node: _Node) -> None:
        self.check_attrs(node)
        source, shape = self.activation(node, 0)
        self.add_layer(node, "relu", [source], shape, shape)

    def _op_Clip(self, node: _Node) -> None:
        attrs = self.check_attrs(node)
        source, shape = self.activation(node, 0)
        low = self.constant(node, 1, "min", required=False)
        high = self.constant(node, 2, "max", required=False)
        low = float(np.asarray(low).reshape(-1)[0]) if low is not None else attrs.get("min")
        high = float(np.asarray(high).reshape(-1)[0]) if high is not None else attrs.get("max")
        if low is None:
            low = -np.inf
        if high is None:
            high = np.inf
        if low == 0.0 and high == 6.0:
            op = "relu6"
        elif low == 0.0 and high == np.inf:
            op = "relu"
        else:
            raise self.error(
                node, f"only Clip(min=0, max=6) (ReLU6) or Clip(min=0) (ReLU) is supported, not "
                f"min={low}, max={high}"
            )
        self.add_layer(node, op, [source], shape, shape)

    def _pool(self, node: _Node, op: str) -> None:
        attrs = self.check_attrs(node)
        self.check_outputs(node)
        source, shape = self.activation(node, 0)
        if len(shape) != 3:
            raise self.image_error(node, shape)
        if "kernel_shape" not in attrs:
            raise self.error(node, "attribute kernel_shape is missing")
        kernel = tuple(int(k) for k in attrs["kernel_shape"])
        if len(kernel) != 2 or min(kernel) < 1:
            raise self.error(node, f"kernel_shape must be two integers >= 1, not {list(kernel)}")
        dilation = tuple(int(d) for d in attrs.get("dilations", (1, 1)))
        if dilation != (1, 1):
            raise self.error(node, f"unsupported attribute dilations={list(dilation)}")
        if int(attrs.get("storage_order", 0)) != 0:
            raise self.error(node, f"unsupported attribute storage_order={attrs['storage_order']}")
        stride, pads, out_hw = self._window(node, attrs, shape[1:], kernel, dilation)
        if int(attrs.get("ceil_mode", 0)):
            ceil_hw = tuple(
                -(-(size + pads[axis] + pads[axis + 2] - k) // s) + 1
                for axis, (size, k, s) in enumerate(zip(shape[1:], kernel, stride))
            )
            if ceil_hw != out_hw:
                raise self.error(
                    node, f"unsupported attribute ceil_mode=1 (changes the output size from "
                    f"{out_hw} to {ceil_hw})"
                )
        layer_attrs = {"kernel": kernel, "stride": stride, "pads": pads}
        if op == "avgpool":
            layer_attrs["count_include_pad"] = bool(int(attrs.get("count_include_pad", 0)))
        self.add_layer(node, op, [source], shape, (shape[0], *out_hw), attrs=layer_attrs)

    def _op_MaxPool(self, node: _Node) -> None:
        self._pool(node, "maxpool")

    def _op_AveragePool(self, node: _Node) -> None:
        self._pool(node, "avgpool")

    def _op_GlobalAveragePool(self, node: _Node) -> None:
        self.check_attrs(node)
        source, shape = self.activation(node, 0)
        if len(shape) != 3:
            raise self.image_error(node, shape)
        self.add_layer(node, "gap", [source], shape, (shape[0], 1, 1))

    def _op_Add(self, node: _Node) -> None:
        self.check_attrs(node)
        if len(node.proto.input) != 2:
            raise self.error(node, f"needs two inputs, not {len(node.proto.input)}")
        resolved = [self.resolve(t) for t in node.proto.input]
        is_constant = [t in self.constants and t not in self.shapes for t in resolved]
        if all(is_constant):
            raise self.error(node, "Add of two constants is not supported")
        if any(is_constant):
            # y = activation + constant: the fold pass makes it the producer's bias.
            index = 0 if is_constant[1] else 1
            source, shape = self.activation(node, index)
            value = self.constants[resolved[1 - index]].astype(np.float32)
            self.add_layer(node, "add_constant", [source], shape, shape,
                           attrs={"value": value})
            return
        left, left_shape = self.activation(node, 0)
        right, right_shape = self.activation(node, 1)
        if left_shape != right_shape:
            raise self.error(
                node, f"residual Add needs equal shapes, not {_batched(left_shape)} and "
                f"{_batched(right_shape)} (broadcasting is not supported)"
            )
        self.add_layer(node, "add", [left, right], left_shape, left_shape)

    def _to_vector(self, node: _Node, source: str, shape: tuple) -> None:
        if len(shape) == 1:
            self.alias(node, source)
        else:
            self.add_layer(node, "flatten", [source], shape, (int(np.prod(shape)),))

    def _op_Flatten(self, node: _Node) -> None:
        attrs = self.check_attrs(node)
        source, shape = self.activation(node, 0)
        rank = len(shape) + 1
        axis = int(attrs.get("axis", 1))
        if axis < 0:
            axis += rank
        if axis != 1:
            raise self.error(
                node, f"unsupported attribute axis={attrs.get('axis')}: only axis=1 (keep the "
                "batch dimension) is supported"
            )
        self._to_vector(node, source, shape)

    def _op_Reshape(self, node: _Node) -> None:
        attrs = self.check_attrs(node)
        source, shape = self.activation(node, 0)
        target = [int(v) for v in np.asarray(self.constant(node, 1, "shape")).reshape(-1)]
        features = int(np.prod(shape))
        ok = len(target) == 2 and (
            (target[0] in (0, -1, 1) and target[1] == features)
            or (target[0] in (0, 1) and target[1] == -1)
        )
        if target[:1] == [0] and int(attrs.get("allowzero", 0)):
            ok = False
        if not ok:
            raise self.error(
                node, f"only a Reshape to a vector (N, -1) is supported; target shape {target} "
                f"for input {_batched(shape)}"
            )
        self._to_vector(node, source, shape)

    def _op_Squeeze(self, node: _Node) -> None:
        attrs = self.check_attrs(node)
        source, shape = self.activation(node, 0)
        axes = attrs.get("axes")
        if axes is None:
            axes = self.constant(node, 1, "axes", required=False)
        rank = len(shape) + 1
        axes = None if axes is None else sorted(int(a) % rank for a in np.asarray(axes).reshape(-1))
        spatial = list(range(2, rank))
        if len(shape) != 3 or axes != spatial or shape[1:] != (1, 1):
            raise self.error(
                node, f"only a Squeeze of the 1x1 spatial axes [2, 3] to a vector is supported, "
                f"not axes {axes} of input {_batched(shape)}"
            )
        self._to_vector(node, source, shape)
