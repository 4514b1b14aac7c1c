"""The crossbar port: the one analog/digital boundary of a crossbar unit.

Everything on the far side of this port is "the crossbar": the ReRAM array with its DACs,
sample-and-hold and the unit's ``adcs_per_xbar`` ADCs. The behavioral analog model (cocotb),
the digital emulator (:class:`~bitline.hw.unit.emulator.CrossbarEmulator`) and an FPGA top all
plug into :class:`CrossbarSignature`, seen here from the periphery (controller) side:
``Out`` members go to the crossbar, ``In`` members come back.

One conversion cycle (``read.strobe`` high for one clock):

* ``read.row_group`` ``g`` selects rows ``[g*ou_rows, (g+1)*ou_rows)``;
  ``read.wordline_en[k]`` drives row ``g*ou_rows + k`` (0: the row is undriven);
  ``read.dac[k]`` is its ``dac_bits`` input slice (0 when the row is undriven).
* ``read.col_group`` ``h`` selects columns ``[h*ou_cols, (h+1)*ou_cols)``; ``read.phase``
  ``p`` (``0 .. conversions_per_read - 1``) connects OU column ``j = p*adcs_per_xbar + a`` to
  ADC ``a`` (the ADC-sharing mux position); ``read.adc_en[a]`` gates ADC ``a`` (a gated ADC
  returns code 0 and is not counted as a conversion).
* Exactly ``config.adc_latency`` cycles later the crossbar drives ``result.valid`` for one
  clock with ``result.codes[a] = min(adc_max, sum_k dac[k] * level[row_k, col_a])``.

Programming: ``write.en`` writes one full crossbar row ``write.row`` with ``write.levels``
(column ``c``'s level at bits ``[c*cell_bits, (c+1)*cell_bits)``, the image's cell-row word).
Reads and writes are never issued in the same cycle, and a crossbar may take the row a
cycle after ``write.en`` (the emulator registers it): programming ends long before reads.
"""

from __future__ import annotations

from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from bitline.hw.spec.config import AcceleratorConfig, clog2

__all__ = [
    "ReadSignature", "ResultSignature", "WriteSignature", "CrossbarSignature",
    "phase_bits",
]


def phase_bits(config: AcceleratorConfig) -> int:
    """Return the width of the ADC-mux phase (``clog2(conversions_per_read)``)."""
    return clog2(config.conversions_per_read)


class _ConfigSignature(wiring.Signature):
    """A signature built from a config; two are equal when their type and config are."""

    def __eq__(self, other):
        return type(self) is type(other) and self.config == other.config

    __hash__ = None


class ReadSignature(_ConfigSignature):
    """One conversion cycle's request to the crossbar (periphery side, all ``Out``)."""

    def __init__(self, config: AcceleratorConfig):
        self.config = config
        super().__init__({
            "strobe": Out(1),
            "row_group": Out(clog2(config.row_groups)),
            "wordline_en": Out(config.ou_rows),
            "dac": Out(data.ArrayLayout(config.dac_bits, config.ou_rows)),
            "col_group": Out(clog2(config.col_groups)),
            "phase": Out(phase_bits(config)),
            "adc_en": Out(config.adcs_per_xbar),
        })


class ResultSignature(_ConfigSignature):
    """The ADC codes of one conversion cycle (periphery side, all ``In``)."""

    def __init__(self, config: AcceleratorConfig):
        self.config = config
        super().__init__({
            "valid": In(1),
            "codes": In(data.ArrayLayout(config.adc_bits, config.adcs_per_xbar)),
        })


class WriteSignature(_ConfigSignature):
    """The cell-programming port: one full row per cycle (periphery side, all ``Out``)."""

    def __init__(self, config: AcceleratorConfig):
        self.config = config
        super().__init__({
            "en": Out(1),
            "row": Out(clog2(config.rows)),
            "levels": Out(data.ArrayLayout(config.cell_bits, config.cols)),
        })


class CrossbarSignature(_ConfigSignature):
    """The whole crossbar boundary: ``read`` and ``write`` out, ``result`` in."""

    def __init__(self, config: AcceleratorConfig):
        self.config = config
        super().__init__({
            "read": Out(ReadSignature(config)),
            "result": Out(ResultSignature(config)),
            "write": Out(WriteSignature(config)),
        })
