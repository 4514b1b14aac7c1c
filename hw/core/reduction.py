"""Inter-unit reduction: sum one output channel's partial sums over a layer's units.

A layer's output channel ``n`` is ``sum_u psum_u[n]`` over the crossbar units of the layer
(the layer record's ``xbar_mask``). Units that hold no entry naming ``n`` -- their *touched*
flag for ``n`` is clear -- are skipped: they put no operand on the inter-unit path (IVQ's
hollow exemption), and ``contributions`` counts only the operands that travel. The sum is
registered (one pipeline stage, ``unit_sum`` in :data:`bitline.hw.spec.timing.DRAIN_STAGES`).

With copies (docs/hardware.md, "Copies") the units of a layer form ``max_copies`` lanes and
the reduction runs one masked sum per lane: ``masks[k]`` holds the units of lane ``k`` (of an
active lane; an idle lane's mask is empty, so its units put no operand on the path).
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
    masks: In(ArrayLayout(n_xbars, max_copies))
        Units of each lane of the current layer (disjoint).
    sums: Out(stream.Signature(ArrayLayout(signed(acc_bits), max_copies), always_ready=True))
        One cycle later: the channel's accumulator of every lane.
    contributions: Out(range(n_xbars + 1))
        Operands that travel in this cycle (touched units of the lanes' masks).
    """

    def __init__(self, config: AcceleratorConfig):
        self.config = config
        super().__init__({
            "units": In(stream.Signature(data.ArrayLayout(drained_layout(config),
                                                          config.n_xbars),
                                         always_ready=True)),
            "masks": In(data.ArrayLayout(config.n_xbars, config.max_copies)),
            "sums": Out(stream.Signature(data.ArrayLayout(signed(config.acc_bits),
                                                          config.max_copies),
                                         always_ready=True)),
            "contributions": Out(range(config.n_xbars + 1)),
        })

    def elaborate(self, platform):
        config = self.config
        m = Module()
        travels = []
        for lane in range(config.max_copies):
            operands = []
            for unit in range(config.n_xbars):
                part = self.units.payload[unit]
                travel = Signal(name=f"travel{unit}" if config.max_copies == 1
                                else f"travel{unit}_lane{lane}")
                m.d.comb += travel.eq(self.units.valid & self.masks[lane][unit] & part.touched)
                travels.append(travel)
                operands.append(Mux(travel, part.value, 0))
            # balanced adder tree
            while len(operands) > 1:
                paired = [operands[i] + operands[i + 1] for i in range(0, len(operands) - 1, 2)]
                if len(operands) % 2:
                    paired.append(operands[-1])
                operands = paired
            m.d.sync += self.sums.payload[lane].eq(operands[0])
        m.d.sync += self.sums.valid.eq(self.units.valid)
        m.d.comb += self.contributions.eq(sum(travels))
        return m
