#!/usr/bin/env python3
"""Regenerate the README's results section, docs/results.md and docs/img/results.png.

Usage::

    python scripts/results.py                   # every network (see README for the time)
    python scripts/results.py --quick           # the four trained networks only
    python scripts/results.py --models digits-cnn,resnet18-cifar [--decompose ...]

For every network of :data:`MODELS` the script compiles each compared row of
``bitline compare`` (the five strategies with their default specs, ``bwq-a`` and the three
named ISAAC baselines of :mod:`bitline.sw.flow.baselines`) on the ``bwq`` preset, and puts
each row against each baseline **at equal crossbars**, **at equal area** (the
``--budget baseline`` / ``baseline-area`` layer pipelines of docs/performance.md section 7)
and at twice the baseline's area (where the baseline can balance its pipeline too: at its
own footprint it has no unit to spare), next to the papers' claims. Then it decomposes the gap between BWQ and ISAAC as published
(:func:`decompose`): starting from ``bwq`` vs ``isaac-paper``, it switches one factor at a
time and re-runs.

Why not one ``compare_strategies`` call per budget: the three budgets and the
decomposition price the *same* compiled runs, so each distinct run (strategy, spec, config,
encoding, weights) is compiled once here (:class:`Workload`) and the rows are completed by
compare's own :func:`~bitline.sw.flow.compare.add_ratios` and
:func:`~bitline.sw.flow.compare.add_pipeline`. tests/e2e/test_results_script.py checks the
tables against a ``compare_strategies`` call (specs, energy savings, speedups at equal
crossbars) and the area budgets against pipelines computed by hand.

Outputs (byte-identical on a rerun: fixed seeds, no timings in the files; the time per
network goes to stderr): the README block between ``<!-- begin results -->`` and
``<!-- end results -->`` (:func:`readme_sections.replace_section`), ``docs/results.md`` (every
table) and ``docs/img/results.png`` (the plot the README embeds).

The file is longer than the project's 600 lines because it is one documented command: the
runs, the decomposition, the tables, the plot and the generated text are read together
when a number in the README is questioned, and nothing here is library code (the library
halves it calls are ``bitline.sw.flow`` and ``bitline.sw.perf``).
"""

from __future__ import annotations

import copy
import itertools
import time
from dataclasses import dataclass, replace
from pathlib import Path

import click
import numpy as np

ROOT = Path(__file__).resolve().parents[1]

#: Every network of the results, in table order.
MODELS = ("digits-cnn", "digits-resnet", "mnist-lenet5", "mnist-resnet", "resnet18-cifar",
          "vgg16", "mobilenetv2")
#: ``--quick``: the trained networks (small; a few minutes in all).
QUICK_MODELS = ("digits-cnn", "digits-resnet", "mnist-lenet5", "mnist-resnet")
#: Networks whose gap is decomposed by default (when selected).
DECOMPOSED = ("digits-cnn", "mnist-lenet5", "mnist-resnet", "resnet18-cifar")
#: The papers' claims vs ISAAC (speedup, energy saving), /work/shared/REFERENCE.md.
CLAIMS = {"ivq": ("IVQ (TCAD 2022)", 19.7, 17.7), "bwq": ("BWQ (TCAD 2024)", 6.08, 17.47)}
#: Table heading -> budget: a ``--budget`` word of compare (the baseline's crossbar units,
#: or its area, given to both sides; docs/performance.md section 7), or a multiple of the
#: baseline's area. At the baseline's own footprint the baseline has no unit to spare for
#: copies while a denser mapping has, so those ratios include balancing the baseline
#: cannot do; at twice its area both sides balance (the measured budgets table there).
BUDGETS = {"equal crossbars": "baseline", "equal area": "baseline-area", "2x area": 2.0}
#: Short column names of the budgets in the table cells.
BUDGET_SHORT = {"equal crossbars": "xbars", "equal area": "area", "2x area": "2x area"}
#: The decomposition's fixed area, in multiples of the largest one-copy area of its runs:
#: at 1 x the run with that footprint has no unit to spare for copies while the others do,
#: so every switch would also move the balancing; from about 2 x on every run balances its
#: pipeline (docs/performance.md section 7, the measured budgets table).
AREA_FACTOR = 2
#: Seed of the synthetic weights that replace a trained network's in the decomposition.
SYNTHETIC_SEED = 0
SECTION = "results"


