"""Output unit: bias, fixed-point multiplier, rounding, zero point, ReLU and clamp.

Per output channel ``n`` with ``t = acc[n] + bias[n] - correction`` (docs/contract.md
section 2; ``correction`` is the offset weight encoding's ``weight_offset * sum(x)`` of the
vector, 0 with the differential encoding, section 4):

* ``mode = requant`` (0): ``y = clamp(zero_point + ((t * mult[n] + rnd) >> shift[n]),
  clamp_lo, clamp_hi)``, ``>>`` arithmetic (floor), ``rnd = 1 << (shift - 1)`` (0 when
  ``shift == 0``): round half up. ReLU is ``clamp_lo = zero_point``.
* ``mode = raw`` (1): ``y = t``.

Five register stages, one operation each so that none is a long path at the FPGA's core
clock (docs/fpga.md section 4): ``ou_total`` (``t``), ``ou_multiply`` (``t * mult``),
``ou_round`` (plus rounding and zero point), ``ou_shift`` and ``ou_clamp`` in
:data:`bitline.hw.spec.timing.DRAIN_STAGES`; every intermediate is wide enough to be exact.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from bitline.hw.net.rounding import clamp, rounding_offset
from bitline.hw.spec.config import AcceleratorConfig
from bitline.hw.spec.encoding import MULT_BITS, SHIFT_BITS, output_param_layout
from bitline.hw.spec.program import OutputMode
from bitline.hw.spec.timing import DRAIN_STAGES

__all__ = ["OutputUnit", "output_input_layout", "OUTPUT_UNIT_STAGES"]

#: The output unit's register stages, as :data:`~bitline.hw.spec.timing.DRAIN_STAGES` names
#: them (its latency in cycles is their number).
OUTPUT_UNIT_STAGES = ("ou_total", "ou_multiply", "ou_round", "ou_shift", "ou_clamp")


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
        :data:`OUTPUT_UNIT_STAGES` cycles after the input.
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
        offset_bits = config.max_act_bits + max_shift

        # ou_total: t = acc + bias - correction (the validator keeps t within acc_bits, so
        # the truncation to total_bits is exact); in parallel the rounding and zero-point
        # offset ``rounding_offset = (zero_point << shift) | rnd`` (rnd = 1 << (shift - 1) lies
        # below bit ``shift``, so the OR is the sum), so that one adder does both:
        # floor((p + rnd) / 2**shift) + zp == floor((p + rnd + zp * 2**shift) / 2**shift)
        valid1 = Signal()
        total1 = Signal(signed(total_bits))
        mult1 = Signal(MULT_BITS)
        shift1 = Signal(SHIFT_BITS)
        offset1 = Signal(offset_bits)
        m.d.sync += [
            valid1.eq(self.inputs.valid),
            total1.eq(self.inputs.payload.acc + param.bias.as_signed() - self.correction),
            mult1.eq(param.mult),
            shift1.eq(param.shift),
            offset1.eq(rounding_offset(self.zero_point, param.shift)),  # rnd: 0 at shift 0
        ]

        # ou_multiply: product = t * mult
        valid2 = Signal()
        total2 = Signal(signed(total_bits))
        product2 = Signal(signed(product_bits))
        shift2 = Signal(SHIFT_BITS)
        offset2 = Signal(offset_bits)
        m.d.sync += [
            valid2.eq(valid1), total2.eq(total1), product2.eq(total1 * mult1),
            shift2.eq(shift1), offset2.eq(offset1),
        ]

        # ou_round: product + offset (rounding and zero point)
        sum_bits = max(product_bits, offset_bits + 1) + 1
        valid3 = Signal()
        total3 = Signal(signed(total_bits))
        sum3 = Signal(signed(sum_bits))
        shift3 = Signal(SHIFT_BITS)
        m.d.sync += [
            valid3.eq(valid2), total3.eq(total2), sum3.eq(product2 + offset2),
            shift3.eq(shift2),
        ]

        # ou_shift: arithmetic shift (floor)
        valid4 = Signal()
        total4 = Signal(signed(total_bits))
        level4 = Signal(signed(rounded_bits + 2))
        m.d.sync += [
            valid4.eq(valid3), total4.eq(total3),
            level4.eq(sum3 >> shift3),  # fits: rounded_bits + 2 wide, as before the split
        ]

        # ou_clamp: clamp (ReLU when clamp_lo == zero_point) or raw
        clamped = clamp(level4, self.clamp_lo, self.clamp_hi)
        m.d.sync += [
            self.outputs.valid.eq(valid4),
            self.outputs.payload.eq(Mux(self.mode == OutputMode.RAW, total4, clamped)),
        ]
        return m


assert all(stage in DRAIN_STAGES for stage in OUTPUT_UNIT_STAGES), \
    "hw/spec/timing.py DRAIN_STAGES names every output-unit stage"
