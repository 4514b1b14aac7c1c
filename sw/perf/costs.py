"""Prices of the performance model: per-action energies, per-component areas, the ADC table.

The figures are ISAAC's (ISCA 2016) and Accelergy's ISAAC library, as collected in the
project's reference notes; docs/performance.md derives each one. :func:`layer_energy_pj`
prices the events of one layer job (:class:`bitline.sw.perf.counting.LayerCounts`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bitline.hw.spec.config import AcceleratorConfig
from bitline.sw.perf.counting import LayerCounts

__all__ = [
    "ADC_ENERGY_PJ",
    "AREA_COMPONENTS",
    "ENERGY_COMPONENTS",
    "CostModel",
    "ISAAC_COSTS",
    "adc_energy_pj",
    "layer_energy_pj",
    "unit_area_mm2",
]

#: Energy per conversion of an ADC by resolution (pJ), Accelergy's ISAAC library ("scaled
#: ADC"); 8 bits is ISAAC's own ADC.
ADC_ENERGY_PJ: dict[int, float] = {
    4: 0.79, 5: 0.99, 6: 1.20, 7: 1.42, 8: 1.667, 9: 1.97, 10: 2.38,
}

#: Energy components reported by :func:`analyze`, in report order.
ENERGY_COMPONENTS = (
    "adc", "sample_hold", "dac", "crossbar", "shift_add",
    "input_register", "output_register", "reduction", "edram",
)

#: Area components of one crossbar unit, in report order.
AREA_COMPONENTS = (
    "crossbar", "dac", "sample_hold", "adc", "shift_add", "input_register", "output_register",
)


def adc_energy_pj(bits: int) -> float:
    """Return the energy of one ADC conversion at ``bits`` of resolution (pJ).

    Inside 4..10 bits this is Accelergy's ISAAC table (:data:`ADC_ENERGY_PJ`). Below 4 bits
    the 4->5 bit step (0.20 pJ per bit) is extrapolated linearly (1 bit: 0.19 pJ); above 10
    bits the 9->10 bit ratio (x1.208 per bit) is extrapolated geometrically, following the
    exponential growth of high-resolution converters.

    Raises
    ------
    ValueError
        If ``bits`` is not a positive integer.
    """
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or bits < 1:
        raise ValueError(f"adc bits must be a positive integer, not {bits!r}")
    bits = int(bits)
    low, high = min(ADC_ENERGY_PJ), max(ADC_ENERGY_PJ)
    if bits in ADC_ENERGY_PJ:
        return ADC_ENERGY_PJ[bits]
    if bits < low:
        slope = ADC_ENERGY_PJ[low + 1] - ADC_ENERGY_PJ[low]
        return ADC_ENERGY_PJ[low] - slope * (low - bits)
    ratio = ADC_ENERGY_PJ[high] / ADC_ENERGY_PJ[high - 1]
    return ADC_ENERGY_PJ[high] * ratio ** (bits - high)


# ISAAC (ISCA 2016) per-IMA figures: 8 crossbars, 8 ADCs, one crossbar read per 100 ns cycle
# (an 8-bit ADC at 1.28 GS/s converts the 128 columns of a crossbar in 100 ns).
_ISAAC_CYCLE_S = 100e-9
_ISAAC_XBARS_PER_IMA = 8
_ISAAC_ROWS = _ISAAC_COLS = 128
_ISAAC_SAMPLES_PER_IMA_CYCLE = _ISAAC_XBARS_PER_IMA * _ISAAC_COLS   # 1024 conversions
_ISAAC_ROW_BITS_PER_IMA_CYCLE = _ISAAC_XBARS_PER_IMA * _ISAAC_ROWS  # 1024 DAC inputs
_PJ = 1e12


@dataclass(frozen=True)
class CostModel:
    """Per-action energies (pJ) and per-component areas (mm2) the model prices events with.

    The defaults (:data:`ISAAC_COSTS`) are ISAAC's 32 nm figures; docs/performance.md
    derives each one. ``adc_pj`` is a function of the resolution (:func:`adc_energy_pj`).

    Attributes
    ----------
    dac_pj:
        One DAC conversion: one driven row for one input slice.
    crossbar_cell_pj:
        One activated cell (driven row x selected column) for one read.
    sample_hold_pj:
        One sample-and-hold sample (one per ADC conversion).
    shift_add_pj:
        One shift-and-add operation (one per ADC code); also one reduction add.
    input_register_bit_pj:
        One bit written to or read from a unit's input register.
    output_register_pj:
        One access (read-modify-write) of a partial-sum register.
    edram_bit_pj:
        One bit moved to or from the eDRAM buffer.
    router_bit_pj:
        One bit of a partial sum sent over the inter-crossbar network.
    area_*:
        Area of each component per ISAAC crossbar (one eighth of an IMA), before the
        per-config scaling of :func:`unit_area_mm2`.
    """

    dac_pj: float = 0.417
    crossbar_cell_pj: float = 2.4e-3 / _ISAAC_XBARS_PER_IMA * _ISAAC_CYCLE_S * _PJ / (
        _ISAAC_ROWS * _ISAAC_COLS)
    sample_hold_pj: float = 10e-6 * _ISAAC_CYCLE_S * _PJ / _ISAAC_SAMPLES_PER_IMA_CYCLE
    shift_add_pj: float = 0.021
    input_register_bit_pj: float = 1.24e-3 * _ISAAC_CYCLE_S * _PJ / _ISAAC_ROW_BITS_PER_IMA_CYCLE
    output_register_pj: float = 0.23e-3 * _ISAAC_CYCLE_S * _PJ / _ISAAC_SAMPLES_PER_IMA_CYCLE
    edram_bit_pj: float = 20.45 / 256
    router_bit_pj: float = 20.74 / 256
    area_crossbar_mm2: float = 0.0002 / 8
    area_dac_mm2: float = 0.00017 / 8
    area_sample_hold_mm2: float = 0.00004 / 8
    area_adc_mm2: float = 0.0096 / 8
    area_shift_add_mm2: float = 0.00024 / 8
    area_input_register_mm2: float = 0.0021 / 8
    area_output_register_mm2: float = 0.00077 / 8

    def adc_pj(self, bits: int) -> float:
        """Return the energy of one conversion at ``bits`` (pJ)."""
        return adc_energy_pj(bits)


#: The default cost model (ISAAC, 32 nm).
ISAAC_COSTS = CostModel()


def unit_area_mm2(config: AcceleratorConfig, costs: CostModel = ISAAC_COSTS) -> dict[str, float]:
    """Return the area of one crossbar unit of ``config`` by component (mm2).

    Each ISAAC per-crossbar share (IMA figure / 8) is scaled to the config: the array by
    ``rows * cols / 128**2``; DACs by ``rows / 128`` (one per row) and sample-and-holds by
    ``cols / 128`` (one per column); ADCs by ``adcs_per_xbar`` and by resolution with the
    energy ratio ``adc_energy_pj(adc_bits) / adc_energy_pj(8)``; shift-and-add units and the
    output (partial-sum) register by ``adcs_per_xbar`` (ISAAC: one ADC per crossbar); the
    input register by ``rows * max_act_bits / (128 * 16)`` (ISAAC buffers 16-bit inputs for
    128 rows per crossbar). Cell bits do not change the array area.
    """
    adc_scale = adc_energy_pj(config.adc_bits) / adc_energy_pj(8)
    return {
        "crossbar": costs.area_crossbar_mm2 * config.rows * config.cols
        / (_ISAAC_ROWS * _ISAAC_COLS),
        "dac": costs.area_dac_mm2 * config.rows / _ISAAC_ROWS,
        "sample_hold": costs.area_sample_hold_mm2 * config.cols / _ISAAC_COLS,
        "adc": costs.area_adc_mm2 * config.adcs_per_xbar * adc_scale,
        "shift_add": costs.area_shift_add_mm2 * config.adcs_per_xbar,
        "input_register": costs.area_input_register_mm2 * config.rows * config.max_act_bits
        / (_ISAAC_ROWS * 16),
        "output_register": costs.area_output_register_mm2 * config.adcs_per_xbar,
    }

def layer_energy_pj(counts: LayerCounts, config: AcceleratorConfig, out_bits: int,
                    costs: CostModel = ISAAC_COSTS) -> dict[str, float]:
    """Return the energy of one layer job by component (pJ, keys :data:`ENERGY_COMPONENTS`).

    Every count of ``counts`` is per input vector; each is priced once per action and
    multiplied by the job's ``V`` vectors. ``out_bits`` is the width of one output written
    back to eDRAM.
    """
    V, K, O = counts.n_vectors, counts.n_inputs, counts.n_outputs
    act_bits = counts.act_bits
    conversions, dac = counts.conversions, counts.dac_conversions
    energy = {
        "adc": V * conversions * costs.adc_pj(config.adc_bits),
        "sample_hold": V * conversions * costs.sample_hold_pj,
        "dac": V * dac * costs.dac_pj,
        "crossbar": V * counts.activated_cells * costs.crossbar_cell_pj,
        "shift_add": V * conversions * costs.shift_add_pj,
        "input_register": V * (K * act_bits + dac * config.dac_bits)
        * costs.input_register_bit_pj,
        "output_register": V * (conversions + O) * costs.output_register_pj,
        "reduction": V * counts.reduction_transfers
        * (config.acc_bits * costs.router_bit_pj + costs.shift_add_pj),
        "edram": V * (K * act_bits + O * out_bits) * costs.edram_bit_pj,
    }
    return {key: float(value) for key, value in energy.items()}
