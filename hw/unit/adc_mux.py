"""ADC-sharing mux: turns one OU-read command into conversion cycles on the crossbar port.

The OU's ``ou_cols`` columns share the unit's ``adcs_per_xbar`` ADCs: in conversion phase
``p`` (``0 .. conversions_per_read - 1``) ADC ``a`` converts OU column
``j = p * adcs_per_xbar + a``. The mux holds a command for ``conversions_per_read`` cycles,
one strobe per cycle, and accepts it (``reads.ready``) in its last phase, so back-to-back
commands convert without a gap. It asks the row drivers for the command's row group and
input slice; their wordline enables and DAC slices come back registered
:data:`~bitline.hw.spec.timing.ROW_SELECT_CYCLES` cycles later, so the port's other members
(strobe, groups, phase, ADC enables) pass through a delay line of the same depth and reach
the port together with them, all from flip-flops. ``in_flight`` is high while a conversion
is in that delay line (the unit stays ``busy``).

Per phase it gates the ADCs of invalid columns (descriptor ``valid`` clear, or a column past
the crossbar's edge), and remembers each ADC's descriptor (destination, sign, total shift
``shift + slice_index * dac_bits``) in a tag pipeline ``ROW_SELECT_CYCLES + adc_latency``
deep, so the codes that
come back on ``result`` leave as one shift-and-add update per ADC lane (``updates``).
``protocol_error`` pulses when ``result.valid`` disagrees with the tag pipeline (a crossbar
model that violates the port's fixed latency).
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from bitline.hw.spec.config import AcceleratorConfig, clog2
from bitline.hw.spec.timing import ROW_SELECT_CYCLES
from bitline.hw.unit.ou_controller import read_command_layout
from bitline.hw.unit.row_driver import RowSelectSignature, slice_bits
from bitline.hw.unit.xbar_port import ReadSignature, ResultSignature, phase_bits

__all__ = ["ADCMux", "update_layout", "total_shift_bits"]


def total_shift_bits(config: AcceleratorConfig) -> int:
    """Return the width of ``shift + slice_index * dac_bits`` (largest value included)."""
    largest = ((1 << clog2(config.max_weight_bits)) - 1
               + ((1 << slice_bits(config)) - 1) * config.dac_bits)
    return max(1, largest.bit_length())


def update_layout(config: AcceleratorConfig) -> data.StructLayout:
    """Return one ADC lane's shift-and-add update: ``acc[dest] += (-1)**sign * code << shift``."""
    return data.StructLayout({
        "valid": 1,
        "sign": 1,
        "shift": total_shift_bits(config),
        "dest": clog2(config.max_out_channels),
        "code": config.adc_bits,
    })


def _tag_layout(config: AcceleratorConfig) -> data.StructLayout:
    """Return what an ADC lane remembers while its code converts (update minus the code)."""
    return data.StructLayout({
        name: field.shape for name, field in update_layout(config) if name != "code"
    })


