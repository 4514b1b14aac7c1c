"""``compare``: one comparison row per mapping strategy, with speedups and energy savings
against the ``isaac`` strategy row and the named ISAAC baselines (:mod:`.baselines`)."""

from __future__ import annotations

import numpy as np
from bitline.hw.spec.config import AcceleratorConfig, preset
from bitline.hw.spec.program import STRATEGIES
from bitline.sw.flow.baselines import BASELINES, VARIANTS
from bitline.sw.flow.compile import compile_model
from bitline.sw.flow.inputs import DEFAULT_PRESET

__all__ = ["DEFAULT_SPECS", "DEFAULT_ROWS", "ROW_NAMES", "BASELINES", "BASELINE_BUDGETS",
           "PIPELINE_FIELDS", "strategy_specs", "add_pipeline", "compare_strategies"]

#: ISAAC cannot use non-uniform schemes, so its weights are rolled back to uniform INT8;
#: the IVQ strategies map varied schemes (per-channel choice at a 4-bit average budget);
#: BWQ uses block-wise widths at a 3-bit average budget.
DEFAULT_SPECS: dict[str, str] = {
    "isaac": "int8",
    "ivq-naive": "varied4",
    "ivq-spatial": "varied4",
    "ivq-temporal": "varied4",
    "bwq": "bwq3",
}

#: The compared rows by default: every strategy, then BWQ with BWQ-A activations
#: (:data:`~bitline.sw.flow.baselines.VARIANTS`), so weight-only and weight + activation
#: compression show separately.
DEFAULT_ROWS: tuple[str, ...] = (*STRATEGIES, *VARIANTS)

#: Every name ``--strategies`` accepts: the strategies and the variant rows.
ROW_NAMES: tuple[str, ...] = DEFAULT_ROWS


def strategy_specs(strategies, overrides=()) -> dict[str, str]:
    """Return the spec of each strategy: :data:`DEFAULT_SPECS` with ``overrides`` applied.

    A variant row (``bwq-a``) starts from its record's spec. Each override is ``"SPEC"``
    (every strategy) or ``"STRATEGY=SPEC"``; later ones win.

    Raises
    ------
    ValueError
        If an override names a strategy that is not being compared.
    """
    specs = {strategy: VARIANTS[strategy].spec if strategy in VARIANTS
             else DEFAULT_SPECS.get(strategy, "int8") for strategy in strategies}
    for override in overrides:
        if "=" in override:
            strategy, spec = (part.strip() for part in override.split("=", 1))
            if strategy not in specs:
                raise ValueError(f"--quant {override!r}: strategy {strategy!r} is not among "
                                 f"the compared strategies ({', '.join(specs)})")
            specs[strategy] = spec
        else:
            specs = {strategy: override.strip() for strategy in specs}
    return specs


_METRICS = ("cycles", "latency_s", "energy_pj", "ou_reads", "adc_conversions", "crossbars",
            "active_crossbars", "cell_utilization", "ou_fill", "efficiency",
            "cycle_efficiency", "area_mm2")


def _row(label: str, strategy: str, spec: str, config_name: str, report) -> dict:
    row = {"strategy": label, "mapping": strategy, "quant": spec, "config": config_name}
    if report is None:
        return {**row, **dict.fromkeys(_METRICS)}
    return {
        **row,
        "cycles": report.cycles,
        "latency_s": report.latency_s,
        "energy_pj": report.total_energy_pj,
        "ou_reads": report.ou_reads,
        "adc_conversions": report.adc_conversions,
        "crossbars": report.crossbars,
        "active_crossbars": report.active_crossbars,
        "cell_utilization": report.cell_utilization,
        "ou_fill": report.ou_fill,
        "efficiency": report.efficiency,
        "cycle_efficiency": report.cycle_efficiency,
        "area_mm2": float(sum(report.used_area_mm2.values())),
    }


