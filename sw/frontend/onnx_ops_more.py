"""Converters for the ops that exported CNNs use beyond the core set of :mod:`onnx_ops`.

ReduceMean over the spatial axes (global average pooling), Pad (folded into the next conv or
pooling by :func:`bitline.sw.passes.fold_pads`), Mul / Div / Sub by per-channel or scalar
constants (a per-channel ``batchnorm`` affine or an ``add_constant``, folded or lowered by the
passes), Concat along channels (a ``concat`` layer the host runs in integers), LeakyReLU /
PReLU (a ``leaky_relu`` layer the host runs in integers: the output unit's one multiplier per
channel cannot give a sign-dependent slope), a final Softmax / LogSoftmax
(``Model.output_transform``, run by the host) and Transposes that do not move data. Like the
core converters, each one checks the node and converts it; the state it uses is the
importer's (:class:`bitline.sw.frontend.onnx_import._Importer`). See docs/frontend.md,
"What is accepted".
"""

from __future__ import annotations

import numpy as np

from bitline.sw.frontend.onnx_ops import OnnxNode, batched

__all__ = ["MoreConverters"]


class MoreConverters:
    """The converters of this module, mixed into the importer (see the module docstring)."""

    # -- ReduceMean ------------------------------------------------------------------------
    def _op_ReduceMean(self, node: OnnxNode) -> None:
        attrs = self.check_attrs(node)
        self.check_outputs(node)
        source, shape = self.activation(node, 0)
        axes = attrs.get("axes")
        if axes is None and len(node.proto.input) > 1 and node.proto.input[1]:
            axes = self.constant(node, 1, "axes")
        if int(attrs.get("noop_with_empty_axes", 0)):
            raise self.error(node, "unsupported attribute noop_with_empty_axes=1")
        rank = len(shape) + 1
        axes = None if axes is None else sorted(int(a) % rank for a in np.asarray(axes).reshape(-1))
        if len(shape) != 3 or axes != [2, 3]:
            raise self.error(
                node, f"only a ReduceMean over the spatial axes [2, 3] of an image (global "
                f"average pooling) is supported, not axes {axes} of input {batched(shape)}"
            )
        keep = bool(int(attrs.get("keepdims", 1)))
        pooled = (shape[0], 1, 1)
        if keep:
            self.add_layer(node, "gap", [source], shape, pooled)
            return
        # keepdims=0: the pooled image, then the vector the graph goes on with.
        gap = self.add_layer(node, "gap", [source], shape, pooled,
                             output=f"{node.proto.output[0]}/pooled")
        self.add_layer(node, "flatten", [gap.output], pooled, (shape[0],),
                       name=f"{node.name}/flatten")

    # -- Pad -------------------------------------------------------------------------------
    def _op_Pad(self, node: OnnxNode) -> None:
        attrs = self.check_attrs(node)
        source, shape = self.activation(node, 0)
        if len(shape) != 3:
            raise self.image_error(node, shape)
        mode = attrs.get("mode", "constant")
        if mode != "constant":
            raise self.error(
                node, f"unsupported attribute mode={mode!r}: only mode='constant' (zero or "
                "constant padding, folded into the next Conv / pooling) is supported"
            )
        if "pads" in attrs:                   # opset < 11
            pads = list(attrs["pads"])
            value = float(attrs.get("value", 0.0))
        else:
            pads = [int(p) for p in np.asarray(self.constant(node, 1, "pads")).reshape(-1)]
            given = self.constant(node, 2, "constant_value", required=False)
            value = 0.0 if given is None else float(np.asarray(given).reshape(-1)[0])
        axes = self.constant(node, 3, "axes", required=False)
        rank = len(shape) + 1
        axes = list(range(rank)) if axes is None else [
            int(a) % rank for a in np.asarray(axes).reshape(-1)]
        if len(pads) != 2 * len(axes):
            raise self.error(node, f"pads {pads} do not give a begin and end for axes {axes}")
        begin = dict.fromkeys(range(rank), 0)
        end = dict.fromkeys(range(rank), 0)
        for i, axis in enumerate(axes):
            begin[axis], end[axis] = int(pads[i]), int(pads[len(axes) + i])
        if begin[0] or end[0] or begin[1] or end[1] or min([*begin.values(), *end.values()]) < 0:
            raise self.error(
                node, f"only non-negative padding of the spatial axes is supported, not pads "
                f"{pads} (axes {axes}) of input {batched(shape)}"
            )
        top, left, bottom, right = begin[2], begin[3], end[2], end[3]
        out = (shape[0], shape[1] + top + bottom, shape[2] + left + right)
        self.add_layer(node, "pad", [source], shape, out,
                       attrs={"pads": (top, left, bottom, right), "value": value})

    # -- arithmetic with constants ------------------------------------------------------
    def _per_channel(self, node: OnnxNode, value: np.ndarray, shape: tuple) -> np.ndarray:
        """Return ``value`` (ONNX-broadcast against ``(N, *shape)``) as float64 ``(C,)``."""
        value = np.asarray(value, dtype=np.float64)
        try:
            full = np.broadcast_to(value, (1, *shape))[0]
        except ValueError:
            raise self.error(
                node, f"constant of shape {value.shape} does not broadcast to the input "
                f"{batched(shape)}"
            ) from None
        if value.ndim > len(shape) + 1 or (value.ndim == len(shape) + 1 and value.shape[0] != 1):
            raise self.error(node, f"constant of shape {value.shape} broadcasts over the batch")
        rows = full.reshape(shape[0], -1)
        if not np.isfinite(rows).all():         # (NaN != NaN: it would read as "varies")
            raise self.error(node, f"constant of shape {value.shape} holds NaN or infinity")
        if not np.all(rows == rows[:, :1]):
            raise self.error(
                node, f"constant of shape {value.shape} varies over the spatial axes; only "
                "scalar or per-channel constants are supported"
            )
        return rows[:, 0].copy()

    def _binary_operands(self, node: OnnxNode):
        """Return ``(source, shape, constant, constant_is_first)`` of an activation/constant op."""
        if len(node.proto.input) != 2:
            raise self.error(node, f"needs two inputs, not {len(node.proto.input)}")
        resolved = [self.resolve(t) for t in node.proto.input]
        is_constant = [t in self.constants and t not in self.shapes for t in resolved]
        if not any(is_constant):
            raise self.error(
                node, f"{node.op} of two activations is not supported; one operand must be a "
                "scalar or per-channel constant"
            )
        first = bool(is_constant[0])
        source, shape = self.activation(node, 1 if first else 0)
        return source, shape, self.constants[resolved[0 if first else 1]], first

    def _affine(self, node: OnnxNode, source, shape, gain, shift) -> None:
        self.add_layer(node, "batchnorm", [source], shape, shape,
                       attrs={"gain": np.asarray(gain, dtype=np.float64),
                              "shift": np.asarray(shift, dtype=np.float64)})

    def _op_Mul(self, node: OnnxNode) -> None:
        self.check_attrs(node)
        source, shape, value, _ = self._binary_operands(node)
        gain = self._per_channel(node, value, shape)
        self._affine(node, source, shape, gain, np.zeros_like(gain))

    def _op_Div(self, node: OnnxNode) -> None:
        self.check_attrs(node)
        source, shape, value, first = self._binary_operands(node)
        if first:
            raise self.error(node, "constant / activation is not supported (not affine)")
        divisor = self._per_channel(node, value, shape)
        if np.any(divisor == 0):
            raise self.error(node, "division by a constant that is zero in some channel")
        self._affine(node, source, shape, 1.0 / divisor, np.zeros_like(divisor))

    def _op_Sub(self, node: OnnxNode) -> None:
        self.check_attrs(node)
        source, shape, value, first = self._binary_operands(node)
        shift = self._per_channel(node, value, shape)
        if first:                         # c - x
            self._affine(node, source, shape, -np.ones_like(shift), shift)
        else:                             # x - c
            self._affine(node, source, shape, np.ones_like(shift), -shift)

    # -- Concat ----------------------------------------------------------------------------
    def _op_Concat(self, node: OnnxNode) -> None:
        attrs = self.check_attrs(node)
        if len(node.proto.input) < 2:
            raise self.error(node, f"needs at least two inputs, not {len(node.proto.input)}")
        sources, shapes = zip(*(self.activation(node, i) for i in range(len(node.proto.input))))
        rank = len(shapes[0]) + 1
        axis = int(attrs.get("axis", 1))
        if axis % rank != 1 or any(len(s) != len(shapes[0]) for s in shapes):
            raise self.error(
                node, f"only a Concat along the channel axis 1 is supported, not axis={axis} "
                f"of inputs {', '.join(batched(s) for s in shapes)}"
            )
        if any(s[1:] != shapes[0][1:] for s in shapes):
            raise self.error(
                node, "Concat inputs differ in spatial size: "
                f"{', '.join(batched(s) for s in shapes)}"
            )
        out = (sum(s[0] for s in shapes), *shapes[0][1:])
        self.add_layer(node, "concat", list(sources), shapes[0], out, attrs={"axis": 0})

    # -- LeakyReLU / PReLU -----------------------------------------------------------------
    def _op_LeakyRelu(self, node: OnnxNode) -> None:
        attrs = self.check_attrs(node)
        source, shape = self.activation(node, 0)
        alpha = np.full(shape[0], float(attrs.get("alpha", 0.01)), dtype=np.float64)
        self.add_layer(node, "leaky_relu", [source], shape, shape, attrs={"alpha": alpha})

    def _op_PRelu(self, node: OnnxNode) -> None:
        self.check_attrs(node)
        source, shape = self.activation(node, 0)
        # ONNX broadcasting decides: a (C,) slope on an image runs along the width, so only
        # a slope that is the same over the spatial axes (e.g. (C, 1, 1)) is per channel.
        slope = self.constant(node, 1, "slope")
        alpha = self._per_channel(node, slope, shape)
        self.add_layer(node, "leaky_relu", [source], shape, shape, attrs={"alpha": alpha})

    # -- final Softmax / LogSoftmax ------------------------------------------------------
    def _softmax(self, node: OnnxNode, transform: str) -> None:
        attrs = self.check_attrs(node)
        source, shape = self.activation(node, 0)
        outputs = {o.name for o in self.graph.output}
        if node.proto.output[0] not in outputs:
            raise self.error(
                node, f"{node.op} is only supported as the last node (the host runs it on "
                "the dequantized output); here its output feeds other nodes"
            )
        axis = int(attrs.get("axis", -1 if self.opset >= 13 else 1))
        if len(shape) != 1 or axis not in (1, -1):
            raise self.error(
                node, f"only a {node.op} over the features of a vector (N, F) is supported, "
                f"not axis={axis} of input {batched(shape)}"
            )
        self.output_transform = transform
        self.alias(node, source)

    def _op_Softmax(self, node: OnnxNode) -> None:
        self._softmax(node, "softmax")

    def _op_LogSoftmax(self, node: OnnxNode) -> None:
        self._softmax(node, "log_softmax")

    # -- Transpose -------------------------------------------------------------------------
    def _op_Transpose(self, node: OnnxNode) -> None:
        attrs = self.check_attrs(node)
        source, shape = self.activation(node, 0)
        full = (1, *shape)
        perm = [int(p) for p in attrs.get("perm", range(len(full) - 1, -1, -1))]
        if sorted(perm) != list(range(len(full))):
            raise self.error(node, f"perm {perm} is not a permutation of {len(full)} axes")
        moved = [axis for axis in perm if full[axis] != 1]
        if perm[0] != 0 or moved != sorted(moved):
            raise self.error(
                node, f"only a Transpose that moves no data (it permutes only axes of size 1, "
                f"keeping the batch first) is supported, not perm {perm} of input "
                f"{batched(shape)}"
            )
        if perm == list(range(len(full))):
            self.alias(node, source)
            return
        # Same bytes, another shape: only a following Flatten / Reshape to a vector may read it.
        self.views[node.proto.output[0]] = (source, tuple(full[axis] for axis in perm[1:]))