# ------------------------------------------------------------------------------ runs
def synthetic_weights(model, seed: int = SYNTHETIC_SEED):
    """Return ``model`` with every compute layer's weights replaced by He-normal ones.

    Drawn as :mod:`bitline.sw.models.synthetic` draws them (``standard_normal *
    sqrt(2 / fan_in)``, one ``default_rng(seed)`` over the layers in order); biases, shapes
    and the graph stay. The trained network's "synthetic twin" isolates what trained
    weights (their bit-level sparsity) contribute.
    """
    rng = np.random.default_rng(seed)
    layers = []
    for layer in model.layers:
        if layer.is_compute:
            fan_in = int(np.prod(layer.weight.shape[1:]))
            weight = rng.standard_normal(layer.weight.shape, dtype=np.float32)
            layer = replace(layer, weight=weight * np.float32(np.sqrt(2.0 / fan_in)))
        layers.append(layer)
    return replace(model, layers=layers, name=f"{model.name}-synthetic")


class Workload:
    """One network, its calibration inputs and its compiled runs (each compiled once)."""

    def __init__(self, name: str):
        from bitline.sw.flow import calibration_inputs, is_synthetic, resolve_target

        self.name = name
        self.synthetic = is_synthetic(name)
        model = resolve_target(name).require("model", "results")
        self.calib_x, self.calib_label = calibration_inputs(model, None, model_name=name)
        self._models = {"own": model}
        self._qmodels: dict[str, dict] = {"own": {}, "synthetic": {}}
        self._reports: dict[tuple, object] = {}
        self._variants: dict[int, dict] = {}    # id(report) -> its spread placements

    @property
    def kind(self) -> str:
        """``synthetic`` or ``trained``: how the table labels the network's weights."""
        return "synthetic" if self.synthetic else "trained"

    def model(self, weights: str = "own"):
        """The IR model with its own weights, or (``"synthetic"``) :func:`synthetic_weights`."""
        if weights not in self._models:
            self._models[weights] = synthetic_weights(self._models["own"])
        return self._models[weights]

    def report(self, strategy: str, spec: str, config, encoding: str = "differential",
               weights: str = "own"):
        """Return the :class:`~bitline.sw.perf.PerfReport` of one run (compiled once)."""
        from bitline.sw.flow import compile_model
        from bitline.sw.perf import analyze

        key = (weights, strategy, spec, config.digest, encoding)
        if key not in self._reports:
            try:
                result = compile_model(self.model(weights), strategy, spec, config,
                                       self.calib_x, qmodels=self._qmodels[weights],
                                       encoding=encoding)
            except ValueError as error:   # e.g. more units than any config holds
                self._reports[key] = error
            else:
                from bitline.sw.flow.compile import spread_placements

                report = analyze(result.program, result.qmodel, labels={"model": self.name})
                self._reports[key] = report
                self._variants[id(report)] = spread_placements(result.program, result.qmodel,
                                                               report=report)
        if isinstance(self._reports[key], ValueError):
            raise self._reports[key]
        return self._reports[key]

    def variants(self, report) -> dict | None:
        """The spread placements the allocator may choose for ``report``'s layers
        (:func:`bitline.sw.flow.compile.spread_placements`, as ``compare`` offers them)."""
        return None if report is None else self._variants[id(report)]


def _row(label: str, strategy: str, spec: str, config_name: str, encoding: str,
         report, error: str | None = None) -> dict:
    """A row as compare makes it (``None`` metrics and ``error`` for a failed run)."""
    row = {"strategy": label, "mapping": strategy, "quant": spec, "config": config_name,
           "encoding": encoding, "error": error}
    if report is None:
        return {**row, **dict.fromkeys(("cycles", "energy_pj", "crossbars", "area_mm2"))}
    return {**row, "cycles": report.cycles, "energy_pj": report.total_energy_pj,
            "crossbars": report.crossbars,
            "area_mm2": float(sum(report.used_area_mm2.values()))}


