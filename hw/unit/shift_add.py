"""Shift-and-add: one crossbar unit's partial sums, one accumulator lane per ADC.

Each ADC lane ``a`` owns a partial-sum memory (``channels`` words of ``acc_bits`` plus a
*touched* bit) so the ``adcs_per_xbar`` updates of one conversion never compete for a write
port, whatever their destinations. The updates are registered at the input (the ADC code
arrives combinationally from the crossbar port: the emulator's OU sum and clip, the FPGA's
longest path with the shift and negation below behind it; docs/fpga.md section 4); then a
lane is a two-stage read-modify-write pipeline, so an update is written
:data:`~bitline.hw.spec.timing.ACCUMULATE_CYCLES` (two) cycles after it arrives:

* stage A: read ``psum[dest]``; form ``term = (-1)**sign * (code << shift)``;
* stage B: ``psum[dest] = old + term`` (touched = 1), where ``old`` is the memory's word or,
  when stage B wrote the same ``dest`` in the previous cycle, that freshly written sum
  (forwarding) -- so back-to-back updates of one accumulator never stall. This is the
  temporal pipeline IVQ relies on: with ``ivq-temporal`` and ``bwq`` consecutive reads
  often target the same channel.

``drain`` reads and clears one channel of every lane (never in a cycle with an update in
flight); ``DRAIN_STAGES.index("unit_sum")`` (three) cycles later ``drained`` carries the
lane sum and whether any lane was touched, the unit's contribution to the inter-unit
reduction: the memory read, the sums of lane pairs (registered) and their sum, so that no
stage adds more than two operand levels after a memory read (the FPGA's longest path of a
one-unit build at 61.6 MHz was the whole 8-lane sum after the read; docs/fpga.md).
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from bitline.hw._component import rejects_quietly
from bitline.hw.spec.config import AcceleratorConfig, clog2
from bitline.hw.unit.adc_mux import update_layout

__all__ = ["ShiftAdd", "psum_layout", "drained_layout"]


def psum_layout(config: AcceleratorConfig) -> data.StructLayout:
    """Return one partial-sum word: the value and whether any update reached it."""
    return data.StructLayout({"value": signed(config.acc_bits), "touched": 1})


def drained_layout(config: AcceleratorConfig) -> data.StructLayout:
    """Return a unit's drained channel: lane sum and touched flag."""
    return data.StructLayout({"value": signed(config.acc_bits), "touched": 1})


class ShiftAdd(wiring.Component):
    """Accumulator lanes of one crossbar unit.

    Parameters
    ----------
    config:
        Accelerator configuration.
    channels:
        Partial-sum words per lane (output channels of the widest layer).

    Attributes
    ----------
    updates: In(stream.Signature(ArrayLayout(update_layout, adcs_per_xbar), always_ready=True))
        From the ADC mux.
    drain: In(stream.Signature(range(channels), always_ready=True))
        Channel to read out and clear.
    drained: Out(stream.Signature(drained_layout, always_ready=True))
        Three cycles after ``drain``: sum over lanes and OR of their touched bits.
    """

    @rejects_quietly
    def __init__(self, config: AcceleratorConfig, channels: int | None = None):
        self.config = config
        self.channels = config.max_out_channels if channels is None else channels
        if not 1 <= self.channels <= config.max_out_channels:
            raise ValueError(f"channels must be between 1 and max_out_channels "
                             f"({config.max_out_channels}), not {self.channels}")
        super().__init__({
            "updates": In(stream.Signature(
                data.ArrayLayout(update_layout(config), config.adcs_per_xbar),
                always_ready=True)),
            "drain": In(stream.Signature(range(self.channels), always_ready=True)),
            "drained": Out(stream.Signature(drained_layout(config), always_ready=True)),
        })

    def elaborate(self, platform):
        config = self.config
        m = Module()
        word = psum_layout(config)
        address_bits = clog2(self.channels)
        lane_values = []
        lane_touched = []
        # input register: the ports' codes and the tags, one cycle before stage A
        updates = Signal.like(self.updates.payload)
        updates_valid = Signal()
        m.d.sync += [updates.eq(self.updates.payload), updates_valid.eq(self.updates.valid)]
        for lane in range(config.adcs_per_xbar):
            memory = Memory(shape=word.size, depth=self.channels, init=[])
            m.submodules[f"psum{lane}"] = memory
            read = memory.read_port()
            write = memory.write_port()
            stored = word(read.data)
            update = updates[lane]

            # stage A: read the accumulator, form the term
            magnitude = update.code << update.shift
            term = Signal(signed(config.acc_bits), name=f"term_a{lane}")
            m.d.comb += term.eq(Mux(update.sign, -magnitude, magnitude))
            valid_b = Signal(name=f"valid_b{lane}")
            dest_b = Signal(address_bits, name=f"dest_b{lane}")
            term_b = Signal(signed(config.acc_bits), name=f"term_b{lane}")
            m.d.sync += [
                valid_b.eq(updates_valid & update.valid),
                dest_b.eq(update.dest),
                term_b.eq(term),
            ]

            # stage B: add (forwarding the previous cycle's write) and write back
            forward_valid = Signal(name=f"forward_valid{lane}")
            forward_dest = Signal(address_bits, name=f"forward_dest{lane}")
            forward_value = Signal(signed(config.acc_bits), name=f"forward_value{lane}")
            old = Mux(forward_valid & (forward_dest == dest_b), forward_value, stored.value)
            total = Signal(signed(config.acc_bits), name=f"sum_b{lane}")
            m.d.comb += total.eq(old + term_b)
            m.d.sync += [
                forward_valid.eq(valid_b),
                forward_dest.eq(dest_b),
                forward_value.eq(total),
            ]

            written = Signal(word, name=f"written{lane}")
            m.d.comb += [written.value.eq(total), written.touched.eq(1)]
            with m.If(self.drain.valid):
                # read out and clear; no update is in flight during a drain
                m.d.comb += [
                    read.addr.eq(self.drain.payload),
                    write.addr.eq(self.drain.payload),
                    write.data.eq(0),
                    write.en.eq(1),
                ]
            with m.Else():
                m.d.comb += [
                    read.addr.eq(update.dest),
                    write.addr.eq(dest_b),
                    write.data.eq(written),
                    write.en.eq(valid_b),
                ]
            lane_values.append(stored.value)
            lane_touched.append(stored.touched)

        # lane_pairs: the sums of lane pairs (and the touched flags' OR), registered
        drained_valid = Signal()
        pairs_valid = Signal()
        m.d.sync += [drained_valid.eq(self.drain.valid), pairs_valid.eq(drained_valid)]
        pairs = []
        for index in range(0, len(lane_values), 2):
            pair = Signal(signed(config.acc_bits), name=f"lane_pair{index // 2}")
            m.d.sync += pair.eq(sum(lane_values[index:index + 2]))
            pairs.append(pair)
        touched = Signal()
        m.d.sync += touched.eq(Cat(*lane_touched).any())
        # lane_sum: the pairs' sum
        m.d.sync += [
            self.drained.valid.eq(pairs_valid),
            self.drained.payload.value.eq(sum(pairs)),
            self.drained.payload.touched.eq(touched),
        ]
        return m
