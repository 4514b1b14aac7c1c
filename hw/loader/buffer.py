"""The loader's input skid buffer: two bytes between the host's stream and the parsers."""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SkidBuffer"]


class SkidBuffer(wiring.Component):
    """A two-entry skid buffer whose outputs all start at flip-flops.

    On the board the bytes come straight from the UART bridge's block-RAM FIFO, whose
    clock-to-out alone is about 6 ns: here ``o.payload`` and ``o.valid`` are registers, and
    ``i.ready`` is a register too (the buffer is not full), not the consumer's state decode.
    A byte accepted on ``i`` reaches ``o`` in the next cycle; up to two bytes wait while
    ``o.ready`` is low.

    Attributes
    ----------
    i: In(stream.Signature(width))
        Producer side.
    o: Out(stream.Signature(width))
        Consumer side.
    flush: In(1)
        Empty the buffer (both bytes are dropped) and accept nothing in this cycle.
    """

    def __init__(self, width: int = 8):
        super().__init__({
            "i": In(stream.Signature(width)),
            "o": Out(stream.Signature(width)),
            "flush": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        skid_valid = Signal()
        skid_payload = Signal.like(self.i.payload)
        arrive = self.i.valid & self.i.ready
        m.d.comb += self.i.ready.eq(~skid_valid & ~self.flush)
        with m.If(self.flush):
            m.d.sync += [self.o.valid.eq(0), skid_valid.eq(0)]
        with m.Elif(self.o.ready | ~self.o.valid):
            with m.If(skid_valid):
                m.d.sync += [self.o.payload.eq(skid_payload), self.o.valid.eq(1),
                             skid_valid.eq(0)]
            with m.Else():
                m.d.sync += [self.o.payload.eq(self.i.payload), self.o.valid.eq(arrive)]
        with m.Elif(arrive):
            m.d.sync += [skid_payload.eq(self.i.payload), skid_valid.eq(1)]
        return m
