"""The performance report: per-layer results, the network report, its tables; :func:`analyze`.

:func:`analyze` counts (:mod:`bitline.sw.perf.counting`) and prices
(:mod:`bitline.sw.perf.costs`) every layer job of a :class:`~bitline.hw.spec.program.Program`
for ``V`` input vectors per layer (``V`` = output pixels of the IR layer). Every formula and
constant is written out in docs/performance.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bitline.hw.spec.config import AcceleratorConfig
from bitline.hw.spec.program import LayerProgram, Program
from bitline.sw.frontend.ir import Model
from bitline.sw.integer.arith import layer_matrix
from bitline.sw.integer.qmodel import QuantizedModel
from bitline.sw.perf.costs import (
    AREA_COMPONENTS, ENERGY_COMPONENTS, ISAAC_COSTS, CostModel, layer_energy_pj,
    unit_area_mm2,
)
from bitline.sw.perf.counting import count_layer, layer_vectors

__all__ = ["LayerPerf", "PerfReport", "analyze", "analyze_layer"]


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
    copies:
        Copies of the layer (:attr:`~bitline.hw.spec.program.LayerProgram.copy_xbars`):
        ``crossbars`` counts every copy's units, ``cycles`` is the job with the vectors
        split over the copies.
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
    copies: int = 1

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
    costs: CostModel = ISAAC_COSTS          # the prices the energies and areas used

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
            "adc": {"bits": self.config.adc_bits, "model": self.costs.adc_model,
                    "pj_per_conversion": self.costs.adc_pj(self.config.adc_bits)},
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
        If an entry names a crossbar the layer does not own, or ``n_vectors < 1``
        (:func:`bitline.sw.perf.counting.count_layer`).
    """
    counts = count_layer(layer, config, n_vectors, weight=weight, act_block_bits=act_block_bits)
    out_bits = layer.act_bits if out_bits is None else int(out_bits)
    V = counts.n_vectors
    return LayerPerf(
        name=layer.name,
        n_inputs=counts.n_inputs,
        n_outputs=counts.n_outputs,
        n_vectors=V,
        act_bits=counts.act_bits,
        crossbars=counts.crossbars,
        active_crossbars=counts.active_crossbars,
        nonzero_cells=counts.nonzero_cells,
        allocated_cells=counts.allocated_cells,
        entries=counts.entries,
        ou_reads=V * counts.reads,
        adc_conversions=V * counts.conversions,
        activated_cells=V * counts.activated_cells,
        activated_nonzero_cells=V * counts.activated_nonzero_cells,
        dac_conversions=V * counts.dac_conversions,
        reduction_transfers=V * counts.reduction_transfers,
        max_unit_reads=counts.max_unit_reads,
        cycles=counts.cycles,
        latency_s=counts.cycles / (config.clock_mhz * 1e6),
        energy_pj=layer_energy_pj(counts, config, out_bits, costs),
        bound_reads=V * counts.bound_reads,
        bound_cycles=counts.bound_cycles,
        copies=counts.copies,
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
        costs=costs,
    )