def compare_rows(work: Workload, config) -> dict[str, list[dict]]:
    """Return ``{budget heading: rows}``: compare's rows of the network at each budget.

    The rows are those of ``compare_strategies(model, calib_x=...)`` with the default rows,
    specs and baselines (``strategy``, ``quant``, ``config``, ``encoding``, ``cycles``,
    ``energy_pj``, ``crossbars``, ``area_mm2``, the ``*_vs_<ref>`` ratios and the pipeline
    fields), once per :data:`BUDGETS` entry.
    """
    from bitline.sw.flow import BASELINES, DEFAULT_ROWS, VARIANTS, strategy_specs
    from bitline.sw.flow.compare import add_pipeline, add_ratios

    specs = strategy_specs(DEFAULT_ROWS)
    runs = [(name, VARIANTS.get(name)) for name in DEFAULT_ROWS]
    runs += [(record.label, record) for record in BASELINES]
    rows, reports = [], []
    for label, record in runs:
        if record is None:
            strategy, spec, run_config, name, encoding = (label, specs[label], config, "bwq",
                                                          "differential")
        else:
            strategy, encoding = record.strategy, record.encoding
            spec = specs.get(label, record.spec)
            run_config, name = record.config(config), record.config_name(config, "bwq")
        try:
            report, error = work.report(strategy, spec, run_config, encoding), None
        except ValueError as failure:     # compare's keep_going: a row that says why
            report, error = None, str(failure)
        rows.append(_row(label, strategy, spec, name, encoding, report, error))
        reports.append(report)
    references = ("isaac", *(record.label for record in BASELINES))
    variants = [work.variants(report) for report in reports]
    add_ratios(rows, references)
    result = {}
    for heading, budget in BUDGETS.items():
        budget_rows = copy.deepcopy(rows)
        if isinstance(budget, str):
            add_pipeline(budget_rows, reports, budget, baselines=references, variants=variants)
        else:       # a multiple of each baseline's area, one baseline at a time
            by_label = dict(zip((row["strategy"] for row in rows), reports))
            for name in references:
                if by_label[name] is None:        # the baseline itself failed
                    for row in budget_rows:
                        row[f"throughput_speedup_vs_{name}"] = None
                    continue
                scratch = copy.deepcopy(rows)
                add_pipeline(scratch, reports, _area_budget(by_label[name], budget),
                             baselines=(name,), variants=variants)
                key = f"throughput_speedup_vs_{name}"
                for row, done in zip(budget_rows, scratch):
                    row[key] = done[key]
        result[heading] = budget_rows
    return result


def _area_budget(report, factor: float):
    """``factor`` times the area of the units of ``report`` (an ``area:`` budget)."""
    from bitline.sw.perf.pipeline import Budget

    return Budget("area", factor * float(sum(report.used_area_mm2.values())))


# --------------------------------------------------------------------- decomposition
@dataclass(frozen=True)
class Side:
    """One side of a decomposition step: a run and the weights it uses."""

    strategy: str
    spec: str
    config: object
    encoding: str = "differential"
    weights: str = "own"


@dataclass(frozen=True)
class Step:
    """The ratio of BWQ's side over the baseline's after one switch."""

    factor: str
    change: str
    speedup: float            # throughput ratio (pipeline at the area, or one copy each)
    energy_saving: float      # energy per image of the baseline / of BWQ's side


def _throughput(work: Workload, report, budget) -> float:
    from bitline.sw.perf import pipeline_report

    return pipeline_report(report, budget, variants=work.variants(report)).throughput_ips


def _area(report) -> float:
    return float(sum(report.used_area_mm2.values()))


def _switches(work: Workload, config) -> list[tuple[str, str, Side, Side]]:
    """``(factor, change, BWQ's side, baseline's side)`` after each switch of
    :func:`decompose`, the start first."""
    from bitline.hw.spec.config import preset
    from bitline.sw.flow import VARIANTS
    from bitline.sw.flow.baselines import accumulator_bits, baseline

    paper = baseline("isaac-paper")
    ours = Side("bwq", "bwq3", config)
    base = Side(paper.strategy, paper.spec, paper.config(config), paper.encoding)
    isaac_8b = preset("isaac").replace(max_weight_bits=8, max_act_bits=8,
                                       acc_bits=accumulator_bits(8, 8))
    weights = (
        ("weights", "bwq3 -> bwq2 average bits (synthetic network)", {"spec": "bwq2-a4"}, {})
        if work.synthetic else
        ("weights", "trained -> synthetic (He-normal, same shapes)", {"weights": "synthetic"},
         {"weights": "synthetic"}))
    changes = [
        ("baseline bit width", "16/16 -> 8/8 bits", {}, {"spec": "int8", "config": isaac_8b}),
        ("baseline hardware", "isaac preset -> OU preset (bwq)", {}, {"config": config}),
        ("baseline encoding", "offset -> differential (= isaac-ou-8b)", {},
         {"encoding": "differential"}),
        ("activation compression", "bwq -> bwq-a", {"spec": VARIANTS["bwq-a"].spec}, {}),
        weights,
    ]
    states = [("start", "bwq vs isaac-paper", ours, base)]
    for factor, change, ours_change, base_change in changes:
        ours, base = replace(ours, **ours_change), replace(base, **base_change)
        states.append((factor, change, ours, base))
    return states


