"""Models that are already quantized: ONNX QDQ graphs and QONNX ``Quant`` nodes.

A quantized ONNX model marks its quantization with nodes around the float ops:

* **QDQ** (onnxruntime's static quantizer, TensorRT, ...): ``QuantizeLinear`` /
  ``DequantizeLinear`` pairs on activations (``q = saturate(rint(x / s) + z)``, then
  ``x' = (q - z) * s``) and a ``DequantizeLinear`` on each integer weight initializer
  (per tensor or per channel along ``axis``), int8 / uint8, int16 / uint16 and int4 / uint4
  (opset 21); **QCDQ** (Brevitas) puts a ``Clip`` of the integers between the two, which
  narrows the range (an int8 type clipped to ``[-8, 7]`` is a 4-bit grid).
* **QONNX** (Brevitas, FINN; domains ``qonnx.custom_op.general``, ``finn.custom_op.general``,
  ``onnx.brevitas``): ``Quant`` / ``IntQuant`` nodes with inputs ``(x, scale, zeropt,
  bitwidth)`` and attributes ``signed``, ``narrow``, ``rounding_mode``: ``q = clip(round(x /
  s + z), min_int, max_int)``, ``x' = (q - z) * s`` with ``min_int = -2**(b-1) (+1 if
  narrow)`` or 0 and ``max_int = 2**(b-1) - 1``, ``2**b - 1`` (``- 1`` if narrow and
  unsigned) -- qonnx's ``int_quant`` -- and ``BipolarQuant`` (``x' = s * (x >= 0 ? 1 : -1)``).

:func:`strip_quantization` removes these nodes and returns a float graph that the importer
converts as usual (weights dequantized exactly, ``(q - z) * s``) plus a
:class:`FileQuantization` record: the activation grid of every quantized tensor (as unsigned
codes: a signed ``q`` becomes ``q + 2**(b-1)``, so the zero point moves by the same amount and
``real = s * (code - z)`` is unchanged) and the integer weights of every compute node.
:func:`run_fake_quant` runs the IR with those grids applied to every quantized tensor (the
float backend for such a model: onnxruntime's fake-quant semantics). The quantized model
is built from the record by :mod:`bitline.sw.quant.prequantized`. docs/frontend.md,
"Already-quantized models", states what is accepted and the bound against onnxruntime.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import onnx
from onnx import numpy_helper

__all__ = ["QDQ_OPS", "QONNX_OPS", "QONNX_DOMAINS", "TensorQuant", "WeightQuant",
           "FileQuantization", "QuantizationError", "is_quantized", "strip_quantization",
           "fake_quantize", "run_fake_quant"]

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
QONNX_OPS = ("Quant", "IntQuant", "BipolarQuant")
QONNX_DOMAINS = ("qonnx.custom_op.general", "finn.custom_op.general", "onnx.brevitas")
#: Widest activation code the integer contract holds (hw/spec/config MAX_ACT_BITS).
MAX_CODE_BITS = 16

# ONNX integer element types of QuantizeLinear / DequantizeLinear: (bits, signed).
_QDQ_TYPES = {
    onnx.TensorProto.INT8: (8, True), onnx.TensorProto.UINT8: (8, False),
    onnx.TensorProto.INT16: (16, True), onnx.TensorProto.UINT16: (16, False),
    onnx.TensorProto.INT4: (4, True), onnx.TensorProto.UINT4: (4, False),
    onnx.TensorProto.INT32: (32, True),
}
_NP_TYPES = {np.dtype(np.int8): (8, True), np.dtype(np.uint8): (8, False),
             np.dtype(np.int16): (16, True), np.dtype(np.uint16): (16, False),
             np.dtype(np.int32): (32, True)}
_ROUNDING = {
    "ROUND": np.round,                       # numpy rounds half to even, as onnxruntime
    "CEIL": np.ceil,
    "FLOOR": np.floor,
    "ROUND_TO_ZERO": np.trunc,
}
# Ops whose input 1 is the weight of an IR compute layer; the output-channel axis of that
# weight in ONNX layout (Gemm: 0 with transB = 1, else 1).
_COMPUTE_OPS = ("Conv", "Gemm", "MatMul")


class QuantizationError(ValueError):
    """A quantized model whose quantization bitline cannot express (names node and reason)."""


@dataclass(frozen=True)
class TensorQuant:
    """The grid of one activation tensor, as unsigned codes: ``real = scale * (q - zero_point)``.

    ``lo``/``hi`` are the codes the file's quantizer can produce (``0`` / ``2**bits - 1``
    except for QONNX's narrow ranges, one code less at one end); ``offset`` is
    ``code - q`` for the file's integer ``q`` (``2**(b-1)`` for a signed type, ``-min`` of a
    QCDQ Clip).
    """

    bits: int
    scale: float
    zero_point: int
    lo: int
    hi: int
    node: str
    op: str
    offset: int = 0

    def same_grid(self, other: "TensorQuant") -> bool:
        return (self.bits, self.scale, self.zero_point, self.lo, self.hi) == (
            other.bits, other.scale, other.zero_point, other.lo, other.hi)


@dataclass(frozen=True)
class WeightQuant:
    """The integer weight of one compute node, in the ONNX initializer's layout.

    ``values`` (int64) ``= q - zero_point`` and ``scale`` (float64, broadcast to ``values``)
    give ``weight = values * scale`` exactly; ``bits`` is the file's storage width and
    ``signed`` its signedness; ``out_axis`` the output-channel axis of this layout; ``alpha``
    Gemm's ``alpha`` (folded into the IR weight).
    """

    values: np.ndarray
    scale: np.ndarray
    bits: int
    signed: bool
    out_axis: int
    alpha: float
    node: str
    op: str


@dataclass(frozen=True)
class FileQuantization:
    """What a quantized ONNX file says: ``acts`` per tensor name, ``weights`` per node name.

    ``format`` is ``"qdq"``, ``"qonnx"`` or ``"qdq+qonnx"``; ``source`` the file label.
    """

    format: str
    source: str
    acts: dict = field(default_factory=dict)
    weights: dict = field(default_factory=dict)


def is_quantized(proto: onnx.ModelProto) -> bool:
    """True if the graph holds a QDQ or QONNX quantization node."""
    return any(_kind(node) is not None for node in proto.graph.node)


def _kind(node: onnx.NodeProto) -> str | None:
    if node.domain in ("", "ai.onnx") and node.op_type in QDQ_OPS:
        return "qdq"
    if node.domain in QONNX_DOMAINS and node.op_type in QONNX_OPS:
        return "qonnx"
    return None


class _Stripper:
    """One pass over the nodes: folds quantization of constants, records activation grids."""

    def __init__(self, proto: onnx.ModelProto, label: str):
        self.label = label
        self.graph = proto.graph
        self.consts = {init.name: numpy_helper.to_array(init) for init in self.graph.initializer}
        self.elem_types = {init.name: init.data_type for init in self.graph.initializer}
        # Integer constants made by a QuantizeLinear on a constant: name -> (q, bits, signed).
        self.int_consts: dict[str, tuple[np.ndarray, int, bool]] = {}
        for node in self.graph.node:
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                for attr in node.attribute:
                    if attr.name == "value":
                        self.consts[node.output[0]] = numpy_helper.to_array(attr.t)
                        self.elem_types[node.output[0]] = attr.t.data_type
        self.dequantized: dict[str, tuple[np.ndarray, np.ndarray, int, bool, str, str]] = {}
        self.acts: dict[str, TensorQuant] = {}
        self.aliases: dict[str, str] = {}
        # QuantizeLinear output tensor -> the float tensor it quantizes (QCDQ Clips read it).
        self.q_outputs: dict[str, str] = {}
        self.kinds: set[str] = set()

    def error(self, node: onnx.NodeProto, message: str) -> QuantizationError:
        return QuantizationError(f"{self.label}: node {node.name!r} ({node.op_type}): {message}")

    def const(self, node, index: int, role: str, required: bool = True):
        names = node.input
        if index >= len(names) or not names[index]:
            if required:
                raise self.error(node, f"{role} (input {index}) is missing")
            return None
        name = self.resolve(names[index])
        if name not in self.consts:
            raise self.error(node, f"{role} {names[index]!r} must be a constant (initializer)")
        return np.asarray(self.consts[name])

    def int_type(self, name: str, value: np.ndarray) -> tuple[int | None, bool | None]:
        """Bits and signedness of integer constant ``name`` (its ONNX element type first:
        numpy holds int4 / uint4 in 8-bit types)."""
        if name in self.elem_types:
            return _QDQ_TYPES.get(self.elem_types[name], (None, None))
        return _NP_TYPES.get(np.asarray(value).dtype, (None, None))

    def resolve(self, name: str) -> str:
        while name in self.aliases:
            name = self.aliases[name]
        return name

    # -- QDQ ------------------------------------------------------------------------------
    def qdq_params(self, node, x_shape):
        """``(scale, zero point, bits, signed, axis)`` of a Q/DQ node, broadcast to ``x``."""
        scale = self.const(node, 1, "scale").astype(np.float64)
        zp = self.const(node, 2, "zero point", required=False)
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "QuantizeLinear" and zp is None:
            dtype = attrs.get("output_dtype") or onnx.TensorProto.UINT8   # 0: unset
            bits, signed = _QDQ_TYPES.get(dtype, (None, None))
            zp = np.zeros(1, dtype=np.int64)
        elif zp is None:
            bits, signed = None, None       # the input's type decides (DequantizeLinear)
            zp = np.zeros(1, dtype=np.int64)
        else:
            bits, signed = self.int_type(self.resolve(node.input[2]), zp)
        if attrs.get("block_size", 0):
            raise self.error(node, "blocked quantization (block_size) is not supported")
        axis = int(attrs.get("axis", 1))
        if scale.size > 1 and not x_shape:
            raise self.error(node, f"per-channel activation quantization (scale shape "
                                   f"{scale.shape}) of tensor {node.input[0]!r}: bitline's "
                                   "activations have one scale and zero point per tensor")
        if scale.size > 1:
            ndim = len(x_shape)
            axis = axis + ndim if axis < 0 else axis
            if scale.ndim != 1 or not 0 <= axis < ndim or x_shape[axis] != scale.size:
                raise self.error(node, f"per-axis scale of shape {scale.shape} does not match "
                                       f"axis {attrs.get('axis', 1)} of shape {tuple(x_shape)}")
            shape = [1] * ndim
            shape[axis] = scale.size
            scale = scale.reshape(shape)
            zp = np.asarray(zp).reshape(shape) if np.asarray(zp).size > 1 else zp
        return scale, np.asarray(zp).astype(np.int64), bits, signed, axis

    def quantize_linear(self, node) -> None:
        name = self.resolve(node.input[0])
        if name in self.consts:
            x = np.asarray(self.consts[name], dtype=np.float64)
            scale, zp, bits, signed, _ = self.qdq_params(node, x.shape)
            if bits is None:
                raise self.error(node, "quantizes to a type that is not an integer (float8?): "
                                       "bitline reads integer quantization only")
            lo, hi = _range(bits, signed, False)
            q = np.clip(np.rint(x / scale) + zp, lo, hi).astype(np.int64)
            self.int_consts[node.output[0]] = (q, bits, signed)
            return
        scale, zp, bits, signed, _ = self.qdq_params(node, ())
        if bits is None:
            raise self.error(node, "quantizes to a type that is not an integer (float8?): "
                                   "bitline reads integer quantization only")
        if bits > MAX_CODE_BITS:
            raise self.error(node, f"activation type of {bits} bits: bitline's activations are "
                                   f"1..{MAX_CODE_BITS}-bit codes")
        self.record_act(node, name, scale, zp, bits, signed, narrow=False)
        self.aliases[node.output[0]] = name
        self.q_outputs[node.output[0]] = name

    def clip_codes(self, node) -> None:
        """QCDQ (Brevitas): a Clip between QuantizeLinear and DequantizeLinear narrows the
        integer range to ``[a, b]``; the codes become ``q - a`` on ``bit_length(b - a)`` bits."""
        source = node.input[0]
        if len(node.input) > 1:
            bounds = [self.const(node, i, role, required=False) for i, role in
                      ((1, "min"), (2, "max"))]
        else:
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            bounds = [attrs.get("min"), attrs.get("max")]
        if source in self.int_consts:
            q, bits, signed = self.int_consts[source]
            low, high = _range(bits, signed, False)
            low = low if bounds[0] is None else max(low, int(np.asarray(bounds[0])))
            high = high if bounds[1] is None else min(high, int(np.asarray(bounds[1])))
            self.int_consts[node.output[0]] = (np.clip(q, low, high), bits, signed)
            return
        tensor = self.q_outputs[source]
        grid = self.acts[tensor]
        low = grid.lo - grid.offset if bounds[0] is None else max(
            grid.lo - grid.offset, int(np.asarray(bounds[0])))
        high = grid.hi - grid.offset if bounds[1] is None else min(
            grid.hi - grid.offset, int(np.asarray(bounds[1])))
        if high < low:
            raise self.error(node, f"empty integer range [{low}, {high}]")
        bits = max(1, (high - low).bit_length())
        zero = grid.zero_point - grid.offset - low
        if not 0 <= zero <= (1 << bits) - 1:
            raise self.error(node, f"zero point {grid.zero_point - grid.offset} lies outside "
                                   f"the clipped range [{low}, {high}] of tensor {tensor!r}")
        self.acts[tensor] = replace(grid, bits=bits, zero_point=zero, lo=0, hi=high - low,
                                    offset=-low)
        self.aliases[node.output[0]] = tensor
        self.q_outputs[node.output[0]] = tensor

    def dequantize_linear(self, node) -> None:
        source = self.resolve(node.input[0])
        if source in self.int_consts or source in self.consts:
            if source in self.int_consts:
                q, bits, signed = self.int_consts[source]
            else:
                q = np.asarray(self.consts[source])
                bits, signed = self.int_type(source, q)
                if bits is None:
                    raise self.error(node, f"input {node.input[0]!r} is not an integer "
                                           f"constant ({q.dtype}): bitline reads integer "
                                           "quantization only")
                q = q.astype(np.int64)
            scale, zp, _, _, _ = self.qdq_params(node, q.shape)
            values = q - zp
            self.dequantized[node.output[0]] = (values, np.broadcast_to(scale, q.shape),
                                                bits, signed, node.name, node.op_type)
            self.consts[node.output[0]] = (values * scale).astype(np.float32)
            return
        if source not in self.acts:
            raise self.error(node, f"input {node.input[0]!r} is neither a constant nor the "
                                   "output of a QuantizeLinear (an integer graph input or "
                                   "integer op is not supported)")
        scale, zp, _, _, _ = self.qdq_params(node, ())
        act = self.acts[source]
        offset = act.zero_point - int(zp.reshape(-1)[0])
        if not np.isclose(float(scale.reshape(-1)[0]), act.scale, rtol=1e-6, atol=0) or (
                scale.size != 1 or zp.size != 1):
            raise self.error(node, f"scale/zero point differ from its QuantizeLinear's "
                                   f"(tensor {source!r})")
        if offset != act.offset:
            raise self.error(node, f"zero point differs from its QuantizeLinear's "
                                   f"(tensor {source!r})")
        self.aliases[node.output[0]] = source

    # -- QONNX ----------------------------------------------------------------------------
    def qonnx_quant(self, node) -> None:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        name = self.resolve(node.input[0])
        if node.op_type == "BipolarQuant":
            scale = self.const(node, 1, "scale").astype(np.float64)
            if name not in self.consts:
                raise self.error(node, "BipolarQuant on an activation: the output unit cannot "
                                       "produce sign(x) * s (no integer code grid holds "
                                       "exactly {-s, +s}); only weights may be bipolar")
            x = np.asarray(self.consts[name], dtype=np.float64)
            values = np.where(x >= 0, 1, -1).astype(np.int64)
            self.store_weight(node, values, np.broadcast_to(scale, x.shape), 1, True)
            return
        scale = self.const(node, 1, "scale").astype(np.float64)
        zeropt = self.const(node, 2, "zero point").astype(np.float64)
        bitwidth = self.const(node, 3, "bit width").astype(np.float64)
        if bitwidth.size != 1 or bitwidth.reshape(-1)[0] != np.rint(bitwidth.reshape(-1)[0]):
            raise self.error(node, f"bit width must be one integer, not {bitwidth.tolist()}")
        bits = int(bitwidth.reshape(-1)[0])
        signed = bool(attrs.get("signed", 1))
        narrow = bool(attrs.get("narrow", 0))
        mode = attrs.get("rounding_mode", b"ROUND")
        mode = (mode.decode() if isinstance(mode, bytes) else str(mode)).upper()
        if mode not in _ROUNDING:
            raise self.error(node, f"rounding_mode {mode!r} is not one of "
                                   f"{', '.join(_ROUNDING)}")
        if np.any(zeropt != np.rint(zeropt)):
            raise self.error(node, "zero point must be an integer (a fractional zero point "
                                   "has no integer code)")
        # Constants (weights, and biases that Brevitas quantizes to 32 bits) may be up to 32
        # bits wide; activations are codes of at most MAX_CODE_BITS.
        widest = 32 if name in self.consts else MAX_CODE_BITS
        if not 1 <= bits <= widest or (bits == 1 and not signed):
            raise self.error(node, f"bit width {bits} (signed={int(signed)}) is not supported: "
                                   f"2..{widest} bits, or 1 bit signed as bipolar")
        if name in self.consts:
            x = np.asarray(self.consts[name], dtype=np.float64)
            if bits == 1:
                q = np.where(x / scale + zeropt >= 0, 1, -1)
            else:
                lo, hi = _range(bits, signed, narrow)
                q = np.clip(_ROUNDING[mode](x / scale + zeropt), lo, hi)
            values = (q - zeropt).astype(np.int64)
            self.store_weight(node, values, np.broadcast_to(scale, x.shape), bits, signed)
            return
        if mode != "ROUND":
            raise self.error(node, f"rounding_mode {mode} on an activation: the integer "
                                   "contract rounds activations to nearest (ROUND)")
        if bits == 1:
            raise self.error(node, "a 1-bit (bipolar) activation has no integer code grid")
        self.record_act(node, name, scale, zeropt.astype(np.int64), bits, signed, narrow)
        self.aliases[node.output[0]] = name

    def store_weight(self, node, values, scale, bits, signed) -> None:
        self.dequantized[node.output[0]] = (values, scale, bits, signed, node.name,
                                            node.op_type)
        self.consts[node.output[0]] = (values * scale).astype(np.float32)

    # -- activations ----------------------------------------------------------------------
    def record_act(self, node, tensor, scale, zp, bits, signed, narrow) -> None:
        if scale.size != 1 or np.asarray(zp).size != 1:
            raise self.error(node, f"per-channel activation quantization (scale shape "
                                   f"{scale.shape}) of tensor {tensor!r}: bitline's activations "
                                   "have one scale and zero point per tensor")
        value = float(scale.reshape(-1)[0])
        if not (value > 0 and np.isfinite(value)):
            raise self.error(node, f"scale must be positive and finite, not {value}")
        lo, hi = _range(bits, signed, narrow)
        offset = -lo if signed and not narrow else (-(lo - 1) if signed else 0)
        zero = int(np.asarray(zp).reshape(-1)[0]) + offset
        qmax = (1 << bits) - 1
        if not 0 <= zero <= qmax:
            raise self.error(node, f"zero point {int(np.asarray(zp).reshape(-1)[0])} lies "
                                   f"outside the {bits}-bit range of tensor {tensor!r}")
        grid = TensorQuant(bits, value, zero, lo + offset, hi + offset, node.name, node.op_type,
                           offset)
        known = self.acts.get(tensor)
        if known is not None and not known.same_grid(grid):
            raise self.error(node, f"tensor {tensor!r} is quantized twice with different "
                                   f"parameters (also by node {known.node!r})")
        self.acts[tensor] = grid
        self.kinds.add(_kind(node))

    def run(self) -> list[onnx.NodeProto]:
        kept = []
        for node in self.graph.node:
            kind = _kind(node)
            if node.op_type == "Clip" and node.domain in ("", "ai.onnx") and node.input and (
                    node.input[0] in self.q_outputs or node.input[0] in self.int_consts):
                self.clip_codes(node)
                continue
            if kind is None:
                kept.append(node)
                continue
            self.kinds.add(kind)
            if node.op_type == "QuantizeLinear":
                self.quantize_linear(node)
            elif node.op_type == "DequantizeLinear":
                self.dequantize_linear(node)
            else:
                self.qonnx_quant(node)
        return kept


def _range(bits, signed, narrow) -> tuple[int, int]:
    if bits is None:
        raise QuantizationError("quantization of unknown integer type")
    if signed:
        return -(1 << (bits - 1)) + int(narrow), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1 - int(narrow)


def _out_axis(node: onnx.NodeProto) -> tuple[int, float]:
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type == "Conv":
        return 0, 1.0
    if node.op_type == "Gemm":
        return (0 if attrs.get("transB", 0) else 1), float(attrs.get("alpha", 1.0))
    return 1, 1.0                               # MatMul: (F, O)


def strip_quantization(proto: onnx.ModelProto, label: str = "<model>"
                       ) -> tuple[onnx.ModelProto, FileQuantization | None]:
    """Remove the QDQ / QONNX nodes of ``proto``; return the float graph and the record.

    A model without such nodes is returned as it is, with ``None``. Every node of the
    returned graph has a unique name (a nameless one gets ``<optype>_<index>`` by its index
    in the returned graph, as the importer would name it), so ``weights`` (keyed by the name
    of the Conv / Gemm / MatMul reading the weight) names IR layers.

    Raises
    ------
    QuantizationError
        Naming the file, the node and the reason, for quantization the integer contract
        cannot express: per-channel activation scales, fractional zero points, 1-bit or
        bipolar activations, rounding other than to nearest on activations, types wider
        than 16 bits on activations, blocked quantization, a DequantizeLinear whose input is
        neither a constant nor a QuantizeLinear, a tensor quantized twice differently.
    """
    if not is_quantized(proto):
        return proto, None
    stripper = _Stripper(proto, label)
    kept = stripper.run()
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    graph = out.graph
    del graph.node[:]
    used_names: set[str] = set()
    weights = {}
    for index, node in enumerate(kept):
        node = _renamed(node, stripper)
        if not node.name or node.name in used_names:
            node.name = f"{node.name or node.op_type.lower()}_{index}"
        used_names.add(node.name)
        graph.node.append(node)
        if node.op_type in _COMPUTE_OPS and len(node.input) > 1:
            entry = stripper.dequantized.get(node.input[1])
            if entry is not None:
                values, scale, bits, signed, qnode, qop = entry
                axis, alpha = _out_axis(node)
                weights[node.name] = WeightQuant(values, np.asarray(scale), bits, signed,
                                                 axis, alpha, qnode, qop)
    for output in graph.output:
        output.name = stripper.resolve(output.name)
    # Initializers: the float values of dequantized constants replace the integer ones;
    # graph inputs that named a dropped initializer (IR < 4 files list them) go too.
    needed = {name for node in graph.node for name in node.input}
    made = {name for node in graph.node for name in node.output}
    dropped = {init.name for init in graph.initializer}
    del graph.initializer[:]
    for name in sorted(needed - made):
        if name in stripper.consts and name not in stripper.int_consts:
            graph.initializer.append(numpy_helper.from_array(
                np.asarray(stripper.consts[name]), name))
    dropped -= {init.name for init in graph.initializer}
    inputs = [value for value in graph.input if value.name not in dropped]
    del graph.input[:]
    graph.input.extend(inputs)
    graph.ClearField("value_info")
    kinds = sorted(k for k in stripper.kinds if k)
    return out, FileQuantization("+".join(kinds), label, dict(stripper.acts), weights)


def _renamed(node: onnx.NodeProto, stripper: _Stripper) -> onnx.NodeProto:
    copy = onnx.NodeProto()
    copy.CopyFrom(node)
    for index, name in enumerate(copy.input):
        copy.input[index] = stripper.resolve(name)
    return copy


def fake_quantize(x: np.ndarray, grid: TensorQuant) -> np.ndarray:
    """Return ``x`` on ``grid``: ``s * (clip(rint(x / s) + z, lo, hi) - z)`` in float32.

    onnxruntime's QuantizeLinear + DequantizeLinear (and qonnx's ``Quant`` with rounding
    ``ROUND``): round half to even, saturate to the type's range.
    """
    scale = np.float32(grid.scale)
    q = np.clip(np.rint(np.asarray(x, dtype=np.float32) / scale) + grid.zero_point,
                grid.lo, grid.hi)
    return ((q - grid.zero_point) * scale).astype(np.float32)


def run_fake_quant(model, x: np.ndarray, quant: FileQuantization | None = None, *,
                   return_all: bool = False):
    """Run the IR ``model`` in float32 with every quantized tensor put on its grid.

    The float backend of a model read from a quantized file: weights are the file's
    dequantized integers, and each tensor the file quantizes (the input included) goes
    through :func:`fake_quantize` as soon as it is computed, as onnxruntime runs the QDQ
    graph. ``quant`` defaults to ``model.quantization``. Returns as
    :func:`~bitline.sw.frontend.float_model.run_float` (the output after
    ``model.output_transform``; with ``return_all`` the tensors before it).
    """
    from bitline.sw.frontend.float_model import output_transform, run_float, run_float_from

    quant = quant if quant is not None else getattr(model, "quantization", None)
    if quant is None:
        return run_float(model, x, return_all=return_all)
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != len(model.input_shape) + 1 or tuple(x.shape[1:]) != tuple(model.input_shape):
        raise ValueError(f"model {model.name}: input must have shape (N, "
                         f"{', '.join(map(str, model.input_shape))}), not {x.shape}")
    tensors = {model.input_name: x}
    if model.input_name in quant.acts:
        tensors[model.input_name] = fake_quantize(x, quant.acts[model.input_name])
    for layer in model.layers:
        step = replace(model, layers=[layer], output_name=layer.output)
        y = run_float_from(step, tensors, 0)
        grid = quant.acts.get(layer.output)
        tensors[layer.output] = y if grid is None else fake_quantize(y, grid)
    if return_all:
        return tensors
    # A final Softmax / LogSoftmax runs on the host after the last layer, as in run_float.
    return output_transform(tensors[model.output_name], model.output_transform)
