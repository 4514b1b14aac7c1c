"""Prices of the performance model: per-action energies, per-component areas, the ADC table.

The figures are ISAAC's (ISCA 2016) and Accelergy's ISAAC library, as collected in the
project's reference notes; docs/performance.md derives each one. :func:`layer_energy_pj`
prices the events of one layer job (:class:`bitline.sw.perf.counting.LayerCounts`).

Two ADC energy models (:data:`ADC_MODELS`): ``table`` (the Accelergy-derived table,
:func:`adc_energy_pj`) and ``pow2`` (``2**bits`` scaling from a reference point,
:func:`adc_energy_pow2_pj`). :func:`load_costs` reads a TOML file that overrides any price
(``[energy]``, ``[area]``, ``[adc]``); :func:`cost_model` joins a file and the ADC switch
the way the CLI's ``--costs`` / ``--adc-model`` do.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import math
from pathlib import Path

import numpy as np

from bitline.hw.spec.config import AcceleratorConfig
from bitline.hw.spec.toml_file import read_toml
from bitline.sw.perf.counting import LayerCounts

__all__ = [
    "ADC_ENERGY_PJ",
    "ADC_MODELS",
    "AREA_COMPONENTS",
    "ENERGY_COMPONENTS",
    "CostModel",
    "ISAAC_COSTS",
    "adc_energy_pj",
    "adc_energy_pow2_pj",
    "cost_keys",
    "cost_model",
    "layer_energy_pj",
    "load_costs",
    "unit_area_mm2",
]

#: Energy per conversion of an ADC by resolution (pJ), Accelergy's ISAAC library ("scaled
#: ADC"); 8 bits is ISAAC's own ADC.
ADC_ENERGY_PJ: dict[int, float] = {
    4: 0.79, 5: 0.99, 6: 1.20, 7: 1.42, 8: 1.667, 9: 1.97, 10: 2.38,
}

#: ADC energy models: ``table`` (Accelergy's table, extrapolated outside it) or ``pow2``
#: (energy doubles per bit from a reference resolution and energy).
ADC_MODELS = ("table", "pow2")

#: Energy components reported by :func:`analyze`, in report order.
ENERGY_COMPONENTS = (
    "adc", "sample_hold", "dac", "crossbar", "shift_add",
    "input_register", "output_register", "reduction", "edram",
)

#: Area components of one crossbar unit, in report order.
AREA_COMPONENTS = (
    "crossbar", "dac", "sample_hold", "adc", "shift_add", "input_register", "output_register",
)


def _check_bits(bits) -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or bits < 1:
        raise ValueError(f"adc bits must be a positive integer, not {bits!r}")
    return int(bits)


def adc_energy_pj(bits: int, table: dict[int, float] | None = None) -> float:
    """Return the energy of one ADC conversion at ``bits`` of resolution (pJ).

    Inside the table (default :data:`ADC_ENERGY_PJ`, Accelergy's ISAAC table, 4..10 bits)
    this is the table's entry. Below it the first step (4->5 bits: 0.20 pJ per bit) is
    extrapolated linearly (1 bit: 0.19 pJ), never below zero; above it the last ratio
    (9->10 bits: x1.208 per bit) is extrapolated geometrically, following the exponential
    growth of high-resolution converters. ``table`` must cover consecutive resolutions (at
    least two).

    Raises
    ------
    ValueError
        If ``bits`` is not a positive integer.
    """
    bits = _check_bits(bits)
    table = ADC_ENERGY_PJ if table is None else table
    low, high = min(table), max(table)
    if bits in table:
        return float(table[bits])
    if bits < low:
        slope = table[low + 1] - table[low]
        return max(0.0, table[low] - slope * (low - bits))
    ratio = table[high] / table[high - 1]
    return table[high] * ratio ** (bits - high)


def adc_energy_pow2_pj(bits: int, ref_bits: int = 8, ref_pj: float = ADC_ENERGY_PJ[8]) -> float:
    """Return ``ref_pj * 2**(bits - ref_bits)``: ADC energy doubling with every bit (pJ).

    The reference point defaults to ISAAC's 8-bit ADC (1.667 pJ). This is the scaling the
    BWQ and IVQ papers argue from (a SAR/flash ADC's energy grows about as ``2**N``); at
    low resolutions it is far below the table (4 bits: 0.104 pJ against 0.79 pJ).

    Raises
    ------
    ValueError
        If ``bits`` is not a positive integer.
    """
    return float(ref_pj) * 2.0 ** (_check_bits(bits) - int(ref_bits))


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
        One shift-and-add operation (one per ADC code); also one reduction add and one
        add of the offset encoding's correction (``LayerCounts.correction_adds``).
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
    adc_model:
        ``"table"`` (:func:`adc_energy_pj` over :attr:`adc_table`) or ``"pow2"``
        (:func:`adc_energy_pow2_pj` from :attr:`adc_ref_bits` / :attr:`adc_ref_pj`).
    adc_table:
        ``(bits, pJ)`` pairs of the table model, consecutive resolutions.
    adc_ref_bits, adc_ref_pj:
        Reference point of the ``pow2`` model (default ISAAC's 8-bit ADC).

    Raises
    ------
    ValueError
        If ``adc_model`` is unknown, a price is negative or not a number, or the ADC table
        is not consecutive resolutions with positive energies.
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
    adc_model: str = "table"
    adc_table: tuple[tuple[int, float], ...] = tuple(sorted(ADC_ENERGY_PJ.items()))
    adc_ref_bits: int = 8
    adc_ref_pj: float = ADC_ENERGY_PJ[8]

    def __post_init__(self) -> None:
        if self.adc_model not in ADC_MODELS:
            raise ValueError(f"adc model must be one of {', '.join(ADC_MODELS)}, "
                             f"not {self.adc_model!r}")
        for name in _price_fields():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                    math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a non-negative number, not {value!r}")
        bits = [int(b) for b, _ in self.adc_table]
        if len(bits) < 2 or bits != list(range(bits[0], bits[0] + len(bits))) or bits[0] < 1:
            raise ValueError(f"adc table must cover at least two consecutive resolutions "
                             f"from 1 bit up, not {bits}")
        if any(not (isinstance(pj, (int, float)) and pj > 0) for _, pj in self.adc_table):
            raise ValueError(f"adc table energies must be positive, not {dict(self.adc_table)}")
        _check_bits(self.adc_ref_bits)
        if isinstance(self.adc_ref_pj, bool) or not isinstance(self.adc_ref_pj, (int, float)) \
                or not (math.isfinite(self.adc_ref_pj) and self.adc_ref_pj > 0):
            raise ValueError(f"adc_ref_pj must be a positive number, not {self.adc_ref_pj!r}")

    def adc_pj(self, bits: int) -> float:
        """Return the energy of one conversion at ``bits`` (pJ) under :attr:`adc_model`."""
        if self.adc_model == "pow2":
            return adc_energy_pow2_pj(bits, self.adc_ref_bits, self.adc_ref_pj)
        return adc_energy_pj(bits, dict(self.adc_table))


def _price_fields() -> list[str]:
    """Names of the :class:`CostModel` fields that are prices (energies and areas)."""
    return [f.name for f in fields(CostModel)
            if f.name.endswith(("_pj", "_mm2")) and not f.name.startswith("adc_")]


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
    128 rows per crossbar). Cell bits do not change the array area. The ADC's resolution
    ratio follows ``costs.adc_model`` (``pow2``: ``2**(adc_bits - 8)``).
    """
    adc_scale = costs.adc_pj(config.adc_bits) / costs.adc_pj(8)
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
        # shift-and-adds of the codes, plus the offset encoding's correction adds
        "shift_add": V * (conversions + counts.correction_adds) * costs.shift_add_pj,
        "input_register": V * (K * act_bits + dac * config.dac_bits)
        * costs.input_register_bit_pj,
        "output_register": V * (conversions + O) * costs.output_register_pj,
        "reduction": V * counts.reduction_transfers
        * (config.acc_bits * costs.router_bit_pj + costs.shift_add_pj),
        "edram": V * (K * act_bits + O * out_bits) * costs.edram_bit_pj,
    }
    return {key: float(value) for key, value in energy.items()}


# ------------------------------------------------------------------------- costs files
def cost_keys() -> dict[str, str]:
    """Return the keys a costs file may set, ``"section.key"`` -> :class:`CostModel` field.

    ``[energy]`` holds every ``*_pj`` price without the suffix (``dac``, ``crossbar_cell``,
    ``sample_hold``, ``shift_add``, ``input_register_bit``, ``output_register``,
    ``edram_bit``, ``router_bit``, and any price added later), in pJ per action; ``[area]``
    every ``area_*_mm2`` share without prefix and suffix (``crossbar``, ``dac``, ``adc``,
    ...), in mm2 per ISAAC crossbar share; ``[adc]`` holds ``model``, ``ref_bits``,
    ``ref_pj`` and ``table`` (a table of ``bits = pJ``).
    """
    keys = {}
    for name in _price_fields():
        if name.startswith("area_"):
            keys[f"area.{name[len('area_'):-len('_mm2')]}"] = name
        else:
            keys[f"energy.{name[:-len('_pj')]}"] = name
    keys.update({"adc.model": "adc_model", "adc.ref_bits": "adc_ref_bits",
                 "adc.ref_pj": "adc_ref_pj", "adc.table": "adc_table"})
    return keys


def _file_value(source: str, key: str, value):
    """Check one value of a costs file; return it in the :class:`CostModel` field's form."""
    def bad(what: str):
        return ValueError(f"{source}: {key} must be {what}, not {value!r}")

    if key == "adc.model":
        if value not in ADC_MODELS:
            raise bad(f"one of {', '.join(ADC_MODELS)}")
        return value
    if key == "adc.ref_bits":
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise bad("a positive integer")
        return value
    if key == "adc.table":
        if not isinstance(value, dict) or not value:
            raise bad("a table of bits = pJ")
        table = {}
        for bits, pj in value.items():
            if not str(bits).isdigit() or int(bits) < 1:
                raise ValueError(f"{source}: {key}.{bits} is not a resolution in bits")
            table[int(bits)] = _file_value(source, f"{key}.{bits}", pj)
        return table
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise bad("a number")
    if value < 0 or (value == 0 and key.startswith("adc.")):     # an ADC costs something
        raise bad("positive" if key.startswith("adc.") else "non-negative")
    return float(value)


def load_costs(path: str | Path, base: CostModel = ISAAC_COSTS) -> CostModel:
    """Read a TOML costs file and return ``base`` with its prices overridden.

    Every key is optional; see :func:`cost_keys` for the sections and names. ``[adc]
    table`` entries replace or extend ``base``'s ADC table (the result must still be
    consecutive resolutions). Example::

        [energy]            # pJ per action
        dac = 0.2
        [area]              # mm2 per ISAAC crossbar share (one eighth of an IMA)
        adc = 0.0006
        [adc]
        model = "pow2"      # or "table"
        ref_bits = 8
        ref_pj = 1.667

    Raises
    ------
    ValueError
        Naming the file, the key and the value: a missing file, invalid TOML, an unknown
        section or key, a negative or non-numeric price, an unknown ADC model, or an ADC
        table that is not consecutive resolutions.
    """
    path = Path(path)
    data = read_toml(path, "costs file")
    known = cost_keys()
    changes = {}
    for section, table in data.items():
        if not isinstance(table, dict) or not any(k.startswith(f"{section}.") for k in known):
            raise ValueError(f"{path}: unknown section {section!r}; known sections are "
                             f"energy, area, adc")
        for key, value in table.items():
            name = f"{section}.{key}"
            if name not in known:
                choices = sorted(k.split(".", 1)[1] for k in known
                                 if k.startswith(f"{section}."))
                raise ValueError(f"{path}: unknown key {name} = {value!r}; [{section}] "
                                 f"knows {', '.join(choices)}")
            changes[known[name]] = _file_value(str(path), name, value)
    if "adc_table" in changes:
        changes["adc_table"] = tuple(sorted({**dict(base.adc_table),
                                             **changes["adc_table"]}.items()))
    try:
        return replace(base, **changes)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def cost_model(path: str | Path | None = None, adc_model: str | None = None) -> CostModel:
    """Return the cost model of a costs file (or ISAAC's) with the ADC model switched.

    ``adc_model`` (``--adc-model``) wins over the file's ``[adc] model``.
    """
    costs = load_costs(path) if path else ISAAC_COSTS
    return replace(costs, adc_model=adc_model) if adc_model else costs
