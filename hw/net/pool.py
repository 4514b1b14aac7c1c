"""Pool unit: max, average and global average pooling of an im2col element stream.

The unit reduces each ``window_last`` run of the :class:`~bitline.hw.net.im2col.Im2colReader`
stream to one code (docs/contract.md section 3, :mod:`bitline.sw.integer.tensor_ops`):

* max pool: ``max`` of the window's codes; the reader's padding code is 0 (the record's
  ``pad_value``), the contract's "padding uses code 0";
* average pool: ``floor((2 * sum + count) / (2 * count))`` (round half up), ``count`` the
  window's non-padding elements, or all of them with ``count_include_pad`` (then the
  record's ``pad_value`` is the zero point, so the padding adds ``z`` to the sum);
* global average pool: an average pool over a
  :meth:`~bitline.hw.net.geometry.WindowParams.flatten` record (one ``H x W`` window per
  channel, no padding).

Max pool takes the same division path as ``floor((2 * max + 1) / 2) = max``, so both
modes have one latency. The division is a restoring divider unrolled into ``act_bits``
register stages (one quotient bit each, most significant first): the quotient of a
window's mean is a code, ``< 2**act_bits``, so ``act_bits`` bits are exact. Outputs come
in window order, i.e. the producer order (pixel-major, channels innermost) of
:class:`~bitline.hw.net.buffer.ActivationBuffer`'s write stream.

A window with no counted element (average pool, padding only, excluded) has no mean; the
divider then returns ``2**act_bits - 1``. ONNX's ``pads < kernel`` rules such windows out.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from bitline.hw.net.geometry import NetGeometry, element_layout

__all__ = ["POOL_AVERAGE", "POOL_MAX", "PoolUnit"]

#: ``mode`` values.
POOL_MAX = 0
POOL_AVERAGE = 1


class PoolUnit(wiring.Component):
    """Reduce each window of an element stream to its max or its rounded mean.

    Attributes
    ----------
    inputs: In(stream.Signature(element_layout))
        Elements from an :class:`~bitline.hw.net.im2col.Im2colReader`.
    mode: In(1)
        :data:`POOL_MAX` or :data:`POOL_AVERAGE` (stable during a layer).
    count_include_pad: In(1)
        Average pool: count padding positions too.
    outputs: Out(stream.Signature(act_bits))
        One code per window, ``latency`` cycles after the window's last element when
        not held.
    """

    def __init__(self, geometry: NetGeometry):
        self.geometry = geometry
        super().__init__({
            "inputs": In(stream.Signature(element_layout(geometry))),
            "mode": In(1),
            "count_include_pad": In(1),
            "outputs": Out(stream.Signature(unsigned(geometry.act_bits))),
        })

    @property
    def latency(self) -> int:
        """Cycles from a window's last element to its output (the divider's stages)."""
        return self.geometry.act_bits + 1

    def elaborate(self, platform):
        geometry = self.geometry
        m = Module()
        act_bits = geometry.act_bits
        count_bits = geometry.window_bits
        sum_bits = act_bits + count_bits
        dividend_bits = sum_bits + 2

        # Every register advances together when the output is free or being taken: a
        # held output holds the whole unit (and the reader behind it).
        advance = ~self.outputs.valid | self.outputs.ready
        take = self.inputs.valid & advance
        element = self.inputs.payload
        m.d.comb += self.inputs.ready.eq(advance)

        # Accumulate one window. ``fresh``: the next element starts a window.
        fresh = Signal(init=1)
        total = Signal(sum_bits)
        largest = Signal(act_bits)
        count = Signal(count_bits)
        counted = ~element.pad | self.count_include_pad
        new_total = Mux(fresh, 0, total) + element.code
        new_largest = Mux(fresh | (element.code > largest), element.code, largest)
        new_count = Mux(fresh, 0, count) + counted
        with m.If(take):
            m.d.sync += [total.eq(new_total), largest.eq(new_largest), count.eq(new_count),
                         fresh.eq(element.window_last)]

        # Stage 0: the window's dividend 2*s + n and divisor 2*n (max: 2*max + 1 and 2).
        valid = Signal()
        remainder = Signal(dividend_bits)
        divisor = Signal(count_bits + 1)
        quotient = Signal(act_bits)
        average = self.mode == POOL_AVERAGE
        with m.If(advance):
            m.d.sync += [
                valid.eq(take & element.window_last),
                remainder.eq(Mux(average, (new_total << 1) + new_count,
                                 (new_largest << 1) + 1)),
                divisor.eq(Mux(average, new_count << 1, 2)),
                quotient.eq(0),
            ]

        # Stages 1..act_bits: restoring division, quotient bit b = act_bits - stage.
        for stage in range(1, act_bits + 1):
            bit = act_bits - stage
            trial = divisor << bit
            fits = remainder >= trial
            next_valid = Signal(name=f"valid_{stage}")
            next_remainder = Signal(dividend_bits, name=f"remainder_{stage}")
            next_divisor = Signal(count_bits + 1, name=f"divisor_{stage}")
            next_quotient = Signal(act_bits, name=f"quotient_{stage}")
            with m.If(advance):
                m.d.sync += [
                    next_valid.eq(valid),
                    next_remainder.eq(Mux(fits, remainder - trial, remainder)),
                    next_divisor.eq(divisor),
                    next_quotient.eq(quotient | (fits << bit)),
                ]
            valid, remainder, divisor, quotient = (next_valid, next_remainder, next_divisor,
                                                   next_quotient)
        m.d.comb += [self.outputs.valid.eq(valid), self.outputs.payload.eq(quotient)]
        return m
