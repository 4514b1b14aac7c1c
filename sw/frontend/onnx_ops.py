"""The per-op converters of the ONNX front-end: one ONNX node -> at most one IR layer.

:class:`OpConverters` holds one method ``_op_<OpType>`` per entry of :data:`SUPPORTED_OPS`;
the importer (:class:`bitline.sw.frontend.onnx_import._Importer`) inherits them and supplies
the graph state they use: ``error`` / ``image_error`` (a
:class:`~bitline.sw.frontend.onnx_import.FrontendError` naming file, node and op),
``activation`` / ``constant`` (input lookup), ``check_attrs`` / ``check_outputs``,
``add_layer`` and ``alias``. Each converter checks the node's attributes and shapes and
converts only; folding and fusion are passes (:mod:`bitline.sw.passes`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from bitline.sw.frontend.im2col import conv_output_hw

__all__ = ["ALLOWED_ATTRS", "SUPPORTED_OPS", "OnnxNode", "OpConverters", "batched"]

#: ONNX op types the front-end understands.
SUPPORTED_OPS = (
    "Conv", "Gemm", "MatMul", "Relu", "Clip", "MaxPool", "AveragePool", "GlobalAveragePool",
    "Add", "Flatten", "Reshape", "Squeeze", "BatchNormalization", "Identity", "Dropout",
    "Constant",
    # sw/frontend/onnx_ops_more.py:
    "ReduceMean", "Pad", "Mul", "Div", "Sub", "Concat", "LeakyRelu", "PRelu", "Softmax",
    "LogSoftmax", "Transpose",
)

# Attributes each op may carry; anything else is rejected rather than silently ignored.
ALLOWED_ATTRS = {
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
    "ReduceMean": {"axes", "keepdims", "noop_with_empty_axes"},
    "Pad": {"mode", "pads", "value"},
    "Mul": set(),
    "Div": set(),
    "Sub": set(),
    "Concat": {"axis"},
    "LeakyRelu": {"alpha"},
    "PRelu": set(),
    "Softmax": {"axis"},
    "LogSoftmax": {"axis"},
    "Transpose": {"perm"},
}


@dataclass
class OnnxNode:
    """An ONNX node with the unique name used in messages and in the IR."""

    name: str
    proto: onnx.NodeProto

    @property
    def op(self) -> str:
        return self.proto.op_type


def batched(shape: tuple[int, ...]) -> str:
    """Format a per-sample shape with its batch axis, ``(N, C, H, W)``."""
    return "(" + ", ".join(["N", *map(str, shape)]) + ")"


class OpConverters:
    """The converters, one method per ONNX op type (see the module docstring)."""

    def _op_Constant(self, node: OnnxNode) -> None:
        attrs = self.check_attrs(node)
        if len(attrs) != 1:
            raise self.error(node, f"needs exactly one value attribute, not {sorted(attrs)}")
        (key, value), = attrs.items()
        if key == "value":
            array = numpy_helper.to_array(value)
        else:
            array = np.asarray(value, dtype=np.float32 if "float" in key else np.int64)
        self.constants[node.proto.output[0]] = array

    def _op_Identity(self, node: OnnxNode) -> None:
        self.check_attrs(node)
        self._alias_or_constant(node)

    def _op_Dropout(self, node: OnnxNode) -> None:
        self.check_attrs(node)
        self.check_outputs(node)
        if len(node.proto.input) > 2 and node.proto.input[2]:
            training = self.constant(node, 2, "training_mode")
            if bool(np.asarray(training).reshape(-1)[0]):
                raise self.error(node, "training_mode=True is not supported")
        self._alias_or_constant(node)

    def _alias_or_constant(self, node: OnnxNode) -> None:
        source = self.resolve(node.proto.input[0]) if node.proto.input else ""
        if source in self.constants:
            self.constants[node.proto.output[0]] = self.constants[source]
            return
        self.activation(node, 0)
        self.alias(node, source)

    # compute layers ---------------------------------------------------------------------
    def _window(self, node: OnnxNode, attrs: dict, spatial: tuple[int, int],
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

    def _op_Conv(self, node: OnnxNode) -> None:
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

    def _vector_input(self, node: OnnxNode, index: int = 0) -> tuple[str, tuple]:
        source, shape = self.activation(node, index)
        if len(shape) != 1:
            raise self.error(
                node, f"input must be a vector (N, F), not shape {batched(shape)};"
                " insert a Flatten"
            )
        return source, shape

    def _op_Gemm(self, node: OnnxNode) -> None:
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
        with np.errstate(over="ignore"):
            weight = weight * np.float32(attrs.get("alpha", 1.0))
        if np.isfinite(matrix).all() and not np.isfinite(weight).all():
            raise self.error(node, f"weight B times alpha={attrs.get('alpha', 1.0)} overflows "
                             "float32")
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

    def _op_MatMul(self, node: OnnxNode) -> None:
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

    def _op_BatchNormalization(self, node: OnnxNode) -> None:
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
            if not np.isfinite(value).all():
                raise self.error(node, f"{role} holds NaN or infinity")
        scale, offset, mean, var = params
        if np.any(var + float(attrs.get("epsilon", 1e-5)) <= 0):
            raise self.error(node, "var + epsilon is not positive in some channel")
        gain = scale / np.sqrt(var + float(attrs.get("epsilon", 1e-5)))
        shift = offset - gain * mean
        # the layers these fold into hold float32 weights and biases
        if np.abs(np.concatenate([gain, shift])).max() > np.finfo(np.float32).max:
            raise self.error(node, "its scale / sqrt(var + epsilon) or B - mean * that "
                             "overflows float32")
        self.add_layer(node, "batchnorm", [source], shape, shape,
                       attrs={"gain": gain, "shift": shift})

    # activations and others --------------------------------------------------------------
    def _op_Relu(self, node: OnnxNode) -> None:
        self.check_attrs(node)
        source, shape = self.activation(node, 0)
        self.add_layer(node, "relu", [source], shape, shape)

    def _op_Clip(self, node: OnnxNode) -> None:
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

    def _pool(self, node: OnnxNode, op: str) -> None:
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

    def _op_MaxPool(self, node: OnnxNode) -> None:
        self._pool(node, "maxpool")

    def _op_AveragePool(self, node: OnnxNode) -> None:
        self._pool(node, "avgpool")

    def _op_GlobalAveragePool(self, node: OnnxNode) -> None:
        self.check_attrs(node)
        source, shape = self.activation(node, 0)
        if len(shape) != 3:
            raise self.image_error(node, shape)
        self.add_layer(node, "gap", [source], shape, (shape[0], 1, 1))

    def _op_Add(self, node: OnnxNode) -> None:
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
                node, f"residual Add needs equal shapes, not {batched(left_shape)} and "
                f"{batched(right_shape)} (broadcasting is not supported)"
            )
        self.add_layer(node, "add", [left, right], left_shape, left_shape)

    def _to_vector(self, node: OnnxNode, source: str, shape: tuple) -> None:
        if len(shape) == 1:
            self.alias(node, source)
        else:
            self.add_layer(node, "flatten", [source], shape, (int(np.prod(shape)),))

    def _op_Flatten(self, node: OnnxNode) -> None:
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

    def _op_Reshape(self, node: OnnxNode) -> None:
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
                f"for input {batched(shape)}"
            )
        self._to_vector(node, source, shape)

    def _op_Squeeze(self, node: OnnxNode) -> None:
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
                f"not axes {axes} of input {batched(shape)}"
            )
        self._to_vector(node, source, shape)