def decompose(work: Workload, config) -> tuple[float, list[Step]]:
    """Switch one factor at a time from ``bwq`` vs ``isaac-paper`` and re-run after each.

    The switches, applied cumulatively in this order (each row keeps the earlier ones):

    1. the baseline's bit width: 16-bit weights and inputs -> 8/8 (``int8``; 32-bit
       accumulators), still on the ``isaac`` preset with the offset encoding;
    2. the baseline's hardware: the ``isaac`` preset (128 rows per read, 2-bit cells, one
       8-bit ADC per crossbar) -> the compared OU preset (``bwq``), still offset-encoded;
    3. the baseline's weight encoding: offset -> differential (now exactly ``isaac-ou-8b``);
    4. BWQ's activation compression: ``bwq`` -> ``bwq-a`` (block-wise 4 of 8 bits);
    5. the weights: a trained network's weights -> synthetic He-normal ones of the same
       shapes on both sides (:func:`synthetic_weights`); for a synthetic network, BWQ's
       average weight bits 3 -> 2 instead (trained low-bit weights are what it would have);
    6. the copies: both sides at the area below -> one copy of every layer.

    Every run is compiled and analyzed; the speedup is the ratio of layer-pipeline
    throughputs with both sides at one **fixed area**, :data:`AREA_FACTOR` times the
    largest one-copy area of any run of the decomposition (every run fits and balances its
    pipeline; no step changes the budget, so no factor is a budget change in disguise),
    and the energy saving the ratio of energies per image.
    Returns ``(area in mm2, steps)``: the start and one :class:`Step` per switch.
    """
    from bitline.sw.perf.pipeline import Budget

    states = [(factor, change, *(work.report(side.strategy, side.spec, side.config,
                                             side.encoding, side.weights)
                                 for side in (ours, base)))
              for factor, change, ours, base in _switches(work, config)]
    area = AREA_FACTOR * max(_area(report) for *_, ours, base in states
                             for report in (ours, base))
    budget = Budget("area", area)
    steps = [Step(factor, change,
                  _throughput(work, ours, budget) / _throughput(work, base, budget),
                  base.total_energy_pj / ours.total_energy_pj)
             for factor, change, ours, base in states]
    *_, ours, base = states[-1]
    steps.append(Step("copies", f"{area:.3f} mm2 -> one copy per layer",
                      _throughput(work, ours, ours.crossbars)
                      / _throughput(work, base, base.crossbars),
                      base.total_energy_pj / ours.total_energy_pj))
    return area, steps


# ---------------------------------------------------------------------------- tables
#: The compared rows of the tables (the strategies and bwq-a), in order.
def _compared(rows: list[dict]) -> list[dict]:
    from bitline.sw.flow import BASELINES

    names = {record.label for record in BASELINES}
    return [row for row in rows if row["strategy"] not in names]


def _x(value) -> str:
    """A ratio cell: ``1.23x``, or ``-`` (no pipeline: one copy of every layer does not
    fit the baseline's budget)."""
    return "-" if value is None else f"{value:.2f}x"


def _claim(row: dict) -> str:
    paper = "ivq" if row["mapping"].startswith("ivq") else row["mapping"]
    if paper not in CLAIMS:
        return ""
    _, speedup, energy = CLAIMS[paper]
    return f"{speedup:g}x / {energy:g}x"


def _markdown(headers: list[str], cells: list[list[str]], text_columns: int = 2) -> str:
    align = ["---" if index < text_columns else "---:" for index in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])


def _speedup_cells(rows_by_budget: dict[str, dict], base: str) -> str:
    """``xbars / area / 2x area`` speedups of one row against ``base``."""
    return " / ".join(_x(row[f"throughput_speedup_vs_{base}"])
                      for row in rows_by_budget.values())


def _budget_rows(tables: dict[str, list[dict]], label: str) -> dict[str, dict]:
    """``{budget heading: row}`` of the row labelled ``label``."""
    return {heading: next(row for row in rows if row["strategy"] == label)
            for heading, rows in tables.items()}


