"""Inter-unit reduction: sum one output channel's partial sums over a layer's units.

A layer's output channel ``n`` is ``sum_u psum_u[n]`` over the crossbar units of the layer
(the layer record's ``xbar_mask``). Units that hold no entry naming ``n`` -- their *touched*
flag for ``n`` is clear -- are skipped: they put no operand on the inter-unit path (IVQ's
hollow exemption), and ``contributions`` counts only the operands that travel. The sum is
registered (one pipeline stage, ``unit_sum`` in :data:`bitline.hw.spec.timing.DRAIN_STAGES`).
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from bitline.hw.spec.config import AcceleratorConfig
from bitline.hw.unit.shift_add import drained_layout

__all__ = ["Reduction"]


class Reduction(wiring.Component):
    """Masked sum of one channel over the crossbar units.

    Attributes
    ----------
    units: In(stream.Signature(ArrayLayout(drained_layout, n_xbars), always_ready=True))
        Every unit's drained channel (from its shift-and-add), all in the same cycle.
    mask: In(n_xbars)
        Units of the current layer.
    sums: Out(stream.Signature(signed(acc_bits), always_ready=True))
        One cycle later: the channel's accumulator.
    contributions: Out(range(n_xbars + 1))
        Operands that travel in this cycle (touched units of the layer).
    """

    def __init__(self, config: AcceleratorConfig):
        self.config = config
        super().__init__({
            "units": In(stream.Signature(data.ArrayLayout(drained_layout(config),
                                                          config.n_xbars),
                                         always_ready=True)),
            "mask": In(config.n_xbars),
            "sums": Out(stream.Signature(signed(config.acc_bits), always_ready=True)),
            "contributions": Out(range(config.n_xbars + 1)),
        })

    def elaborate(self, platform):
        config = self.config
        m = Module()
        operands = []
        travels = []
        for unit in range(config.n_xbars):
            part = self.units.payload[unit]
            travel = Signal(name=f"travel{unit}")
            m.d.comb += travel.eq(self.units.valid & self.mask[unit] & part.touched)
            travels.append(travel)
            operands.append(Mux(travel, part.value, 0))
        # balanced adder tree
        while len(operands) > 1:
            paired = [operands[i] + operands[i + 1] for i in range(0, len(operands) - 1, 2)]
            if len(operands) % 2:
                paired.append(operands[-1])
            operands = paired
        m.d.sync += [
            self.sums.valid.eq(self.units.valid),
            self.sums.payload.eq(operands[0]),
        ]
        m.d.comb += self.contributions.eq(sum(travels))
        return m
