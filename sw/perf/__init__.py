"""Performance, energy and area model of a mapped program.

:func:`analyze` counts, for every layer job of a :class:`~bitline.sw.mapping.Program`, the
events of docs/contract.md section 5 (OU reads, ADC conversions, cycles) -- the same numbers
the crossbar-level executor and the RTL performance counters report -- and prices them with
per-action energies and per-component areas taken from ISAAC (ISCA 2016) and Accelergy's
ISAAC library, as collected in the project's reference notes. Every formula and constant is
written out in docs/performance.md.

The model is static: it counts what the OU program issues for ``V`` input vectors per layer
(``V`` = output pixels of the IR layer), independent of the input values (a read is a read
even when the issued input slice is all zero). Cycle counts come from the single definition
in :mod:`bitline.hw.spec.timing`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bitline.hw.spec.config import AcceleratorConfig
from bitline.hw.spec.program import LayerProgram, Program
from bitline.hw.spec.timing import layer_cycles
from bitline.sw.frontend.ir import Layer, Model
from bitline.sw.integer.arith import layer_matrix
from bitline.sw.integer.qmodel import QuantizedModel

__all__ = [
    "ADC_ENERGY_PJ",
    "ENERGY_COMPONENTS",
    "AREA_COMPONENTS",
    "CostModel",
    "ISAAC_COSTS",
    "LayerPerf",
    "PerfReport",
    "adc_energy_pj",
    "analyze",
    "analyze_layer",
    "layer_vectors",
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


def layer_vectors(layer: Layer) -> int:
    """Return the input vectors one sample streams through a compute layer (``V``).

    A conv's output pixels ``H * W`` (one im2col column each), 1 for a gemm.
    """
    if layer.op == "gemm" or len(layer.output_shape) < 2:
        return 1
    return int(np.prod(layer.output_shape[1:]))


@dataclass
class LayerPerf:
    """Counts, cycles, energy and bound of one layer job (totals over its ``V`` vectors).

    Attributes
    ----------
    name:
        Layer name.
    n_inputs, n_outputs, n_vectors, act_bits:
        ``K``, ``O``, ``V`` and the input activation width.
    crossbars:
        Crossbar units the layer owns.
    active_crossbars:
        Units with at least one OU entry; the others are hollow (exempted).
    nonzero_cells, allocated_cells:
        Cells holding a nonzero level, and all cells of the owned units.
    entries:
        OU entries of the layer.
    ou_reads, adc_conversions:
        OU reads and valid-column conversions for all ``V`` vectors.
    activated_cells, activated_nonzero_cells:
        Cells under the OU of every read (driven rows x valid columns) and the nonzero ones
        among them, summed over all reads.
    dac_conversions:
        Driven rows summed over all reads.
    reduction_transfers:
        Partial sums sent to the reduction: per vector, for each output channel the number
        of units whose entries name it.
    max_unit_reads:
        Reads per vector of the busiest unit.
    cycles, latency_s:
        Layer-job cycles (:func:`bitline.hw.spec.timing.layer_cycles`, docs/contract.md section
        5) and their time at ``clock_mhz``.
    energy_pj:
        Energy by component (:data:`ENERGY_COMPONENTS`).
    bound_reads, bound_cycles:
        Lower bound: every nonzero weight digit packed perfectly into full OUs
        (``exact_rows_per_ou x ou_cols`` digits per read); for the cycles the reads are
        spread evenly over all ``n_xbars`` units.
    """

    name: str
    n_inputs: int
    n_outputs: int
    n_vectors: int
    act_bits: int
    crossbars: int
    active_crossbars: int
    nonzero_cells: int
    allocated_cells: int
    entries: int
    ou_reads: int
    adc_conversions: int
    activated_cells: int
    activated_nonzero_cells: int
    dac_conversions: int
    reduction_transfers: int
    max_unit_reads: int
    cycles: int
    latency_s: float
    energy_pj: dict[str, float]
    bound_reads: int
    bound_cycles: int

    @property
    def cell_utilization(self) -> float:
        """Nonzero cells / allocated cells of the owned units."""
        return self.nonzero_cells / self.allocated_cells if self.allocated_cells else 0.0

    @property
    def ou_fill(self) -> float:
        """Nonzero cells / activated cells, over all reads."""
        return self.activated_nonzero_cells / self.activated_cells if self.activated_cells else 0.0

    @property
    def total_energy_pj(self) -> float:
        """Sum of :attr:`energy_pj`."""
        return float(sum(self.energy_pj.values()))

    @property
    def efficiency(self) -> float:
        """``bound_reads / ou_reads``: the share of OU reads a perfect packing would need."""
        return self.bound_reads / self.ou_reads if self.ou_reads else 1.0

    @property
    def cycle_efficiency(self) -> float:
        """``bound_cycles / cycles`` (1.0: the layer job cannot be faster)."""
        return self.bound_cycles / self.cycles if self.cycles else 1.0

    def to_dict(self) -> dict:
        """Return the counts and derived ratios as a JSON-ready dict."""
        out = {key: getattr(self, key) for key in self.__dataclass_fields__}
        out["energy_pj"] = dict(self.energy_pj)
        out.update(
            cell_utilization=self.cell_utilization,
            ou_fill=self.ou_fill,
            total_energy_pj=self.total_energy_pj,
            efficiency=self.efficiency,
            cycle_efficiency=self.cycle_efficiency,
        )
        return out


@dataclass
class PerfReport:
    """Per-layer and whole-network performance of one program.

    Layers run one after another for one sample; totals are sums over layers. ``area_mm2``
    is the area of the ``n_xbars`` configured units by component, ``used_area_mm2`` that of
    the units holding weights.
    """

    strategy: str
    config: AcceleratorConfig
    layers: list[LayerPerf]
    area_mm2: dict[str, float]
    used_area_mm2: dict[str, float]
    labels: dict = field(default_factory=dict)

    def _sum(self, key: str):
        return sum(getattr(layer, key) for layer in self.layers)

    @property
    def crossbars(self) -> int:
        """Crossbar units holding weights."""
        return int(self._sum("crossbars"))

    @property
    def active_crossbars(self) -> int:
        """Units with at least one OU entry."""
        return int(self._sum("active_crossbars"))

    @property
    def ou_reads(self) -> int:
        """OU reads for one sample."""
        return int(self._sum("ou_reads"))

    @property
    def adc_conversions(self) -> int:
        """ADC conversions for one sample."""
        return int(self._sum("adc_conversions"))

    @property
    def cycles(self) -> int:
        """Cycles for one sample (layer jobs in sequence)."""
        return int(self._sum("cycles"))

    @property
    def latency_s(self) -> float:
        """Latency of one sample at ``config.clock_mhz`` (s)."""
        return self.cycles / (self.config.clock_mhz * 1e6)

    @property
    def bound_cycles(self) -> int:
        """Sum of the layers' lower-bound cycles."""
        return int(self._sum("bound_cycles"))

    @property
    def bound_reads(self) -> int:
        """Sum of the layers' lower-bound reads."""
        return int(self._sum("bound_reads"))

    @property
    def efficiency(self) -> float:
        """``bound_reads / ou_reads`` of the whole network."""
        return self.bound_reads / self.ou_reads if self.ou_reads else 1.0

    @property
    def cycle_efficiency(self) -> float:
        """``bound_cycles / cycles`` of the whole network."""
        return self.bound_cycles / self.cycles if self.cycles else 1.0

    @property
    def cell_utilization(self) -> float:
        """Nonzero cells / allocated cells over all layers."""
        allocated = self._sum("allocated_cells")
        return self._sum("nonzero_cells") / allocated if allocated else 0.0

    @property
    def ou_fill(self) -> float:
        """Nonzero activated cells / activated cells over all reads."""
        activated = self._sum("activated_cells")
        return self._sum("activated_nonzero_cells") / activated if activated else 0.0

    @property
    def energy_pj(self) -> dict[str, float]:
        """Energy of one sample by component (pJ)."""
        return {key: float(sum(layer.energy_pj[key] for layer in self.layers))
                for key in ENERGY_COMPONENTS}

    @property
    def total_energy_pj(self) -> float:
        """Energy of one sample (pJ)."""
        return float(sum(self.energy_pj.values()))

    def to_dict(self) -> dict:
        """Return the report as a JSON-ready dict (totals, per layer, area, config)."""
        return {
            "strategy": self.strategy,
            "labels": dict(self.labels),
            "config": self.config.to_dict(),
            "totals": {
                "crossbars": self.crossbars,
                "active_crossbars": self.active_crossbars,
                "ou_reads": self.ou_reads,
                "adc_conversions": self.adc_conversions,
                "cycles": self.cycles,
                "latency_s": self.latency_s,
                "energy_pj": self.total_energy_pj,
                "cell_utilization": self.cell_utilization,
                "ou_fill": self.ou_fill,
                "bound_reads": self.bound_reads,
                "bound_cycles": self.bound_cycles,
                "efficiency": self.efficiency,
                "cycle_efficiency": self.cycle_efficiency,
                "area_mm2": float(sum(self.area_mm2.values())),
                "used_area_mm2": float(sum(self.used_area_mm2.values())),
            },
            "energy_pj": self.energy_pj,
            "adc": {"bits": self.config.adc_bits,
                    "pj_per_conversion": adc_energy_pj(self.config.adc_bits)},
            "area_mm2": dict(self.area_mm2),
            "used_area_mm2": dict(self.used_area_mm2),
            "layers": [layer.to_dict() for layer in self.layers],
        }

    def tables(self):
        """Return rich tables: per layer, energy by component and area by component."""
        from rich.table import Table

        title = f"{self.strategy}"
        if self.labels:
            title += " (" + ", ".join(f"{k}: {v}" for k, v in self.labels.items()) + ")"
        per_layer = Table(title=f"Performance per layer: {title}")
        for column in ("layer", "K x O", "V", "xbars", "active", "util", "OU reads",
                       "fill", "ADC conv", "cycles", "energy nJ", "eff"):
            if column == "layer":
                per_layer.add_column(column, overflow="fold")
            else:
                per_layer.add_column(column, justify="right")
        for layer in self.layers:
            per_layer.add_row(
                layer.name, f"{layer.n_inputs}x{layer.n_outputs}", str(layer.n_vectors),
                str(layer.crossbars), str(layer.active_crossbars),
                f"{layer.cell_utilization:.1%}", f"{layer.ou_reads:,}", f"{layer.ou_fill:.1%}",
                f"{layer.adc_conversions:,}", f"{layer.cycles:,}",
                f"{layer.total_energy_pj / 1e3:,.2f}", f"{layer.efficiency:.2f}",
            )
        per_layer.add_section()
        per_layer.add_row(
            "total", "", "", str(self.crossbars), str(self.active_crossbars),
            f"{self.cell_utilization:.1%}", f"{self.ou_reads:,}", f"{self.ou_fill:.1%}",
            f"{self.adc_conversions:,}", f"{self.cycles:,}",
            f"{self.total_energy_pj / 1e3:,.2f}", f"{self.efficiency:.2f}",
        )
        energy = Table(title="Energy by component (one sample)")
        energy.add_column("component")
        energy.add_column("nJ", justify="right")
        energy.add_column("share", justify="right")
        total = self.total_energy_pj or 1.0
        for key, value in self.energy_pj.items():
            energy.add_row(key, f"{value / 1e3:,.3f}", f"{value / total:.1%}")
        energy.add_section()
        energy.add_row("total", f"{self.total_energy_pj / 1e3:,.3f}",
                       f"latency {self.latency_s * 1e6:,.2f} us")
        area = Table(title=f"Area by component (mm2, {self.config.n_xbars} units configured)")
        area.add_column("component")
        area.add_column("configured", justify="right")
        area.add_column("used", justify="right")
        for key in AREA_COMPONENTS:
            area.add_row(key, f"{self.area_mm2[key]:.5f}", f"{self.used_area_mm2[key]:.5f}")
        area.add_section()
        area.add_row("total", f"{sum(self.area_mm2.values()):.5f}",
                     f"{sum(self.used_area_mm2.values()):.5f}")
        return per_layer, energy, area