def network_table(tables: dict[str, list[dict]]) -> str:
    """One network's table: every compared row against every named baseline.

    Per baseline ``B``: the throughput speedup at each of :data:`BUDGETS` (both sides at
    ``B``'s crossbar units, its area, twice its area; copies allocated) and the energy
    saving per image.
    """
    from bitline.sw.flow import BASELINES

    short = " / ".join(BUDGET_SHORT[heading] for heading in tables)
    headers = ["row", "weights / acts"]
    headers += [f"vs {record.label}: {short} / energy" for record in BASELINES]
    headers.append("paper's claim vs ISAAC")
    cells = []
    for row in _compared(tables["equal crossbars"]):
        by_budget = _budget_rows(tables, row["strategy"])
        cell = [row["strategy"] + (" (does not fit)" if row["error"] else ""), row["quant"]]
        for record in BASELINES:
            cell.append(f"{_speedup_cells(by_budget, record.label)} / "
                        f"{_x(row[f'energy_saving_vs_{record.label}'])}")
        cells.append([*cell, _claim(row)])
    return _markdown(headers, cells)


def baselines_table(tables: dict[str, list[dict]]) -> str:
    """The baselines' own figures: crossbars, area, cycles and energy per image (one copy
    of every layer)."""
    from bitline.sw.flow import BASELINES

    names = [record.label for record in BASELINES]
    rows = [row for row in tables["equal crossbars"] if row["strategy"] in names]
    cells = [[row["strategy"], row["quant"], row["config"], row["encoding"],
              *([f"does not fit: {row['error']}", "-", "-", "-"] if row["error"] else
                [f"{row['crossbars']:,}", f"{row['area_mm2']:.3f}", f"{row['cycles']:,}",
                 f"{row['energy_pj'] / 1e6:,.3f}"])] for row in rows]
    return _markdown(["baseline", "weights / acts", "config", "encoding", "crossbars",
                      "area (mm2)", "cycles / image", "energy (uJ / image)"], cells, 4)


def decomposition_table(decomposition: tuple[float, list[Step]]) -> str:
    """The decomposition: the ratio after each switch and the factor it contributes."""
    _, steps = decomposition
    cells, previous = [], None
    for step in steps:
        factors = ("" if previous is None else
                   f"x{step.speedup / previous.speedup:.2f} / "
                   f"x{step.energy_saving / previous.energy_saving:.2f}")
        cells.append([step.factor, step.change, f"{step.speedup:.2f}x",
                      f"{step.energy_saving:.2f}x", factors])
        previous = step
    return _markdown(["switch", "change", "speedup", "energy saving",
                      "factor (speedup / energy)"], cells)


#: The baselines the summary, the plot and the reading use: ISAAC's published widths on
#: the OU hardware (how both papers compare) and ISAAC as published.
SUMMARY_BASELINES = ("isaac-ou-16b", "isaac-paper")
#: The rows of the summary: the fastest IVQ strategy, BWQ and BWQ-A.
SUMMARY_ROWS = ("best IVQ", "bwq", "bwq-a")


def best_ivq(tables: dict[str, list[dict]], base: str) -> str:
    """The IVQ strategy with the highest throughput speedup against ``base``: at twice its
    area (both sides balance), ties and rows that do not fit decided at its area, then at
    its crossbars; remaining ties go to the earlier strategy."""
    key = f"throughput_speedup_vs_{base}"
    ivq = [row["strategy"] for row in tables["equal crossbars"]
           if row["mapping"].startswith("ivq")]
    order = [heading for heading in ("2x area", "equal area", "equal crossbars")
             if heading in tables]
    return max(ivq, key=lambda label: tuple(_budget_rows(tables, label)[heading][key] or 0.0
                                            for heading in order))


def _ratios(tables: dict, base: str, index: int) -> tuple[str, dict, float]:
    """``(label, {budget heading: speedup}, energy saving)`` of the ``index``-th row of
    :data:`SUMMARY_ROWS` against ``base``."""
    label = best_ivq(tables, base) if index == 0 else SUMMARY_ROWS[index]
    by_budget = _budget_rows(tables, label)
    speedups = {heading: row[f"throughput_speedup_vs_{base}"]
                for heading, row in by_budget.items()}
    return label, speedups, by_budget["equal crossbars"][f"energy_saving_vs_{base}"]