#: Pipeline fields of a row (:func:`add_pipeline`).
PIPELINE_FIELDS = ("budget", "budget_units", "pipeline_units", "throughput_ips",
                   "pipeline_latency_s", "energy_per_image_pj", "bottleneck",
                   "bottleneck_cycles", "copies", "placements", "stage_cycles",
                   "pipeline_error")

#: ``--budget`` words for "the resources of each baseline, given to both sides".
BASELINE_BUDGETS = ("baseline", "baseline-area")


def _baseline_budget(kind: str, report):
    """Return the budget that gives a row the resources of the baseline of ``report``."""
    from bitline.sw.perf.pipeline import Budget

    if kind == "baseline":
        return Budget("xbars", report.crossbars)
    return Budget("area", sum(report.used_area_mm2.values()))


def _pipeline(report, budget, variants=None) -> tuple[object, str | None]:
    """Return ``(PipelineReport or None, error)`` of ``report`` at ``budget``."""
    from bitline.sw.perf.pipeline import pipeline_report

    try:
        return pipeline_report(report, budget, variants=variants), None
    except ValueError as error:
        return None, str(error)


def add_pipeline(rows: list[dict], reports: list, budget=None, *,
                 baselines: tuple[str, ...] = ("isaac",), variants: list | None = None) -> None:
    """Add the layer pipeline at a budget to every row (:mod:`bitline.sw.perf.pipeline`).

    ``budget`` is a :class:`~bitline.sw.perf.pipeline.Budget` or ``--budget`` text:
    ``xbars:N`` / ``area:MM2`` (every row gets that budget), ``baseline`` (the default: the
    crossbar units of each baseline, one copy of each of its layers, given to both sides:
    equal crossbars) or ``baseline-area`` (the area of each baseline's units: equal area).
    Each row gets :data:`PIPELINE_FIELDS` at the budget of the first baseline present
    (``copies`` and ``stage_cycles``: per layer, in layer order; ``pipeline_error``: why a
    row has no pipeline, e.g. one copy of each layer needs more than the budget;
    ``placements``: per layer, ``dense`` or ``spread-<s>``) and, per baseline ``B`` of
    ``baselines`` present, ``throughput_speedup_vs_B``: the ratio of throughputs, both
    sides at ``B``'s budget.
    ``reports`` are the rows' :class:`~bitline.sw.perf.PerfReport` (``None`` for failed
    rows); ``variants``, aligned with them, the spread placements each row's allocator may
    choose (:func:`~bitline.sw.flow.compile.spread_placements`; ``None``: dense only).
    """
    from bitline.sw.perf.pipeline import parse_budget

    word = budget if budget in BASELINE_BUDGETS else ("baseline" if budget is None else None)
    if isinstance(budget, str) and word is None:
        budget = parse_budget(budget)
    by_label = {row["strategy"]: report for row, report in zip(rows, reports)}
    present = [name for name in baselines if by_label.get(name) is not None]
    budgets = {name: (_baseline_budget(word, by_label[name]) if word else budget)
               for name in present}
    primary = budgets[present[0]] if present else budget if word is None else None
    variants = list(variants) if variants is not None else [None] * len(reports)
    extra = {id(report): options for report, options in zip(reports, variants)}
    for row, report in zip(rows, reports):
        row.update(dict.fromkeys(PIPELINE_FIELDS))
        if report is None:
            continue
        pipe, error = _pipeline(report, primary if primary is not None else report.crossbars,
                                extra[id(report)])
        row["pipeline_error"] = error
        if pipe is None:
            continue
        label = primary.label if primary is not None else f"xbars:{report.crossbars}"
        if word and present:
            label += f" ({present[0]})"
        row.update(budget=label, budget_units=pipe.allocation.budget_units,
                   pipeline_units=pipe.units, throughput_ips=pipe.throughput_ips,
                   pipeline_latency_s=pipe.pipeline_latency_s,
                   energy_per_image_pj=pipe.energy_per_image_pj, bottleneck=pipe.bottleneck,
                   bottleneck_cycles=pipe.bottleneck_cycles, copies=pipe.copies,
                   placements=pipe.placements,
                   stage_cycles=dict(zip(pipe.copies, pipe.allocation.stage_cycles)))
    for name in baselines:
        base_pipe = (_pipeline(by_label[name], budgets[name], extra[id(by_label[name])])[0]
                     if name in budgets else None)
        for row, report in zip(rows, reports):
            pipe = (_pipeline(report, budgets[name], extra[id(report)])[0]
                    if report is not None and base_pipe is not None else None)
            usable = pipe is not None and base_pipe.throughput_ips and pipe.throughput_ips
            row[f"throughput_speedup_vs_{name}"] = (
                pipe.throughput_ips / base_pipe.throughput_ips if usable else None)


