"""Capacities of the network units and the per-layer window record (docs/network.md).

:class:`NetGeometry` fixes what the hardware can hold (elaboration constants: the widths of
every counter and the buffer's depth); :class:`WindowParams` is one layer's window
(runtime values that the address generator reads from its ``record`` port, so one piece of
hardware serves every layer). A conv layer's inputs, a pooling layer's windows, a global
average pool and flatten are all windows:

* conv / pooling: ``kernel``, ``stride``, ``pads``, ``dilation`` of the layer;
* global average pool: one ``H x W`` window per channel, no padding;
* flatten: the same record (one output pixel whose window is the whole ``C x H x W`` map),
  which streams the map in C order - flatten is an addressing mode, not a unit.

This module does not import ``bitline.sw`` (hw never does): the output size formula is the
one of :func:`bitline.sw.frontend.im2col.conv_output_hw`, restated in
:meth:`WindowParams.out_hw`; the tests check the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from amaranth import unsigned
from amaranth.lib import data
from bitline.hw.spec.config import AcceleratorConfig

__all__ = ["NetGeometry", "WindowParams", "element_layout", "window_layout"]


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
        Codes the activation buffer holds: one code per word (docs/network.md says why),
        e.g. two ``C x H x W`` maps for ping-pong operation.
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
        for field in fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"NetGeometry.{field.name} must be an integer >= 1, "
                                 f"not {value!r}")
        if self.act_bits > 16:
            raise ValueError(f"NetGeometry.act_bits must be <= 16, not {self.act_bits}")

    @classmethod
    def from_config(cls, config: AcceleratorConfig, **capacities) -> NetGeometry:
        """Return a geometry with the config's activation width and the given capacities."""
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
