"""Output unit: bias, fixed-point multiplier, rounding, zero point, ReLU and clamp.

Per output channel ``n`` with ``t = acc[n] + bias[n] - correction`` (docs/contract.md
section 2; ``correction`` is the offset weight encoding's ``weight_offset * sum(x)`` of the
vector, 0 with the differential encoding, section 4):

* ``mode = requant`` (0): ``y = clamp(zero_point + ((t * mult[n] + rnd) >> shift[n]),
  clamp_lo, clamp_hi)``, ``>>`` arithmetic (floor), ``rnd = 1 << (shift - 1)`` (0 when
  ``shift == 0``): round half up. ReLU is ``clamp_lo = zero_point``.
* ``mode = raw`` (1): ``y = t``.

Three register stages (``ou_multiply``, ``ou_round_shift``, ``ou_clamp`` in
:data:`bitline.hw.spec.timing.DRAIN_STAGES`); every intermediate is wide enough to be exact.
"""

from __future__ import annotations

from amaranth import Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from bitline.hw.spec.config import AcceleratorConfig
from bitline.hw.spec.encoding import MULT_BITS, SHIFT_BITS, output_param_layout
from bitline.hw.spec.program import OutputMode

__all__ = ["OutputUnit", "output_input_layout"]


def output_input_layout(config: AcceleratorConfig) -> data.StructLayout:
    """Return the output unit's input: a channel's accumulator and its parameters."""
    return data.StructLayout({
        "acc": signed(config.acc_bits),
        "param": output_param_layout(config),
    })


class OutputUnit(wiring.Component):
    """Requantize (or pass raw) one accumulator per cycle.

    Attributes
    ----------
    inputs: In(stream.Signature(output_input_layout, always_ready=True))
    correction: In(acc_bits)
        ``weight_offset * sum(x)`` of the accumulator's vector (unsigned), with the input.
    mode, zero_point, clamp_lo, clamp_hi: In
        The layer record's output fields (stable during a job).
    outputs: Out(stream.Signature(signed(acc_bits), always_ready=True))
        Three cycles after the input.
    """

    def __init__(self, config: AcceleratorConfig):
        self.config = config
        super().__init__({
            "inputs": In(stream.Signature(output_input_layout(config), always_ready=True)),
            "correction": In(config.acc_bits),
            "mode": In(1),
            "zero_point": In(config.max_act_bits),
            "clamp_lo": In(config.max_act_bits),
            "clamp_hi": In(config.max_act_bits),
            "outputs": Out(stream.Signature(signed(config.acc_bits), always_ready=True)),
        })

    def elaborate(self, platform):
        config = self.config
        m = Module()
        param = self.inputs.payload.param
        total_bits = config.acc_bits + 1
        product_bits = total_bits + MULT_BITS + 1
        max_shift = (1 << SHIFT_BITS) - 1
        rounded_bits = max(product_bits, max_shift) + 1

        # stage 1: t = acc + bias - correction (the validator keeps t within acc_bits, so
        # the truncation to total_bits is exact), product = t * mult; in parallel the
        # rounding and zero-point
        # offset ``offset = (zero_point << shift) | rnd`` (rnd = 1 << (shift - 1) lies below
        # bit ``shift``, so the OR is the sum), so that stage 2 has one adder, not two:
        # floor((p + rnd) / 2**shift) + zp == floor((p + rnd + zp * 2**shift) / 2**shift)
        total = Signal(signed(total_bits))
        m.d.comb += total.eq(self.inputs.payload.acc + param.bias.as_signed() - self.correction)
        valid1 = Signal()
        total1 = Signal(signed(total_bits))
        product1 = Signal(signed(product_bits))
        shift1 = Signal(SHIFT_BITS)
        offset_bits = config.max_act_bits + max_shift
        offset1 = Signal(offset_bits)
        m.d.sync += [
            valid1.eq(self.inputs.valid),
            total1.eq(total),
            product1.eq(total * param.mult),
            shift1.eq(param.shift),
            offset1.eq((self.zero_point << param.shift)
                       | ((Const(1, 1) << param.shift) >> 1)),  # rnd: 0 at shift 0
        ]

        # stage 2: round half up, arithmetic shift, zero point (all in ``offset1``)
        shifted = Signal(signed(max(product_bits, offset_bits + 1) + 1))
        m.d.comb += shifted.eq((product1 + offset1) >> shift1)
        valid2 = Signal()
        total2 = Signal(signed(total_bits))
        level2 = Signal(signed(rounded_bits + 2))
        m.d.sync += [
            valid2.eq(valid1),
            total2.eq(total1),
            level2.eq(shifted),  # fits: the same value as before, rounded_bits + 2 wide
        ]

        # stage 3: clamp (ReLU when clamp_lo == zero_point) or raw
        clamped = Mux(level2 < self.clamp_lo, self.clamp_lo,
                      Mux(level2 > self.clamp_hi, self.clamp_hi, level2))
        m.d.sync += [
            self.outputs.valid.eq(valid2),
            self.outputs.payload.eq(Mux(self.mode == OutputMode.RAW, total2, clamped)),
        ]
        return m
