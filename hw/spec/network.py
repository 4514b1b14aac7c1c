"""Whole-network mode: the capacities, the window record and the node record (contract).

This module is the one definition of what the NETWORK image section holds (docs/network.md
section 2; docs/bundle.md has the field table). The compiler (``bitline compile
--network``), the bundle writer and reader, the validator, the node interpreter
(:mod:`bitline.sw.integer.network`), the loader and the sequencer all read it.

* :class:`NetGeometry` fixes what the hardware holds (elaboration constants: the widths of
  every counter and the buffer's depth), from the config's whole-network fields.
* :class:`WindowParams` is one node's window over its source map (runtime values that the
  address generator reads from its ``record`` port, :func:`window_layout`). A conv layer's
  inputs, a pooling layer's windows, a global average pool and flatten are all windows:
  conv / pooling use the layer's ``kernel``, ``stride``, ``pads``, ``dilation``; a global
  average pool and a gemm's flatten read one ``H x W`` window covering the whole map
  (:meth:`WindowParams.flatten`), which streams the map in C order.
* :class:`NodeProgram` is one node of the network (:class:`NodeKind`: a compute layer job,
  a max or average pool, a residual add) with its window, its output map and the add's
  requantization; :func:`node_layout` is its record.

The output size formula is the one of :func:`bitline.sw.frontend.im2col.conv_output_hw`,
restated in :meth:`WindowParams.out_hw` (hw never imports sw); the tests check the two
agree.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields

import numpy as np
from amaranth import signed, unsigned
from amaranth.lib import data

from bitline.hw.spec.config import NETWORK_FIELDS, AcceleratorConfig, clog2
from bitline.hw.spec.encoding import MULT_BITS, SHIFT_BITS, flatten_fields

__all__ = [
    "NetGeometry", "WindowParams", "element_layout", "window_layout",
    "NodeKind", "NodeProgram", "node_layout", "node_columns", "nodes_from_records",
    "NODE_ADD_FIELDS", "NODE_KIND_BITS", "NODE_PIPELINE_FIELDS", "COPY_BITS", "REPLICA_LOG2_BITS", "NodeFieldError",
]


def _bits(value: int) -> int:
    """Bits of an unsigned counter that holds ``0 .. value``."""
    return max(1, int(value).bit_length())


@dataclass(frozen=True)
class NetGeometry:
    """What the activation buffer and the units hold (elaboration constants).

    Attributes
    ----------
    act_bits:
        Width of an activation code (the config's ``max_act_bits``).
    depth:
        Codes the activation buffer holds: one code per word (docs/network.md says why).
    max_channels, max_height, max_width:
        Largest feature map; kernel, stride, dilation, padding and output sizes share the
        spatial counters' width (a global average pool's window is the whole map).
    """

    act_bits: int = 8
    depth: int = 4096
    max_channels: int = 32
    max_height: int = 8
    max_width: int = 8

    def __post_init__(self):
        for item in fields(self):
            value = getattr(self, item.name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"NetGeometry.{item.name} must be an integer >= 1, "
                                 f"not {value!r}")
        if self.act_bits > 16:
            raise ValueError(f"NetGeometry.act_bits must be <= 16, not {self.act_bits}")

    @classmethod
    def from_config(cls, config: AcceleratorConfig, **capacities) -> NetGeometry:
        """Return the geometry of ``config``'s whole-network hardware.

        ``act_bits`` is the config's ``max_act_bits``; the capacities are its
        ``act_buffer_depth`` and ``max_map_*`` fields, unless given as keywords (``depth``,
        ``max_channels``, ``max_height``, ``max_width``: a unit tested on its own).

        Raises
        ------
        ValueError
            When ``config`` has no whole-network hardware and no capacities are given.
        """
        if not capacities:
            if not config.network:
                raise ValueError(f"the config has no whole-network hardware "
                                 f"({', '.join(NETWORK_FIELDS)} are 0)")
            capacities = dict(depth=config.act_buffer_depth,
                              max_channels=config.max_map_channels,
                              max_height=config.max_map_height,
                              max_width=config.max_map_width)
        return cls(act_bits=config.max_act_bits, **capacities)

    @property
    def addr_bits(self) -> int:
        """Width of a buffer address."""
        return _bits(self.depth - 1)

    @property
    def channel_bits(self) -> int:
        """Width of a channel count (``1 .. max_channels``)."""
        return _bits(self.max_channels)

    @property
    def dim_bits(self) -> int:
        """Width of every spatial field (sizes, kernel, stride, dilation, padding)."""
        return _bits(2 * max(self.max_height, self.max_width))

    @property
    def window_bits(self) -> int:
        """Width of a pooling window's element count (up to a whole ``H x W`` plane)."""
        return _bits(self.max_height * self.max_width)


