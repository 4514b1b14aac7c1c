"""Im2col reader: a layer's input vectors streamed from the activation buffer.

From a window record (:func:`~bitline.hw.net.geometry.window_layout`, runtime values) the
reader walks the loop nest of the contract's im2col order (docs/contract.md section 2,
:func:`bitline.sw.frontend.im2col.im2col`)::

    for oy < out_h, ox < out_w:          # output pixel p = oy * out_w + ox
        for c < channels, ky < kernel_h, kx < kernel_w:   # input i = (c*KH + ky)*KW + kx
            iy = oy*stride_h + ky*dilation_h - pad_top
            ix = ox*stride_w + kx*dilation_w - pad_left
            code = map[c, iy, ix] if inside the map else pad_value

and emits one element per cycle (:func:`~bitline.hw.net.geometry.element_layout`). The
address ``base + c*H*W + iy*W + ix`` of the channel-first buffer is kept as running sums
(``c*H*W``, ``iy*W``, ``ix``), so the stream needs no multiplier; the four products of
record fields it starts from (``H*W``, ``dilation_h*W``, ``stride_h*W``, ``pad_top*W``)
are registered in a set-up cycle after ``start``.

Groups: the contract's input vector of a grouped or depthwise conv is the whole
``C*KH*KW`` window (the block-diagonal matrix does the grouping), so groups need no
addressing of their own. A pooling layer uses the same stream: its windows are the
``window_last`` runs of ``KH*KW`` elements. Flatten and the global average pool are
:meth:`~bitline.hw.net.geometry.WindowParams.flatten` records.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from bitline.hw.net.buffer import read_port_signature
from bitline.hw.net.geometry import NetGeometry, element_layout, window_layout

__all__ = ["Im2colReader"]


class Im2colReader(wiring.Component):
    """Stream a layer's im2col elements from an :class:`ActivationBuffer` read port.

    Attributes
    ----------
    record: In(window_layout)
        The layer's window; stable from ``start`` until ``busy`` falls.
    start: In(1)
        One cycle: begin the layer (ignored while busy).
    busy: Out(1)
        High from ``start`` until the layer's last element has been taken.
    read: Out(read_port_signature)
        To the buffer's read port.
    outputs: Out(stream.Signature(element_layout))
        One element per cycle unless held by ``ready``.
    """

    def __init__(self, geometry: NetGeometry):
        self.geometry = geometry
        super().__init__({
            "record": In(window_layout(geometry)),
            "start": In(1),
            "busy": Out(1),
            "read": Out(read_port_signature(geometry)),
            "outputs": Out(stream.Signature(element_layout(geometry))),
        })

    def elaborate(self, platform):
        geometry = self.geometry
        record = self.record
        m = Module()
        dim = geometry.dim_bits
        # Offsets may be negative inside the padding: signed and wide enough for
        # (2 * max side) ** 2 + depth.
        offset = signed(geometry.addr_bits + 2 * dim + 2)
        coord = signed(dim + 2)

        plane = Signal(geometry.addr_bits + 1)      # H * W
        row_step = Signal(offset)                   # dilation_h * W
        stride_row = Signal(offset)                 # stride_h * W
        top_row = Signal(offset)                    # pad_top * W

        oy, ox = Signal(dim), Signal(dim)
        channel = Signal(geometry.channel_bits)
        ky, kx = Signal(dim), Signal(dim)
        y0, x0 = Signal(coord), Signal(coord)       # window origin of (oy, ox)
        iy, ix = Signal(coord), Signal(coord)
        y0_row = Signal(offset)                     # y0 * W
        row = Signal(offset)                        # iy * W
        channel_offset = Signal(geometry.addr_bits + 1)  # c * H * W

        last_x = kx + 1 == record.kernel_w
        last_y = ky + 1 == record.kernel_h
        last_c = channel + 1 == record.channels
        last_ox = ox + 1 == record.out_w
        last_oy = oy + 1 == record.out_h
        inside = (iy >= 0) & (iy < record.height) & (ix >= 0) & (ix < record.width)

        # Stage 0 is the loop nest (the address), stage 1 the memory's read register and
        # the element's flags; both advance together, so the read data is held with them.
        running = Signal()
        advance = ~self.outputs.valid | self.outputs.ready
        pad = Signal()
        m.d.comb += [
            self.read.addr.eq(record.base + channel_offset + row + ix),
            self.read.en.eq(advance),
            self.outputs.payload.code.eq(Mux(pad, record.pad_value, self.read.data)),
            self.outputs.payload.pad.eq(pad),
        ]
        with m.If(advance):
            m.d.sync += [
                self.outputs.valid.eq(running),
                pad.eq(~inside),
                self.outputs.payload.window_last.eq(last_x & last_y),
                self.outputs.payload.vector_last.eq(last_x & last_y & last_c),
                self.outputs.payload.last.eq(last_x & last_y & last_c & last_ox & last_oy),
            ]

        with m.FSM(name="im2col") as fsm:
            with m.State("IDLE"):
                with m.If(self.start):
                    m.next = "SETUP"
            with m.State("SETUP"):
                m.d.sync += [
                    plane.eq(record.height * record.width),
                    row_step.eq(record.dilation_h * record.width),
                    stride_row.eq(record.stride_h * record.width),
                    top_row.eq(record.pad_top * record.width),
                ]
                m.next = "FIRST"
            with m.State("FIRST"):
                m.d.sync += [
                    oy.eq(0), ox.eq(0), channel.eq(0), ky.eq(0), kx.eq(0),
                    y0.eq(-record.pad_top), x0.eq(-record.pad_left),
                    iy.eq(-record.pad_top), ix.eq(-record.pad_left),
                    y0_row.eq(-top_row), row.eq(-top_row), channel_offset.eq(0),
                    running.eq(1),
                ]
                m.next = "RUN"
            with m.State("RUN"):
                with m.If(advance):
                    # One element: the innermost counter that is not at its end steps,
                    # the ones inside it return to their start; running sums follow.
                    with m.If(~last_x):
                        m.d.sync += [kx.eq(kx + 1), ix.eq(ix + record.dilation_w)]
                    with m.Elif(~last_y):
                        m.d.sync += [kx.eq(0), ix.eq(x0), ky.eq(ky + 1),
                                     iy.eq(iy + record.dilation_h), row.eq(row + row_step)]
                    with m.Elif(~last_c):
                        m.d.sync += [kx.eq(0), ix.eq(x0), ky.eq(0), iy.eq(y0),
                                     row.eq(y0_row), channel.eq(channel + 1),
                                     channel_offset.eq(channel_offset + plane)]
                    with m.Elif(~last_ox):
                        m.d.sync += [kx.eq(0), ky.eq(0), iy.eq(y0), row.eq(y0_row),
                                     channel.eq(0), channel_offset.eq(0), ox.eq(ox + 1),
                                     x0.eq(x0 + record.stride_w),
                                     ix.eq(x0 + record.stride_w)]
                    with m.Elif(~last_oy):
                        m.d.sync += [kx.eq(0), ky.eq(0), channel.eq(0),
                                     channel_offset.eq(0), ox.eq(0),
                                     x0.eq(-record.pad_left), ix.eq(-record.pad_left),
                                     oy.eq(oy + 1), y0.eq(y0 + record.stride_h),
                                     iy.eq(y0 + record.stride_h),
                                     y0_row.eq(y0_row + stride_row),
                                     row.eq(y0_row + stride_row)]
                    with m.Else():
                        m.d.sync += running.eq(0)
                        m.next = "IDLE"
        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE") | self.outputs.valid)
        return m