def summary_table(results: dict) -> str:
    """Per network: best IVQ, bwq and bwq-a against :data:`SUMMARY_BASELINES` (speedup at
    each of :data:`BUDGETS`, energy saving), and the claims."""
    headers = ["network", "weights"]
    for name in SUMMARY_BASELINES:
        headers += [f"{row} vs {name}" for row in SUMMARY_ROWS]
    cells = []
    for name, (work, tables, _) in results.items():
        cell = [name, work.kind]
        for base in SUMMARY_BASELINES:
            for index in range(len(SUMMARY_ROWS)):
                label, speedups, energy = _ratios(tables, base, index)
                cell.append(" / ".join(_x(value) for value in speedups.values())
                            + f" / {_x(energy)}"
                            + (f" ({label})" if index == 0 and energy is not None else ""))
        cells.append(cell)
    ivq, bwq = CLAIMS["ivq"], CLAIMS["bwq"]
    claim = [f"{ivq[1]:g}x / {ivq[2]:g}x", f"{bwq[1]:g}x / {bwq[2]:g}x",
             f"{bwq[1]:g}x / {bwq[2]:g}x"]
    cells.append(["papers' claims (vs ISAAC)", "", *claim * len(SUMMARY_BASELINES)])
    return _markdown(headers, cells)


def plot_results(results: dict, path: Path) -> Path:
    """Speedup at each of :data:`BUDGETS` and energy saving of best IVQ, bwq and bwq-a per
    network against each of :data:`SUMMARY_BASELINES` (one row of panels each), the
    papers' claims as dashed lines (log scale; a missing bar: the row does not fit)."""
    from bitline.sw.flow.report import pyplot, save_figure

    plt = pyplot()
    names = list(results)
    panels = [(f"speedup, {heading}", heading, 1) for heading in BUDGETS]
    panels.append(("energy saving", None, 2))
    figure, axes = plt.subplots(len(SUMMARY_BASELINES), len(panels), squeeze=False,
                                figsize=(len(panels) * max(4.0, 0.8 * len(names) + 1.5),
                                         3.6 * len(SUMMARY_BASELINES)))
    for axes_row, base in zip(axes, SUMMARY_BASELINES):
        for axis, (title, heading, claim_index) in zip(axes_row, panels):
            for index, label in enumerate(SUMMARY_ROWS):
                ratios = [_ratios(results[name][1], base, index) for name in names]
                values = [energy if heading is None else speedups[heading]
                          for _, speedups, energy in ratios]
                values = [np.nan if value is None else value for value in values]
                axis.bar(np.arange(len(names)) + (index - 1) * 0.27, values, 0.27, label=label)
            for paper, style in (("ivq", "--"), ("bwq", ":")):
                axis.axhline(CLAIMS[paper][claim_index], color="black", linestyle=style,
                             linewidth=0.9, label=f"{CLAIMS[paper][0]} claim")
            axis.axhline(1.0, color="grey", linewidth=0.6)
            axis.set_yscale("log")
            axis.set_xticks(range(len(names)),
                            [f"{name}\n({results[name][0].kind})" for name in names],
                            fontsize="x-small", rotation=30, ha="right")
            axis.set_ylabel(f"{title} (x)", fontsize="small")
            axis.set_title(f"{title} vs {base}", fontsize=9)
            axis.grid(True, axis="y", alpha=0.3)
    axes[0][0].legend(fontsize="xx-small", ncol=2)
    try:
        return save_figure(figure, path)
    finally:
        plt.close(figure)


# --------------------------------------------------------------------------- reading
def _range(values: list[float]) -> str:
    low, high = min(values), max(values)
    return f"{low:.2f}x" if f"{low:.2f}" == f"{high:.2f}" else f"{low:.2f}x-{high:.2f}x"


