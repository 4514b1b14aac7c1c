"""Performance, energy and area model of a mapped program.

Four modules, one job each: :mod:`~bitline.sw.perf.counting` counts the events of a layer
job (docs/contract.md section 5; the same numbers the crossbar-level executor and the RTL
performance counters report, cycles from :mod:`bitline.hw.spec.timing`),
:mod:`~bitline.sw.perf.costs` prices them (ISAAC / Accelergy energies and areas), and
:mod:`~bitline.sw.perf.report` assembles the per-layer and network report (:func:`analyze`);
:mod:`~bitline.sw.perf.pipeline` allocates layer copies under a budget and times the
inter-layer pipeline (:func:`pipeline_report`); :mod:`~bitline.sw.perf.network` times a
whole-network run, nodes one at a time (:func:`network_report`, the RTL's counters).
docs/performance.md writes out every formula and constant.
"""

from bitline.sw.perf.costs import (
    ADC_ENERGY_PJ, ADC_MODELS, AREA_COMPONENTS, ENERGY_COMPONENTS, ISAAC_COSTS, CostModel,
    adc_energy_pj, adc_energy_pow2_pj, cost_keys, cost_model, load_costs, unit_area_mm2,
)
from bitline.sw.perf.counting import LayerCounts, count_layer, layer_vectors
from bitline.sw.perf.network import (
    NetworkPerf, NodePerf, format_network_report, network_report, pipeline_comparison,
)
from bitline.sw.perf.pipeline import (
    Budget, PipelineReport, allocate, parse_budget, pipeline_report,
)
from bitline.sw.perf.report import LayerPerf, PerfReport, analyze, analyze_layer

__all__ = [
    "ADC_ENERGY_PJ",
    "ADC_MODELS",
    "AREA_COMPONENTS",
    "ENERGY_COMPONENTS",
    "CostModel",
    "ISAAC_COSTS",
    "LayerCounts",
    "LayerPerf",
    "NetworkPerf",
    "NodePerf",
    "PerfReport",
    "PipelineReport",
    "adc_energy_pj",
    "allocate",
    "adc_energy_pow2_pj",
    "cost_keys",
    "cost_model",
    "format_network_report",
    "load_costs",
    "analyze",
    "analyze_layer",
    "count_layer",
    "layer_vectors",
    "network_report",
    "parse_budget",
    "pipeline_comparison",
    "pipeline_report",
    "unit_area_mm2",
]