class ADCMux(wiring.Component):
    """Conversion sequencing, ADC gating and code routing of one crossbar unit.

    Attributes
    ----------
    reads: In(stream.Signature(read_command_layout))
        OU-read commands from the OU controller.
    rows: Out(RowSelectSignature)
        To the unit's row drivers.
    read: Out(ReadSignature), result: Out(ResultSignature)
        The crossbar port's read side.
    updates: Out(stream.Signature(ArrayLayout(update_layout, adcs_per_xbar), always_ready=True))
        One update per ADC lane, ``adc_latency`` cycles after the strobe; the stream's
        ``valid`` is the port's ``result.valid``, each lane's ``valid`` its own gate.
    conversions: Out(range(adcs_per_xbar + 1))
        ADCs converting in this cycle (the performance counter's increment).
    read_issued: Out(1)
        A new OU read starts in this cycle (its first phase).
    in_flight: Out(1)
        A conversion is on its way to the port (in the ``ROW_SELECT_CYCLES`` delay line).
    protocol_error: Out(1)
    """

    def __init__(self, config: AcceleratorConfig):
        self.config = config
        adcs = config.adcs_per_xbar
        super().__init__({
            "reads": In(stream.Signature(read_command_layout(config))),
            "rows": Out(RowSelectSignature(config)),
            "read": Out(ReadSignature(config)),
            "result": Out(ResultSignature(config)),
            "updates": Out(stream.Signature(data.ArrayLayout(update_layout(config), adcs),
                                            always_ready=True)),
            "conversions": Out(range(adcs + 1)),
            "read_issued": Out(1),
            "in_flight": Out(1),
            "protocol_error": Out(1),
        })

    def elaborate(self, platform):
        config = self.config
        m = Module()
        adcs = config.adcs_per_xbar
        phases = config.conversions_per_read
        command = self.reads.payload

        phase = Signal(phase_bits(config))
        last_phase = phase == phases - 1
        with m.If(self.reads.valid):
            m.d.sync += phase.eq(Mux(last_phase, 0, phase + 1))
        m.d.comb += [
            self.reads.ready.eq(last_phase),
            self.rows.row_group.eq(command.row_group),
            self.rows.slice_index.eq(command.slice_index),
        ]

        # Descriptor of the OU column that ADC `a` converts in this phase.
        tag = Signal(data.ArrayLayout(_tag_layout(config), adcs))
        adc_en = Signal(adcs)
        shift_base = Signal(total_shift_bits(config))
        m.d.comb += shift_base.eq(command.slice_index * config.dac_bits)
        for adc in range(adcs):
            columns = [p * adcs + adc for p in range(phases)]
            valid_bits, descriptors = [], []
            for column in columns:
                if column < config.ou_cols:
                    descriptor = command.cols[column]
                    # A column past the crossbar's edge is gated like an invalid one.
                    in_range = (command.col_group * config.ou_cols + column) < config.cols
                    valid_bits.append(descriptor.valid & in_range)
                    descriptors.append(descriptor)
                else:
                    valid_bits.append(Const(0))
                    descriptors.append(None)
            lane = tag[adc]
            with m.Switch(phase):
                for p, (valid, descriptor) in enumerate(zip(valid_bits, descriptors)):
                    with m.Case(p):
                        m.d.comb += adc_en[adc].eq(valid & self.reads.valid)
                        if descriptor is not None:
                            m.d.comb += [
                                lane.sign.eq(descriptor.sign),
                                lane.dest.eq(descriptor.dest),
                                lane.shift.eq(descriptor.shift + shift_base),
                            ]
            m.d.comb += lane.valid.eq(adc_en[adc])

        m.d.comb += [
            self.read_issued.eq(self.reads.valid & (phase == 0)),
            self.conversions.eq(sum(adc_en[adc] for adc in range(adcs))),
        ]

        # The port's members wait ROW_SELECT_CYCLES for the row drivers' registered drives;
        # then the descriptors wait adc_latency more cycles for their codes.
        request = {"strobe": self.reads.valid, "row_group": command.row_group,
                   "col_group": command.col_group, "phase": phase, "adc_en": adc_en}
        strobes = []
        for stage in range(ROW_SELECT_CYCLES):
            delayed = {name: Signal.like(getattr(self.read, name), name=f"{name}_d{stage}")
                       for name in request}
            m.d.sync += [delayed[name].eq(value) for name, value in request.items()]
            request = delayed
            strobes.append(delayed["strobe"])
        m.d.comb += [getattr(self.read, name).eq(value) for name, value in request.items()]
        m.d.comb += [
            self.read.wordline_en.eq(self.rows.wordline_en),
            self.read.dac.eq(self.rows.dac),
            self.in_flight.eq(Cat(*strobes).any()),
        ]

        tag_valid = self.reads.valid
        for stage in range(ROW_SELECT_CYCLES + config.adc_latency):
            delayed = Signal.like(tag, name=f"tag_d{stage}")
            delayed_valid = Signal(name=f"tag_valid_d{stage}")
            m.d.sync += [delayed.eq(tag), delayed_valid.eq(tag_valid)]
            tag, tag_valid = delayed, delayed_valid

        m.d.comb += [
            self.updates.valid.eq(self.result.valid),
            self.protocol_error.eq(self.result.valid != tag_valid),
        ]
        for adc in range(adcs):
            out = self.updates.payload[adc]
            m.d.comb += [
                out.valid.eq(tag[adc].valid & self.result.valid),
                out.sign.eq(tag[adc].sign),
                out.shift.eq(tag[adc].shift),
                out.dest.eq(tag[adc].dest),
                out.code.eq(self.result.codes[adc]),
            ]
        return m