def compare_strategies(model, strategies=DEFAULT_ROWS, specs: dict[str, str] | None = None, *,
                       config: AcceleratorConfig | None = None, calib_x: np.ndarray,
                       xbars: str | int = "auto", baselines=True,
                       labels: dict | None = None, keep_going: bool = False,
                       budget=None, costs=None, per_layer: bool = False,
                       spread: bool = True) -> list[dict]:
    """Compile ``model`` under every strategy and return one comparison row per run.

    Each row has ``strategy``, ``cycles``, ``energy_pj``, ``ou_reads``,
    ``adc_conversions``, ``crossbars``, ``speedup_vs_isaac`` and
    ``energy_saving_vs_isaac`` (relative to the ``isaac`` row on the same config; ``None``
    when ``isaac`` is not compared), ``efficiency``, plus ``mapping``, ``quant``,
    ``config``, ``latency_s``, ``area_mm2``, ``labels``, ``sizing`` (the
    :class:`Sizing` records as dicts), ``notes`` (one line per record), ``error`` and the
    step times ``size_s``, ``quantize_s``, ``map_s``, ``encoding`` (the weight encoding:
    ``differential``, or ``offset`` for ``isaac-paper``). ``strategies`` may name variant rows
    (``bwq-a``: :data:`~bitline.sw.flow.baselines.VARIANTS`), mapped with their record's
    strategy and hardware. ``baselines`` is ``True`` (every record of
    :data:`~bitline.sw.flow.baselines.BASELINES`), ``False`` or a sequence of baseline
    labels: their rows follow, each on its record's hardware and spec whatever the
    overrides, and every row gets ``speedup_vs_<label>`` / ``energy_saving_vs_<label>``
    relative to each (``speedup_vs_isaac-paper``). Quantized models are shared between
    runs with the same spec, and a run identical to an earlier one (strategy, spec,
    config) is compiled once. With ``keep_going`` a run that fails (e.g. a network needs
    more units than any config holds) gives a row with ``error`` set and ``None`` metrics
    instead of raising (an invalid spec still raises before any run). Every row also gets
    the layer pipeline at ``budget`` (default: the ``isaac`` row's crossbars for every
    row), see :func:`add_pipeline`; with ``spread`` (the default) the allocator may give a
    layer a spread placement (:func:`~bitline.sw.flow.compile.spread_placements`), without
    it every layer is dense. ``costs`` is the :class:`~bitline.sw.perf.CostModel` that prices
    every row (default ISAAC's); with ``per_layer`` every row gets ``layers``, one record
    per layer (:func:`bitline.sw.flow.report.layer_records`; empty for a failed run).
    """
    from bitline.sw.flow.compile import spread_placements
    from bitline.sw.flow.report import layer_records
    from bitline.sw.perf import ISAAC_COSTS, analyze
    from bitline.sw.perf.pipeline import parse_budget

    if isinstance(budget, str) and budget not in BASELINE_BUDGETS:
        budget = parse_budget(budget)   # a bad budget is a usage error, before any run
    from bitline.sw.quant import load_spec

    config = config or preset(DEFAULT_PRESET)
    specs = specs or strategy_specs(strategies)
    config_name = next((name for name in ("bwq", "isaac") if preset(name) == config), "custom")
    runs = _runs(strategies, specs, config, config_name, _baselines(baselines))
    for _, _, spec, _, _, _ in runs:
        load_spec(spec)             # a bad spec is a usage error, not a failed row
    qmodels: dict = {}
    # A run identical to an earlier one reuses its report (not its program: programs are
    # large, and a whole-network one alive across the other runs doubles the peak memory).
    done: dict = {}
    rows: list[dict] = []
    reports: list = []
    variants: list = []
    for label, strategy, spec, run_config, run_config_name, encoding in runs:
        report = options = None
        key = (strategy, str(spec), run_config.digest, encoding)
        try:
            if key not in done:
                result = compile_model(model, strategy, spec, run_config, calib_x,
                                       xbars=xbars, qmodels=qmodels, encoding=encoding)
                analyzed = analyze(result.program, result.qmodel, costs=costs or ISAAC_COSTS)
                # The spread variants are counted while the program is alive (their
                # placements, not their programs, are kept).
                done[key] = (analyzed,
                             spread_placements(result.program, result.qmodel,
                                               costs=costs or ISAAC_COSTS, report=analyzed)
                             if spread else None,
                             dict(sizing=[record.to_dict() for record in result.sizing],
                                  notes=result.notes, size_s=result.size_s,
                                  quantize_s=result.quantize_s, map_s=result.map_s))
                del result
            report, options, fields = done[key]
        except ValueError as error:
            if not keep_going:
                raise
            row = _row(label, strategy, spec, run_config_name, None)
            row.update(labels=dict(labels or {}), sizing=[], notes=[], size_s=None,
                       quantize_s=None, map_s=None, error=str(error))
        else:
            row = _row(label, strategy, spec, run_config_name, report)
            row.update(labels=dict(labels or {}), **fields, error=None)
        row["encoding"] = encoding
        if per_layer:
            row["layers"] = layer_records(report) if report is not None else []
        rows.append(row)
        reports.append(report)
        variants.append(options)
    references = ("isaac", *(run.label for run in _baselines(baselines)))
    add_ratios(rows, references)
    add_pipeline(rows, reports, budget, baselines=references, variants=variants)
    return rows