def element_layout(geometry: NetGeometry) -> data.StructLayout:
    """One element of the im2col stream: a code and where it sits.

    ``pad`` marks a padding position (``code`` is then the record's ``pad_value``);
    ``window_last`` ends one channel's ``KH x KW`` window (a pooling output),
    ``vector_last`` ends an output pixel's input vector (``C*KH*KW`` elements, a crossbar
    job's vector) and ``last`` ends the layer.
    """
    return data.StructLayout({
        "code": unsigned(geometry.act_bits),
        "pad": unsigned(1),
        "window_last": unsigned(1),
        "vector_last": unsigned(1),
        "last": unsigned(1),
    })


def window_layout(geometry: NetGeometry) -> data.StructLayout:
    """The window record the :class:`~bitline.hw.net.im2col.Im2colReader` runs from."""
    dim = unsigned(geometry.dim_bits)
    return data.StructLayout({
        "base": unsigned(geometry.addr_bits),
        "channels": unsigned(geometry.channel_bits),
        "height": dim, "width": dim,
        "kernel_h": dim, "kernel_w": dim,
        "stride_h": dim, "stride_w": dim,
        "dilation_h": dim, "dilation_w": dim,
        "pad_top": dim, "pad_left": dim,
        "out_h": dim, "out_w": dim,
        "pad_value": unsigned(geometry.act_bits),
    })


