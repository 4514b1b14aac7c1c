"""Activation buffer: a feature-map store in block RAM, channel-first, one code per word.

Layout: the map ``C x H x W`` at ``base`` holds code ``(c, y, x)`` at address
``base + (c * H + y) * W + x`` (the C order of the contract's ``(C, H, W)`` tensors). Why
channel-first and one code per word (docs/network.md, "Layout"): the contract's im2col
order ``i = (c*KH + ky)*KW + kx`` and its flatten order are both channel-major, so every
element of an input vector is one read at an affine address and flatten is a linear read;
the crossbar units take one input code per cycle, so a wider word would not be used yet.

The write stream takes codes in either of two orders, set by ``write_linear``:

* producer order (0): pixel-major, channels innermost - the order in which the output
  unit, the pool unit and the residual add emit a layer's outputs (output pixel ``p``
  row-major, channel ``c`` of it); code ``k = p * C + c`` goes to ``base + c * P + p``
  with ``P = write_pixels``;
* linear (1): code ``k`` goes to ``base + k`` (an input image already in C order).

``write_start`` (one cycle) restarts the write counters; ``write_count`` counts the codes
written since. The read port is the memory's synchronous port: ``data`` is the code at
the ``addr`` of the last cycle in which ``en`` was high. ``read_ports=2`` adds a second,
independent read port ``read_b`` (the residual add's second operand). With one write and
two read ports the store is two 1W1R copies on an ECP5 (Yosys: 4 DP16KD instead of 2 for
4,096 x 8 bits).
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, unsigned
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out
from bitline.hw.net.geometry import NetGeometry

__all__ = ["ActivationBuffer", "read_port_signature", "write_address"]


def read_port_signature(geometry: NetGeometry) -> wiring.Signature:
    """A synchronous read port as its reader sees it (``addr``/``en`` out, ``data`` in)."""
    return wiring.Signature({
        "addr": Out(geometry.addr_bits),
        "en": Out(1),
        "data": In(geometry.act_bits),
    })


def write_address(m: Module, geometry: NetGeometry, valid, write_start, base, channels,
                  pixels, linear, count):
    """Add a write stream's address counters to ``m``; return the write address.

    Producer order (``linear`` low): code ``k = p * C + c`` at ``base + c * P + p`` with
    ``C = channels``, ``P = pixels``, kept as counters and a running sum (no multiplier);
    linear: code ``k`` at ``base + k``. ``valid`` writes a code; ``write_start``
    restarts the counters; ``count`` (a Signal driven here) counts the codes written
    since. Shared by :class:`ActivationBuffer` and the pipeline's buffer
    (:mod:`bitline.hw.net.pipeline`).
    """
    channel = Signal(geometry.channel_bits)
    pixel = Signal(geometry.addr_bits + 1)
    plane_offset = Signal(geometry.addr_bits + 1)
    produced = base + plane_offset + pixel
    with m.If(write_start):
        m.d.sync += [channel.eq(0), pixel.eq(0), plane_offset.eq(0), count.eq(0)]
    with m.Elif(valid):
        m.d.sync += count.eq(count + 1)
        with m.If(channel + 1 >= channels):
            m.d.sync += [channel.eq(0), plane_offset.eq(0), pixel.eq(pixel + 1)]
        with m.Else():
            m.d.sync += [channel.eq(channel + 1), plane_offset.eq(plane_offset + pixels)]
    return Mux(linear, base + count, produced)


class ActivationBuffer(wiring.Component):
    """``geometry.depth`` activation codes with a write stream and a read port.

    Attributes
    ----------
    write: In(stream.Signature(act_bits))
        Codes to store; always ready (one write per cycle).
    write_start: In(1)
        Restart the write counters (the next code is the map's first).
    write_base, write_channels, write_pixels, write_linear: In
        Where the map goes, its channel count ``C`` and output pixel count ``P``
        (``OH * OW``), and the order of the stream (stable while a map is written).
    write_count: Out
        Codes written since ``write_start``.
    read: In(read_port_signature)
        The read port (one-cycle latency, ``data`` held while ``en`` is low).
    read_b: In(read_port_signature)
        A second read port like ``read`` (only with ``read_ports=2``).
    """

    def __init__(self, geometry: NetGeometry, *, read_ports: int = 1):
        if read_ports not in (1, 2):
            raise ValueError(f"ActivationBuffer: read_ports must be 1 or 2, not {read_ports!r}")
        self.geometry = geometry
        self.read_ports = read_ports
        count_bits = geometry.addr_bits + 1
        members = {
            "write": In(stream.Signature(unsigned(geometry.act_bits))),
            "write_start": In(1),
            "write_base": In(geometry.addr_bits),
            "write_channels": In(geometry.channel_bits),
            "write_pixels": In(count_bits),
            "write_linear": In(1),
            "write_count": Out(count_bits),
            "read": In(read_port_signature(geometry)),
        }
        if read_ports == 2:
            members["read_b"] = In(read_port_signature(geometry))
        super().__init__(members)

    def elaborate(self, platform):
        geometry = self.geometry
        m = Module()
        m.submodules.store = store = memory.Memory(
            shape=unsigned(geometry.act_bits), depth=geometry.depth, init=[])
        write_port = store.write_port()
        for port in (self.read, self.read_b) if self.read_ports == 2 else (self.read,):
            read_port = store.read_port(domain="sync")
            m.d.comb += [
                read_port.addr.eq(port.addr),
                read_port.en.eq(port.en),
                port.data.eq(read_port.data),
            ]

        address = write_address(m, geometry, self.write.valid, self.write_start,
                                self.write_base, self.write_channels, self.write_pixels,
                                self.write_linear, self.write_count)
        m.d.comb += [
            self.write.ready.eq(1),
            write_port.addr.eq(address),
            write_port.data.eq(self.write.payload),
            write_port.en.eq(self.write.valid),
        ]
        return m