def _column_fields(entries: np.ndarray, config: AcceleratorConfig, name: str) -> np.ndarray:
    """Return ``(E, ou_cols)`` int64 of the per-column descriptor field ``name``."""
    if len(entries) == 0:
        return np.zeros((0, config.ou_cols), dtype=np.int64)
    return np.stack([np.asarray(entries[f"cols.{j}.{name}"], dtype=np.int64)
                     for j in range(config.ou_cols)], axis=1)


def _nonzero_digits_by_input(weight: np.ndarray, cell_bits: int) -> np.ndarray:
    """Return, per input ``i``, the nonzero base-``2**cell_bits`` digits of ``|W[:, i]|``."""
    magnitude = np.abs(np.asarray(weight, dtype=np.int64))
    counts = np.zeros(magnitude.shape[1], dtype=np.int64)
    mask = (1 << cell_bits) - 1
    while np.any(magnitude):
        counts += np.count_nonzero(magnitude & mask, axis=0)
        magnitude = magnitude >> cell_bits
    return counts


def analyze_layer(
    layer: LayerProgram,
    config: AcceleratorConfig,
    n_vectors: int,
    *,
    weight: np.ndarray | None = None,
    act_block_bits: np.ndarray | None = None,
    out_bits: int | None = None,
    costs: CostModel = ISAAC_COSTS,
) -> LayerPerf:
    """Count and price one layer job over ``n_vectors`` input vectors.

    Parameters
    ----------
    layer:
        The mapped layer.
    config:
        The program's accelerator config.
    n_vectors:
        Input vectors ``V`` (output pixels).
    weight:
        Integer ``(O, K)`` weight matrix for the lower bound; default: rebuilt as the count
        of nonzero cells (so the bound assumes the mapping's own cells are the digits).
    act_block_bits:
        BWQ per-row-block activation widths (blocks of ``ou_rows`` inputs) for the bound;
        default: ``layer.act_bits`` for every input.
    out_bits:
        Bits of one output written back to eDRAM; default ``layer.act_bits`` (``acc_bits``
        is the natural choice for a raw final layer).
    costs:
        Per-action energies and areas.

    Raises
    ------
    ValueError
        If an entry names a crossbar the layer does not own, or ``n_vectors < 1``.
    """
    if n_vectors < 1:
        raise ValueError(f"n_vectors must be at least 1, not {n_vectors}")
    entries = layer.entries
    xbars = np.asarray(layer.xbars, dtype=np.int64)
    n_units = len(xbars)
    K, O, V = int(layer.n_inputs), int(layer.n_outputs), int(n_vectors)

    # Map global unit ids of the entries onto the layer's local crossbar index.
    order = np.argsort(xbars)
    entry_units = np.asarray(entries["xbar"], dtype=np.int64)
    position = np.searchsorted(xbars[order], entry_units)
    position = np.minimum(position, max(n_units - 1, 0))
    if len(entries) and (n_units == 0 or np.any(xbars[order][position] != entry_units)):
        bad = entry_units[(n_units == 0) | (xbars[order][position] != entry_units)][0]
        raise ValueError(f"layer {layer.name}: entry names crossbar {bad}, which the layer "
                         f"does not own (xbars {xbars.tolist()})")
    local = order[position] if len(entries) else np.zeros(0, dtype=np.int64)

    rows, cols = config.rows, config.cols
    row_maps = np.asarray(layer.row_maps).reshape(n_units, rows)
    driven = row_maps >= 0                                       # (X, rows)
    cells = np.asarray(layer.cells).reshape(n_units, rows, cols) != 0
    group_starts = np.arange(0, rows, config.ou_rows)
    # Nonzero cells on driven rows and driven rows, per (unit, row group[, column]).
    per_row = np.count_nonzero(cells, axis=2)                    # (X, rows)
    live = cells & driven[:, :, None] if np.any(per_row[~driven]) else cells
    small = np.uint8 if config.ou_rows < 256 else np.uint16
    nonzero_by_group = (np.add.reduceat(live.view(np.uint8), group_starts, axis=1, dtype=small)
                        if n_units else np.zeros((0, len(group_starts), cols), small))
    driven_by_group = (np.add.reduceat(driven, group_starts, axis=1, dtype=np.int32)
                       if n_units else np.zeros((0, len(group_starts)), np.int32))

    n_slices = (np.asarray(entries["slice_hi"], dtype=np.int64)
                - np.asarray(entries["slice_lo"], dtype=np.int64))
    if np.any(n_slices < 0):
        raise ValueError(f"layer {layer.name}: an entry has slice_hi < slice_lo")
    valid = _column_fields(entries, config, "valid") != 0        # (E, ou_cols)
    dest = _column_fields(entries, config, "dest")
    row_group = np.asarray(entries["row_group"], dtype=np.int64)
    col_group = np.asarray(entries["col_group"], dtype=np.int64)
    column = col_group[:, None] * config.ou_cols + np.arange(config.ou_cols)[None, :]
    in_range = column < cols
    valid &= in_range
    safe_column = np.where(in_range, column, 0)
    n_valid = valid.sum(axis=1, dtype=np.int64)
    n_driven = (driven_by_group[local, row_group].astype(np.int64) if len(entries)
                else np.zeros(0, np.int64))
    nonzero_hit = (np.where(valid, nonzero_by_group[local[:, None], row_group[:, None],
                                                    safe_column], 0).sum(axis=1, dtype=np.int64)
                   if len(entries) else np.zeros(0, np.int64))

    reads = int(n_slices.sum())
    conversions = int((n_slices * n_valid).sum())
    dac = int((n_slices * n_driven).sum())
    activated = int((n_slices * n_driven * n_valid).sum())
    activated_nonzero = int((n_slices * nonzero_hit).sum())
    unit_reads = np.bincount(local, weights=n_slices, minlength=n_units).astype(np.int64)
    active_units = int(np.count_nonzero(np.bincount(local, minlength=n_units)))
    # Reduction: one partial sum per (unit, channel) pair named by a valid column.
    named = np.zeros((max(n_units, 1), max(int(dest.max(initial=0)) + 1, O)), dtype=bool)
    named[np.broadcast_to(local[:, None], dest.shape)[valid], dest[valid]] = True
    pairs = int(np.count_nonzero(named))

    cycles = int(layer_cycles(config, K, O, V, unit_reads))

    # Lower bound: nonzero digits packed into full exact OUs, spread over all units.
    if weight is None:
        # Without the weights, every nonzero cell on a driven row is one digit of its input.
        digits = np.zeros(K, dtype=np.int64)
        np.add.at(digits, row_maps[driven], per_row[driven])
    else:
        weight = np.asarray(weight).reshape(O, -1)
        if weight.shape[1] != K:
            raise ValueError(f"layer {layer.name}: weight has {weight.shape[1]} inputs, "
                             f"the program {K}")
        digits = _nonzero_digits_by_input(weight, config.cell_bits)
    if act_block_bits is None:
        act_bits_per_input = np.full(K, layer.act_bits, dtype=np.int64)
    else:
        blocks = np.asarray(act_block_bits, dtype=np.int64).reshape(-1)
        act_bits_per_input = blocks[np.minimum(np.arange(K) // config.ou_rows, len(blocks) - 1)]
    slices_per_input = -(-act_bits_per_input // config.dac_bits)
    capacity = config.exact_rows_per_ou * config.ou_cols
    bound_reads = -(-int((digits * slices_per_input).sum()) // capacity)
    # A machine holds at least the units this layer occupies (a performance-only layerwise
    # program may give a layer more units than n_xbars).
    bound_unit_reads = -(-bound_reads // max(config.n_xbars, n_units, 1))
    bound_cycles = int(layer_cycles(config, K, O, V, np.array([bound_unit_reads])))

    out_bits = layer.act_bits if out_bits is None else int(out_bits)
    energy = {
        "adc": V * conversions * costs.adc_pj(config.adc_bits),
        "sample_hold": V * conversions * costs.sample_hold_pj,
        "dac": V * dac * costs.dac_pj,
        "crossbar": V * activated * costs.crossbar_cell_pj,
        "shift_add": V * conversions * costs.shift_add_pj,
        "input_register": V * (K * layer.act_bits + dac * config.dac_bits)
        * costs.input_register_bit_pj,
        "output_register": V * (conversions + O) * costs.output_register_pj,
        "reduction": V * pairs * (config.acc_bits * costs.router_bit_pj + costs.shift_add_pj),
        "edram": V * (K * layer.act_bits + O * out_bits) * costs.edram_bit_pj,
    }
    return LayerPerf(
        name=layer.name,
        n_inputs=K,
        n_outputs=O,
        n_vectors=V,
        act_bits=int(layer.act_bits),
        crossbars=n_units,
        active_crossbars=active_units,
        nonzero_cells=int(np.count_nonzero(cells)),
        allocated_cells=n_units * rows * cols,
        entries=len(entries),
        ou_reads=V * reads,
        adc_conversions=V * conversions,
        activated_cells=V * activated,
        activated_nonzero_cells=V * activated_nonzero,
        dac_conversions=V * dac,
        reduction_transfers=V * pairs,
        max_unit_reads=int(unit_reads.max(initial=0)),
        cycles=cycles,
        latency_s=cycles / (config.clock_mhz * 1e6),
        energy_pj={key: float(value) for key, value in energy.items()},
        bound_reads=V * bound_reads,
        bound_cycles=bound_cycles,
    )


def analyze(
    program: Program,
    qmodel: QuantizedModel | Model,
    *,
    costs: CostModel = ISAAC_COSTS,
    labels: dict | None = None,
) -> PerfReport:
    """Count, time and price every layer job of ``program``.

    Parameters
    ----------
    program:
        The mapped network.
    qmodel:
        The quantized model it was mapped from (or just its IR :class:`~bitline.sw.frontend.ir.Model`):
        supplies each layer's output shape (``V`` = output pixels), the integer weights and
        BWQ activation widths for the lower bound, and output widths for eDRAM traffic.
        With a bare IR model the bound counts the program's own nonzero cells.
    costs:
        Per-action energies and component areas (default ISAAC, 32 nm).
    labels:
        Free-form labels copied into the report (e.g. ``{"weights": "synthetic"}``).

    Returns
    -------
    PerfReport

    Raises
    ------
    ValueError
        If a program layer is not a compute layer of the model.
    """
    model = qmodel.model if isinstance(qmodel, QuantizedModel) else qmodel
    config = program.config
    by_name = {layer.name: layer for layer in model.layers}
    results = []
    for layer_program in program.layers:
        ir_layer = by_name.get(layer_program.name)
        if ir_layer is None or not ir_layer.is_compute:
            raise ValueError(f"program layer {layer_program.name!r} is not a compute layer "
                             f"of model {model.name}")
        weight = act_block_bits = out_bits = None
        if isinstance(qmodel, QuantizedModel):
            qlayer = qmodel.layers[layer_program.name]
            if qlayer.weight is not None:
                weight = layer_matrix(qlayer)
            act_block_bits = qlayer.act_block_bits
            out_bits = qlayer.output.bits if qlayer.output is not None else config.acc_bits
        results.append(analyze_layer(
            layer_program, config, layer_vectors(ir_layer), weight=weight,
            act_block_bits=act_block_bits, out_bits=out_bits, costs=costs,
        ))
    unit = unit_area_mm2(config, costs)
    return PerfReport(
        strategy=program.strategy,
        config=config,
        layers=results,
        area_mm2={key: value * config.n_xbars for key, value in unit.items()},
        used_area_mm2={key: value * program.xbars_used for key, value in unit.items()},
        labels=dict(labels or {}),
    )
