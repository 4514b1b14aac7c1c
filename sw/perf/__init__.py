"""Performance, energy and area model of a mapped program.

Three modules, one job each: :mod:`~bitline.sw.perf.counting` counts the events of a layer
job (docs/contract.md section 5; the same numbers the crossbar-level executor and the RTL
performance counters report, cycles from :mod:`bitline.hw.spec.timing`),
:mod:`~bitline.sw.perf.costs` prices them (ISAAC / Accelergy energies and areas), and
:mod:`~bitline.sw.perf.report` assembles the per-layer and network report (:func:`analyze`).
docs/performance.md writes out every formula and constant.
"""

from bitline.sw.perf.costs import (
    ADC_ENERGY_PJ, AREA_COMPONENTS, ENERGY_COMPONENTS, ISAAC_COSTS, CostModel, adc_energy_pj,
    unit_area_mm2,
)
from bitline.sw.perf.counting import LayerCounts, count_layer, layer_vectors
from bitline.sw.perf.report import LayerPerf, PerfReport, analyze, analyze_layer

__all__ = [
    "ADC_ENERGY_PJ",
    "AREA_COMPONENTS",
    "ENERGY_COMPONENTS",
    "CostModel",
    "ISAAC_COSTS",
    "LayerCounts",
    "LayerPerf",
    "PerfReport",
    "adc_energy_pj",
    "analyze",
    "analyze_layer",
    "count_layer",
    "layer_vectors",
    "unit_area_mm2",
]