def reading(results: dict) -> str:
    """Generated sentences: which claims the measured ratios reach, per baseline and
    budget, and the largest factors of each decomposition (the reasoning is in the text
    around the block)."""
    lines = []
    for base in SUMMARY_BASELINES:
        for paper, index in (("ivq", 0), ("bwq", 1)):
            name, claim_speedup, claim_energy = CLAIMS[paper]
            ratios = [_ratios(tables, base, index) for _, tables, _ in results.values()]
            savings = [energy for *_, energy in ratios if energy is not None]
            speed = []
            for heading in BUDGETS:
                values = [speedups[heading] for _, speedups, _ in ratios]
                fits = [value for value in values if value is not None]
                text = (f"{heading} {_range(fits) if fits else '-'} (claim reached on "
                        f"{sum(value >= claim_speedup for value in fits)}")
                missing = len(values) - len(fits)
                speed.append(text + (f"; {missing} do not fit)" if missing else ")"))
            lines.append(
                f"* {name} vs ISAAC ({claim_speedup:g}x / {claim_energy:g}x), measured "
                f"{SUMMARY_ROWS[index]} vs `{base}` on {len(ratios)} networks: speedup at "
                f"{', at '.join(speed)}; energy saving "
                f"{_range(savings) if savings else '-'} (claim reached on "
                f"{sum(value >= claim_energy for value in savings)}"
                + (f"; {len(ratios) - len(savings)} without a baseline)"
                   if len(savings) < len(ratios) else ")") + ".")
    for name, (_, _, decomposition) in results.items():
        if decomposition is None:
            continue
        area, steps = decomposition
        moves = [(step.factor, step.speedup / before.speedup,
                  step.energy_saving / before.energy_saving)
                 for before, step in itertools.pairwise(steps)]
        speed = max(moves, key=lambda move: abs(np.log(move[1])))
        energy = max(moves, key=lambda move: abs(np.log(move[2])))
        lines.append(f"* {name}: bwq vs isaac-paper at {area:.3f} mm2 starts at "
                     f"{steps[0].speedup:.2f}x / "
                     f"{steps[0].energy_saving:.2f}x; the largest speedup factor is the "
                     f"{speed[0]} (x{speed[1]:.2f}), the largest energy factor the "
                     f"{energy[0]} (x{energy[2]:.2f}).")
    return "\n".join(lines)


# --------------------------------------------------------------------------- outputs
_HOW = ("Rows: the strategies with their default specs (isaac int8, ivq-* varied4, bwq bwq3, "
        "bwq-a bwq3-a4) on the `bwq` preset (128x128 1-bit cells, 9x8 OU, 4-bit ADCs); "
        "baselines as in docs/performance.md section 6. Each cell is "
        "*throughput speedup at equal crossbars / at equal area / at twice the area / energy "
        "saving per image* against the named baseline: both sides get the baseline's "
        "crossbar units (or their area, or twice it) and the allocator gives every layer "
        "its copies and its placement, dense or spread (docs/performance.md section 7; at the baseline's own footprint it has "
        "no unit to spare for copies while a denser mapping has, so the first two include "
        "balancing the baseline cannot do); the energy per image does not depend on "
        "copies. `-`: one copy of every layer of the row does not fit the budget, or a run "
        "needs more units than any configuration holds (the baselines table says which).")


def _decomposed(results: dict) -> list[str]:
    return [name for name, (_, _, steps) in results.items() if steps is not None]


def _decomposition_heading(name: str, work: Workload, area: float) -> str:
    return (f"Decomposition of bwq vs isaac-paper on {name} ({work.kind} weights): the "
            "switches are applied cumulatively, top to bottom; speedup = ratio of "
            f"layer-pipeline throughputs with both sides at {area:.3f} mm2 ({AREA_FACTOR} x "
            "the largest one-copy area of any run below: every run balances its pipeline), "
            "the last row with one copy of every layer; "
            "factor = ratio after the switch / before it.")


def document(results: dict, command: str, plot_link: str) -> str:
    """The text of docs/results.md: summary, plot, every network's tables, decompositions."""
    parts = [
        "# Results: strategies against ISAAC baselines",
        "",
        (f"Generated by `{command}` (scripts/results.py); do not edit by hand. The "
         "README's section \"Performance and energy: strategies compared\" is generated by "
         "the same run."),
        "",
        _HOW,
        "",
        "## Summary",
        "",
        summary_table(results),
        "",
        f"![speedup at equal area and energy saving per network]({plot_link})",
        "",
        "## Reading",
        "",
        reading(results),
    ]
    for name, (work, tables, steps) in results.items():
        parts += ["", f"## {name} ({work.kind} weights)", "",
                  f"Calibration: {work.calib_label}.", "", network_table(tables), "",
                  "Baselines:", "", baselines_table(tables)]
        if steps is not None:
            parts += ["", _decomposition_heading(name, work, steps[0]), "",
                      decomposition_table(steps)]
    return "\n".join(parts) + "\n"


