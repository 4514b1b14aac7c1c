"""Residual add: two code streams requantized to the output's parameters.

Per element pair (docs/contract.md section 3, :func:`bitline.sw.integer.tensor_ops.add`)::

    y = clamp(z_y + ((ma * (qa - za) + mb * (qb - zb) + rnd) >> sh), clamp_lo, clamp_hi)

with one common shift ``sh`` and round half up (``rnd = 1 << (sh - 1)``, 0 at ``sh = 0``;
``>>`` floor). Five register stages, one operation each like the output unit's: the two
differences, the two products, the sum with the rounding offset
(:func:`~bitline.hw.net.rounding.rounding_offset`), the shift, the clamp. Every
intermediate is wide enough to be exact for any ``|m| < 2**15`` and ``sh <= 63``.

The two inputs are joined: a pair is taken when both are valid, so the two operands of an
element must come in the same order (two :class:`~bitline.hw.net.im2col.Im2colReader`
flatten streams, or a reader and a producer stream in producer order).
"""

from __future__ import annotations

from amaranth import Module, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from bitline.hw.net.geometry import NetGeometry
from bitline.hw.net.rounding import clamp, rounding_offset
from bitline.hw.spec.encoding import MULT_BITS, SHIFT_BITS

__all__ = ["RESIDUAL_STAGES", "ResidualAdd"]

#: The register stages of the residual add (its latency in cycles is their number).
RESIDUAL_STAGES = ("add_difference", "add_multiply", "add_round", "add_shift", "add_clamp")


class ResidualAdd(wiring.Component):
    """Add two code streams with per-input multipliers, a common shift and a clamp.

    Attributes
    ----------
    a, b: In(stream.Signature(act_bits))
        The operands' codes, in the same element order.
    zero_a, zero_b: In(act_bits)
        The operands' zero points.
    mult_a, mult_b: In(signed(MULT_BITS))
        The multipliers (``|m| < 2**15``, contract section 2).
    shift: In(SHIFT_BITS)
        The common shift.
    zero_point, clamp_lo, clamp_hi: In(act_bits)
        The output's zero point and clamp (``clamp_lo = zero_point`` with a fused ReLU).
    outputs: Out(stream.Signature(act_bits))
        :data:`RESIDUAL_STAGES` cycles after the pair when not held.
    """

    def __init__(self, geometry: NetGeometry):
        self.geometry = geometry
        code = unsigned(geometry.act_bits)
        super().__init__({
            "a": In(stream.Signature(code)),
            "b": In(stream.Signature(code)),
            "zero_a": In(code), "zero_b": In(code),
            "mult_a": In(signed(MULT_BITS)), "mult_b": In(signed(MULT_BITS)),
            "shift": In(SHIFT_BITS),
            "zero_point": In(code), "clamp_lo": In(code), "clamp_hi": In(code),
            "outputs": Out(stream.Signature(code)),
        })

    def elaborate(self, platform):
        act_bits = self.geometry.act_bits
        m = Module()
        difference_bits = act_bits + 1
        product_bits = difference_bits + MULT_BITS
        offset_bits = act_bits + (1 << SHIFT_BITS) - 1
        sum_bits = max(product_bits + 1, offset_bits) + 2

        # All stages advance together when the output is free or being taken.
        advance = ~self.outputs.valid | self.outputs.ready
        take = self.a.valid & self.b.valid & advance
        m.d.comb += [self.a.ready.eq(advance & self.b.valid),
                     self.b.ready.eq(advance & self.a.valid)]

        valid = [Signal(name=f"valid_{stage}") for stage in RESIDUAL_STAGES[:-1]]
        diff_a, diff_b = Signal(signed(difference_bits)), Signal(signed(difference_bits))
        offset1, offset2 = Signal(offset_bits), Signal(offset_bits)
        product_a, product_b = Signal(signed(product_bits)), Signal(signed(product_bits))
        total = Signal(signed(sum_bits))
        level = Signal(signed(sum_bits))
        shift = [Signal(SHIFT_BITS, name=f"shift_{stage}") for stage in RESIDUAL_STAGES[:3]]
        with m.If(advance):
            m.d.sync += [
                # add_difference
                valid[0].eq(take),
                diff_a.eq(self.a.payload - self.zero_a),
                diff_b.eq(self.b.payload - self.zero_b),
                offset1.eq(rounding_offset(self.zero_point, self.shift)),
                shift[0].eq(self.shift),
                # add_multiply
                valid[1].eq(valid[0]),
                product_a.eq(diff_a * self.mult_a),
                product_b.eq(diff_b * self.mult_b),
                offset2.eq(offset1),
                shift[1].eq(shift[0]),
                # add_round
                valid[2].eq(valid[1]),
                total.eq(product_a + product_b + offset2),
                shift[2].eq(shift[1]),
                # add_shift
                valid[3].eq(valid[2]),
                level.eq(total >> shift[2]),
                # add_clamp
                self.outputs.valid.eq(valid[3]),
                self.outputs.payload.eq(clamp(level, self.clamp_lo, self.clamp_hi)),
            ]
        return m