@dataclass(frozen=True)
class WindowParams:
    """One layer's window: the values of the :func:`window_layout` record.

    ``pads`` is ``(top, left, bottom, right)`` as in the IR; the record holds ``top`` and
    ``left`` and the output size (bottom and right padding follow from it).
    """

    channels: int
    height: int
    width: int
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    dilation: tuple[int, int] = (1, 1)
    pad_value: int = 0
    base: int = 0

    @classmethod
    def flatten(cls, channels: int, height: int, width: int, base: int = 0) -> WindowParams:
        """The whole map as one window: streams it in C order (flatten / global pool)."""
        return cls(channels, height, width, kernel=(height, width), base=base)

    @classmethod
    def from_record(cls, record: dict) -> WindowParams:
        """Inverse of :meth:`record`: the window whose record is ``record``.

        Bottom and right padding are the smallest that give the record's output size (the
        IR's larger ones, when the stride leaves some unread, are not recoverable and not
        needed: the reader never reaches them).
        """
        kernel = (int(record["kernel_h"]), int(record["kernel_w"]))
        stride = (int(record["stride_h"]), int(record["stride_w"]))
        dilation = (int(record["dilation_h"]), int(record["dilation_w"]))
        top, left = int(record["pad_top"]), int(record["pad_left"])
        after = []
        for size, before, out, k, s, d in ((record["height"], top, record["out_h"], kernel[0],
                                            stride[0], dilation[0]),
                                           (record["width"], left, record["out_w"], kernel[1],
                                            stride[1], dilation[1])):
            span = d * (k - 1) + 1
            after.append(max(0, (int(out) - 1) * s + span - int(size) - before))
        return cls(int(record["channels"]), int(record["height"]), int(record["width"]),
                   kernel=kernel, stride=stride, pads=(top, left, after[0], after[1]),
                   dilation=dilation, pad_value=int(record["pad_value"]),
                   base=int(record["base"]))

    def canonical(self) -> WindowParams:
        """The same window as its record reads back (:meth:`from_record`): bottom and
        right padding cut to what the output size reaches (the reader never reads more)."""
        out_h, out_w = self.out_hw()
        return WindowParams.from_record(dict(
            base=self.base, channels=self.channels, height=self.height, width=self.width,
            kernel_h=self.kernel[0], kernel_w=self.kernel[1], stride_h=self.stride[0],
            stride_w=self.stride[1], dilation_h=self.dilation[0],
            dilation_w=self.dilation[1], pad_top=self.pads[0], pad_left=self.pads[1],
            out_h=out_h, out_w=out_w, pad_value=self.pad_value))

    @property
    def size(self) -> int:
        """Codes of the source map: ``channels * height * width``."""
        return self.channels * self.height * self.width

    def out_hw(self) -> tuple[int, int]:
        """``floor((h + top + bottom - d*(k - 1) - 1) / s) + 1`` per axis (conv_output_hw)."""
        top, left, bottom, right = self.pads
        sizes = []
        for size, before, after, k, s, d in ((self.height, top, bottom, self.kernel[0],
                                              self.stride[0], self.dilation[0]),
                                             (self.width, left, right, self.kernel[1],
                                              self.stride[1], self.dilation[1])):
            span = d * (k - 1) + 1
            if span > size + before + after:
                raise ValueError(f"window: kernel {self.kernel} with dilation "
                                 f"{self.dilation} spans more than the padded input "
                                 f"{(self.height + top + bottom, self.width + left + right)}")
            sizes.append((size + before + after - span) // s + 1)
        return sizes[0], sizes[1]

    def record(self, geometry: NetGeometry) -> dict[str, int]:
        """Return the record's field values, checked against ``geometry``.

        Raises
        ------
        ValueError
            Naming the field and value that is out of range or does not fit.
        """
        named = dict(channels=self.channels, height=self.height, width=self.width,
                     kernel_h=self.kernel[0], kernel_w=self.kernel[1],
                     stride_h=self.stride[0], stride_w=self.stride[1],
                     dilation_h=self.dilation[0], dilation_w=self.dilation[1])
        for name, value in named.items():
            if int(value) < 1:
                raise ValueError(f"window record: {name} must be >= 1, not {value}")
        if min(self.pads) < 0:
            raise ValueError(f"window record: pads must be >= 0, not {self.pads}")
        out_h, out_w = self.out_hw()
        limits = dict(channels=geometry.max_channels, height=geometry.max_height,
                      width=geometry.max_width)
        for name, limit in limits.items():
            if named[name] > limit:
                raise ValueError(f"window record: {name}={named[name]} exceeds the "
                                 f"geometry's max_{name}={limit}")
        end = self.base + self.channels * self.height * self.width
        if self.base < 0 or end > geometry.depth:
            raise ValueError(f"window record: map at base {self.base} of "
                             f"{self.channels}x{self.height}x{self.width} codes ends at "
                             f"{end}, beyond the buffer's depth {geometry.depth}")
        if not 0 <= self.pad_value < 1 << geometry.act_bits:
            raise ValueError(f"window record: pad_value={self.pad_value} is not an "
                             f"{geometry.act_bits}-bit code")
        record = dict(named, base=self.base, pad_top=self.pads[0], pad_left=self.pads[1],
                      out_h=out_h, out_w=out_w, pad_value=self.pad_value)
        too_wide = {name: value for name, value in record.items()
                    if name not in ("base", "channels", "pad_value")
                    and value >= 1 << geometry.dim_bits}
        if too_wide:
            raise ValueError(f"window record: {too_wide} do not fit the "
                             f"{geometry.dim_bits}-bit spatial fields")
        return record


# --------------------------------------------------------------------- the node record
class NodeFieldError(ValueError):
    """A node record field out of range: ``field`` (dotted leaf name) and ``reason``.

    ``str()`` is ``field <field>: <reason>``; the validator words the place around it.
    """

    def __init__(self, field_name: str, reason: str):
        super().__init__(f"field {field_name}: {reason}")
        self.field, self.reason = field_name, reason


class NodeKind(enum.IntEnum):
    """What a node does (the node record's ``kind``)."""

    COMPUTE = 0     # a layer job of the layer table on the crossbars
    POOL_MAX = 1
    POOL_AVG = 2    # average pool and global average pool
    ADD = 3         # requantizing residual add of two maps


#: Width of the node record's ``kind`` field.
NODE_KIND_BITS = 2

#: The ADD node's requantization fields (the residual add's ports); 0 for other kinds.
NODE_ADD_FIELDS = ("zero_a", "zero_b", "zero_point", "clamp_lo", "clamp_hi", "mult_a",
                   "mult_b", "shift")


#: Width of the pipeline fields ``copies`` and ``input_copies`` (docs/network.md section 6).
COPY_BITS = 4

#: The pipeline fields of a node record, present only when ``config.pipeline_stages > 0``.
NODE_PIPELINE_FIELDS = ("stage", "copies", "input_copies", "src0_node", "src1_node",
                        "replicas_log2", "phase")

#: Width of ``replicas_log2``: a COMPUTE node's group has 1, 2, 4 or 8 replicas
#: (docs/network.md section 7).
REPLICA_LOG2_BITS = 2


def node_layout(config: AcceleratorConfig) -> data.StructLayout:
    """Return the NETWORK section's record: one node (docs/bundle.md has the field table).

    Fields in order: ``kind`` (:class:`NodeKind`), ``layer`` (COMPUTE's layer-table
    index), ``to_host`` (outputs to the host ``outputs`` stream, the last node only),
    ``count_include_pad`` (POOL_AVG), ``window`` (:func:`window_layout` over source 0),
    ``src1_base`` (ADD's second operand), ``dst_base`` and ``dst_channels`` (the output
    map), then the ADD's ``zero_a, zero_b, zero_point, clamp_lo, clamp_hi`` (codes),
    ``mult_a, mult_b`` (signed :data:`~bitline.hw.spec.encoding.MULT_BITS`) and ``shift``
    (:data:`~bitline.hw.spec.encoding.SHIFT_BITS`). With ``config.pipeline_stages > 0``
    the pipeline fields follow (docs/network.md section 6): ``stage`` (the engine running
    the node), ``copies`` (copies of its output map), ``input_copies`` (copies of the
    network input; node 0 only), ``src0_node`` and ``src1_node`` (the producers of the
    node's sources: 0 the network input, ``j + 1`` node ``j``).

    Raises
    ------
    ValueError
        When ``config`` has no whole-network hardware.
    """
    geometry = NetGeometry.from_config(config)
    code = unsigned(geometry.act_bits)
    record_fields = {
        "kind": unsigned(NODE_KIND_BITS),
        "layer": unsigned(clog2(config.max_layers)),
        "to_host": unsigned(1),
        "count_include_pad": unsigned(1),
        "window": window_layout(geometry),
        "src1_base": unsigned(geometry.addr_bits),
        "dst_base": unsigned(geometry.addr_bits),
        "dst_channels": unsigned(geometry.channel_bits),
        "zero_a": code, "zero_b": code, "zero_point": code,
        "clamp_lo": code, "clamp_hi": code,
        "mult_a": signed(MULT_BITS), "mult_b": signed(MULT_BITS),
        "shift": unsigned(SHIFT_BITS),
    }
    if config.pipeline_stages:
        record_fields.update({
            "stage": unsigned(clog2(config.pipeline_stages)),
            "copies": unsigned(COPY_BITS),
            "input_copies": unsigned(COPY_BITS),
            "src0_node": unsigned(clog2(config.max_nodes + 1)),
            "src1_node": unsigned(clog2(config.max_nodes + 1)),
            "replicas_log2": unsigned(REPLICA_LOG2_BITS),
            "phase": unsigned((1 << REPLICA_LOG2_BITS) - 1),
        })
    return data.StructLayout(record_fields)


@dataclass(frozen=True)
class NodeProgram:
    """One node of a whole-network program: the values of a :func:`node_layout` record.

    Attributes
    ----------
    kind:
        :class:`NodeKind`.
    window:
        Source 0's map (``base, channels, height, width``) and the window the reader
        streams over it: COMPUTE conv - the conv's kernel/stride/pads/dilation with
        ``pad_value`` the layer's input zero point; COMPUTE gemm - the flatten window of
        its input map; POOL_MAX - the pool window, ``pad_value`` 0; POOL_AVG - the pool
        window (``pad_value`` the input zero point with ``count_include_pad``, else 0) or,
        for a global average pool, the flatten window; ADD - a 1x1 window over src0's map.
    dst_base, dst_channels:
        The output map: ``dst_channels x out_h x out_w`` codes at ``dst_base`` in
        ``(c, y, x)`` C order (written in producer order). The ``to_host`` node writes no
        map (its ``dst_base`` is 0): its outputs stream to the host in producer order.
    layer:
        COMPUTE: index of the node's layer in the layer table; 0 for other kinds.
    to_host:
        The node's outputs go to the host (the network's last node only).
    count_include_pad:
        POOL_AVG: padding counts in the mean (then ``pad_value`` is the zero point).
    src1_base:
        ADD: base of the second operand's map (same shape as src0's); 0 otherwise.
    zero_a, zero_b, zero_point, clamp_lo, clamp_hi, mult_a, mult_b, shift:
        ADD: ``clamp(zero_point + ((mult_a*(a - zero_a) + mult_b*(b - zero_b) + rnd) >>
        shift), clamp_lo, clamp_hi)``, the residual add of docs/contract.md; 0 otherwise.
    name:
        The IR layer the node runs (error messages and reports; not in the record).
    """

    kind: NodeKind
    window: WindowParams
    dst_base: int
    dst_channels: int
    layer: int = 0
    to_host: bool = False
    count_include_pad: bool = False
    src1_base: int = 0
    zero_a: int = 0
    zero_b: int = 0
    zero_point: int = 0
    clamp_lo: int = 0
    clamp_hi: int = 0
    mult_a: int = 0
    mult_b: int = 0
    shift: int = 0
    stage: int = 0
    copies: int = 1
    input_copies: int = 0
    src0_node: int = 0
    src1_node: int = 0
    replicas_log2: int = 0
    phase: int = 0
    name: str = field(default="", compare=False)

    @property
    def out_pixels(self) -> int:
        """``P = out_h * out_w`` of the window: output pixels of the node."""
        out_h, out_w = self.window.out_hw()
        return out_h * out_w

    @property
    def dst_size(self) -> int:
        """Codes the node writes: ``dst_channels * P``."""
        return self.dst_channels * self.out_pixels

    def sources(self) -> list[tuple[int, int]]:
        """``(base, size)`` of every map the node reads (src0, and src1 for an ADD)."""
        spans = [(self.window.base, self.window.size)]
        if self.kind == NodeKind.ADD:
            spans.append((self.src1_base, self.window.size))
        return spans

    def label(self, index: int | None = None) -> str:
        """How messages name the node: ``node 'pool1'`` (``node 3 ('pool1')`` with its
        index; ``node 3`` or ``""`` without a name)."""
        name = self.name if isinstance(self.name, str) and self.name else None
        if index is None:
            return f"node {name!r}" if name else ""
        return f"node {index} ({name!r})" if name else f"node {index}"

    def record(self, config: AcceleratorConfig) -> dict:
        """Return the record's field values (``window`` a nested dict), checked.

        Checks every field against the widths of :func:`node_layout` and what the kind
        allows (a layer index only for COMPUTE, ADD fields only for ADD, a 1x1 window for
        ADD, the pool's channels kept, maps inside the buffer). The layer table is not
        seen here (:func:`bitline.hw.spec.validate.validate_program` checks a COMPUTE
        node against its layer).

        Raises
        ------
        NodeFieldError
            ``field <name>: ...`` naming the field and the value.
        """
        geometry = NetGeometry.from_config(config)
        try:
            kind = NodeKind(int(self.kind))
        except ValueError:
            raise NodeFieldError("kind", f"{self.kind!r} is no node kind (known: "
                             f"{', '.join(f'{k.name}={k.value}' for k in NodeKind)})") from None
        try:
            window = self.window.record(geometry)
        except ValueError as error:
            raise NodeFieldError("window", str(error)) from None
        if not 0 <= int(self.layer) < config.max_layers:
            raise NodeFieldError("layer", f"{self.layer} is not below max_layers "
                             f"({config.max_layers})")
        if kind != NodeKind.COMPUTE and self.layer:
            raise NodeFieldError("layer", f"{self.layer} on a {kind.name} node (only "
                             "COMPUTE nodes name a layer; 0 otherwise)")
        if self.count_include_pad and kind != NodeKind.POOL_AVG:
            raise NodeFieldError("count_include_pad", f"set on a {kind.name} node "
                             "(POOL_AVG only)")
        if not 1 <= int(self.dst_channels) <= geometry.max_channels:
            raise NodeFieldError("dst_channels", f"{self.dst_channels} is not in 1 .. "
                             f"max_map_channels ({geometry.max_channels})")
        if kind != NodeKind.COMPUTE and self.dst_channels != self.window.channels:
            raise NodeFieldError("dst_channels", f"{self.dst_channels} on a {kind.name} "
                             f"node whose source has {self.window.channels} channels "
                             "(pools and adds keep the channels)")
        end = int(self.dst_base) + self.dst_size
        if self.to_host and self.dst_base:
            raise NodeFieldError("dst_base", f"{self.dst_base} on the to_host node (its "
                                 "outputs go to the host, not the buffer: 0)")
        if not self.to_host and (self.dst_base < 0 or end > geometry.depth):
            raise NodeFieldError("dst_base", f"output map at {self.dst_base} of "
                             f"{self.dst_size} codes ends at {end}, beyond "
                             f"act_buffer_depth ({geometry.depth})")
        if kind == NodeKind.POOL_MAX and self.window.pad_value:
            raise NodeFieldError("window.pad_value", f"{self.window.pad_value} on a "
                             "POOL_MAX node (max pools pad with code 0)")
        if kind == NodeKind.POOL_AVG and not self.count_include_pad and \
                self.window.pad_value:
            raise NodeFieldError("window.pad_value", f"{self.window.pad_value} on a "
                             "POOL_AVG node without count_include_pad (padding is not "
                             "read; 0)")
        if kind == NodeKind.ADD:
            self._check_add(geometry)
        else:
            for name in ("src1_base",) + NODE_ADD_FIELDS:
                if getattr(self, name):
                    raise NodeFieldError(name, f"{getattr(self, name)} on a "
                                     f"{kind.name} node (ADD only; 0 otherwise)")
        record = dict(kind=int(kind), layer=int(self.layer),
                      to_host=int(bool(self.to_host)),
                      count_include_pad=int(bool(self.count_include_pad)), window=window,
                      src1_base=int(self.src1_base), dst_base=int(self.dst_base),
                      dst_channels=int(self.dst_channels),
                      **{name: int(getattr(self, name)) for name in NODE_ADD_FIELDS})
        record.update(self._pipeline_fields(config, kind))
        return record

    def _pipeline_fields(self, config: AcceleratorConfig, kind: NodeKind) -> dict[str, int]:
        """The pipeline fields' values (only with ``config.pipeline_stages``), checked
        for their widths; the graph-wide rules (stages in node order, enough copies,
        producers before consumers) are :func:`bitline.hw.spec.validate.validate_program`'s.
        """
        values = {name: int(getattr(self, name)) for name in NODE_PIPELINE_FIELDS}
        if not config.pipeline_stages:
            defaults = {"stage": 0, "copies": 1, "input_copies": 0, "src0_node": 0,
                        "src1_node": 0, "replicas_log2": 0, "phase": 0}
            for name, default in defaults.items():
                if values[name] != default:
                    raise NodeFieldError(name, f"{values[name]} on hardware without the "
                                         f"inter-layer pipeline (pipeline_stages = 0; "
                                         f"{default} there)")
            return {}
        if not 0 <= values["stage"] < config.pipeline_stages:
            raise NodeFieldError("stage", f"{values['stage']} is not below pipeline_stages "
                                 f"({config.pipeline_stages})")
        if not 1 <= values["copies"] < 1 << COPY_BITS:
            raise NodeFieldError("copies", f"{values['copies']} is not in 1 .. "
                                 f"{(1 << COPY_BITS) - 1}")
        if not 0 <= values["input_copies"] < 1 << COPY_BITS:
            raise NodeFieldError("input_copies", f"{values['input_copies']} is not in 0 .. "
                                 f"{(1 << COPY_BITS) - 1}")
        for name in ("src0_node", "src1_node"):
            if not 0 <= values[name] <= config.max_nodes:
                raise NodeFieldError(name, f"{values[name]} is not in 0 .. max_nodes "
                                     f"({config.max_nodes})")
        if kind != NodeKind.ADD and values["src1_node"]:
            raise NodeFieldError("src1_node", f"{values['src1_node']} on a {kind.name} node "
                                 "(ADD only; 0 otherwise)")
        if not 0 <= values["replicas_log2"] < 1 << REPLICA_LOG2_BITS:
            raise NodeFieldError("replicas_log2", f"{values['replicas_log2']} is not in 0 .. "
                                 f"{(1 << REPLICA_LOG2_BITS) - 1}")
        if kind != NodeKind.COMPUTE and values["replicas_log2"]:
            raise NodeFieldError("replicas_log2", f"{values['replicas_log2']} on a "
                                 f"{kind.name} node (only COMPUTE nodes are replicated; 0)")
        if not 0 <= values["phase"] < 1 << values["replicas_log2"]:
            raise NodeFieldError("phase", f"{values['phase']} is not below the group's "
                                 f"{1 << values['replicas_log2']} replicas")
        return values

    def _check_add(self, geometry: NetGeometry) -> None:
        window = self.window
        if (window.kernel, window.stride, window.pads, window.dilation, window.pad_value) \
                != ((1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 0):
            raise NodeFieldError("window", f"an ADD node reads a 1x1 window (kernel 1, "
                             f"stride 1, no pads, dilation 1, pad_value 0), not kernel "
                             f"{window.kernel} stride {window.stride} pads {window.pads} "
                             f"dilation {window.dilation} pad_value {window.pad_value}")
        end = int(self.src1_base) + window.size
        if self.src1_base < 0 or end > geometry.depth:
            raise NodeFieldError("src1_base", f"second operand at {self.src1_base} of "
                             f"{window.size} codes ends at {end}, beyond act_buffer_depth "
                             f"({geometry.depth})")
        for name in ("zero_a", "zero_b", "zero_point", "clamp_lo", "clamp_hi"):
            value = int(getattr(self, name))
            if not 0 <= value < 1 << geometry.act_bits:
                raise NodeFieldError(name, f"{value} is not a {geometry.act_bits}-bit "
                                 "code")
        if self.clamp_lo > self.clamp_hi:
            raise NodeFieldError("clamp_lo", f"{self.clamp_lo} is above clamp_hi "
                             f"({self.clamp_hi})")
        for name in ("mult_a", "mult_b"):
            value = int(getattr(self, name))
            if not -(1 << (MULT_BITS - 1)) <= value < 1 << (MULT_BITS - 1):
                raise NodeFieldError(name, f"{value} does not fit a signed "
                                 f"{MULT_BITS}-bit multiplier")
        if not 0 <= int(self.shift) < 1 << SHIFT_BITS:
            raise NodeFieldError("shift", f"{self.shift} is not in 0 .. "
                             f"{(1 << SHIFT_BITS) - 1}")


def node_columns(config: AcceleratorConfig, records: list[dict]) -> dict[str, np.ndarray]:
    """Return :meth:`NodeProgram.record` dicts as the columns of the packed records.

    Keys are the leaf names of :func:`node_layout` (``window.base`` ...); signed fields are
    their two's complement bit patterns, so the columns go straight to
    :func:`~bitline.hw.spec.encoding.pack_columns`.
    """
    layout = node_layout(config)
    columns = {}
    for name, _, width in flatten_fields(layout):
        path = name.split(".")
        values = []
        for record in records:
            value = record
            for key in path:
                value = value[key]
            values.append(int(value) & ((1 << width) - 1))
        columns[name] = np.asarray(values, dtype=np.int64)
    return columns


def nodes_from_records(config: AcceleratorConfig, records: np.ndarray,
                       names: list[str] | None = None) -> list[NodeProgram]:
    """Inverse of packing :func:`node_columns`: nodes from unpacked NETWORK records.

    ``records`` is the structured array :func:`~bitline.hw.spec.encoding.unpack` returns
    for :func:`node_layout`; signed fields are sign-extended. Values are not checked here
    (:meth:`NodeProgram.record` does).
    """
    nodes = []
    for index, row in enumerate(records):
        get = {name: int(row[name]) for name in records.dtype.names}
        for name in ("mult_a", "mult_b"):
            if get[name] >= 1 << (MULT_BITS - 1):
                get[name] -= 1 << MULT_BITS
        window = WindowParams.from_record({key.split(".", 1)[1]: value
                                           for key, value in get.items()
                                           if key.startswith("window.")})
        nodes.append(NodeProgram(
            kind=NodeKind(get["kind"]),         # 2 bits: every value is a kind
            window=window, dst_base=get["dst_base"], dst_channels=get["dst_channels"],
            layer=get["layer"], to_host=bool(get["to_host"]),
            count_include_pad=bool(get["count_include_pad"]), src1_base=get["src1_base"],
            **{name: get[name] for name in NODE_ADD_FIELDS},
            **{name: get[name] for name in NODE_PIPELINE_FIELDS if name in get},
            name=names[index] if names and index < len(names) else ""))
    return nodes