def readme_block(results: dict, plot_link: str) -> str:
    """The README block: the summary, the plot, two decompositions and the reading."""
    decomposed = _decomposed(results)
    shown = [name for name in ("resnet18-cifar", "mnist-resnet") if name in decomposed]
    shown = shown or decomposed[:2]
    parts = [
        (f"Networks: {', '.join(f'{name} ({results[name][0].kind})' for name in results)}. "
         "Best IVQ strategy (the fastest at twice the area), bwq and bwq-a against ISAAC at its "
         "published widths on the same OU hardware (`isaac-ou-16b`) and against ISAAC as "
         "published (`isaac-paper`); each cell is *throughput speedup at equal crossbars / "
         "at equal area / at twice the area / energy saving per image*, both sides at the "
         "baseline's crossbar units, its area or twice its area with layer copies "
         "(docs/performance.md section 7; `-`: the row does not fit the budget):"),
        "",
        summary_table(results),
        "",
        f"![speedup at equal area and energy saving per network]({plot_link})",
    ]
    for name in shown:
        work, _, steps = results[name]
        parts += ["", _decomposition_heading(name, work, steps[0]), "",
                  decomposition_table(steps)]
    parts += ["", reading(results), "",
              ("Every table (every strategy against every baseline, the baselines' own "
               "figures, every decomposition): docs/results.md.")]
    return "\n".join(parts)


def collect(models, decomposed, echo=print) -> dict:
    """Compile and measure every network: ``{name: (Workload, tables, decomposition)}``
    (tables: :func:`compare_rows`; decomposition: :func:`decompose`, or ``None``)."""
    from bitline.hw.spec.config import preset

    config = preset("bwq")
    results = {}
    for name in models:
        start = time.perf_counter()
        work = Workload(name)
        tables = compare_rows(work, config)
        steps = decompose(work, config) if name in decomposed else None
        results[name] = (work, tables, steps)
        echo(f"{name}: {time.perf_counter() - start:.1f} s")
    return results


def check_markers(readme: Path) -> None:
    """Raise ``click.UsageError`` unless ``readme`` has the block's markers (the block is
    never appended at the end of a file)."""
    from readme_sections import read_section  # scripts/ is on sys.path when run

    if not readme.is_file() or read_section(SECTION, readme) is None:
        raise click.UsageError(f"{readme}: no '<!-- begin {SECTION} -->' / "
                               f"'<!-- end {SECTION} -->' markers to replace")


def write(results: dict, readme: Path, doc: Path, plot: Path, command: str) -> None:
    """Write the plot, the document and the README block (links relative to each file)."""
    import os

    from readme_sections import replace_section  # scripts/ is on sys.path when run

    check_markers(readme)
    plot_results(results, plot)
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(document(results, command,
                            Path(os.path.relpath(plot, doc.parent)).as_posix()))
    replace_section(SECTION, readme_block(
        results, Path(os.path.relpath(plot, readme.parent)).as_posix()), readme)


def _names(text: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    if text is None:
        return default
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in MODELS]
    if unknown:
        raise click.BadParameter(f"unknown network {', '.join(map(repr, unknown))}; "
                                 f"choose among {', '.join(MODELS)}")
    return names


@click.command(help=__doc__.split("\n\n")[0])
@click.option("--models", default=None, help=f"Networks, comma-separated (default: all of "
              f"{', '.join(MODELS)}).")
@click.option("--quick", is_flag=True, help="Only the trained networks: "
              f"{', '.join(QUICK_MODELS)}.")
@click.option("--decompose", "decomposed", default=None,
              help=f"Networks to decompose (default: {', '.join(DECOMPOSED)}, if selected).")
@click.option("--readme", type=click.Path(path_type=Path), default=ROOT / "README.md",
              show_default=True, help="README whose 'results' block is replaced.")
@click.option("--doc", type=click.Path(path_type=Path), default=ROOT / "docs" / "results.md",
              show_default=True, help="Markdown file with every table.")
@click.option("--plot", type=click.Path(path_type=Path),
              default=ROOT / "docs" / "img" / "results.png", show_default=True,
              help="The plot (PNG).")
def main(models, quick, decomposed, readme, doc, plot):
    models = _names(models, QUICK_MODELS if quick else MODELS)
    decomposed = _names(decomposed, DECOMPOSED)
    check_markers(readme)         # before the minutes of compiling
    start = time.perf_counter()
    results = collect(models, decomposed, echo=lambda text: click.echo(text, err=True))
    command = "python scripts/results.py" + (
        "" if models == MODELS else f" --models {','.join(models)}")
    write(results, readme, doc, plot, command)
    click.echo(f"total: {time.perf_counter() - start:.1f} s; wrote {readme}, {doc}, {plot}",
               err=True)


if __name__ == "__main__":
    main()