def _baselines(baselines) -> tuple:
    """The baseline records ``compare_strategies(baselines=...)`` asks for, in order."""
    from bitline.sw.flow.baselines import baseline

    if baselines is True:
        return BASELINES
    if not baselines:
        return ()
    return tuple(baseline(label) for label in baselines)


def _runs(strategies, specs, config, config_name, baselines) -> list[tuple]:
    """``(label, strategy, spec, config, config name, encoding)`` of every row, in order."""
    runs = []
    for name in strategies:
        if name in VARIANTS:
            record = VARIANTS[name]
            runs.append((name, record.strategy, specs[name], record.config(config),
                         record.config_name(config, config_name), record.encoding))
        else:
            runs.append((name, name, specs[name], config, config_name, "differential"))
    runs += [(run.label, run.strategy, run.spec, run.config(config),
              run.config_name(config, config_name), run.encoding) for run in baselines]
    return runs


def add_ratios(rows: list[dict], references) -> None:
    """Add ``speedup_vs_<ref>`` and ``energy_saving_vs_<ref>`` to every row.

    ``speedup = cycles_ref / cycles`` and ``energy saving = E_ref / E`` against the row
    labelled ``ref``, for each label of ``references`` (the ``isaac`` strategy row and the
    baselines); ``None`` when that row is absent or failed.
    """
    by_label = {row["strategy"]: row for row in rows}
    for name in references:
        base = by_label.get(name)
        for row in rows:
            usable = base is not None and base["cycles"] and row["cycles"]
            row[f"speedup_vs_{name}"] = base["cycles"] / row["cycles"] if usable else None
            row[f"energy_saving_vs_{name}"] = (base["energy_pj"] / row["energy_pj"]
                                               if usable else None)
