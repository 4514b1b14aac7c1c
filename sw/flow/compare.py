"""``compare``: one comparison row per mapping strategy, with speedups and energy savings
against ISAAC (and ISAAC as its paper ran it)."""

from __future__ import annotations

import numpy as np
from bitline.hw.spec.config import AcceleratorConfig, preset
from bitline.hw.spec.program import STRATEGIES
from bitline.sw.flow.compile import compile_model
from bitline.sw.flow.inputs import DEFAULT_PRESET

__all__ = ["DEFAULT_SPECS", "BASELINES", "strategy_specs", "compare_strategies"]

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

#: ISAAC as its paper ran it: (row label, strategy, preset, weight spec). Activations stay
#: at 8 bits (``max_act_bits`` <= 8; ISAAC streams 16-bit inputs).
BASELINES: tuple[tuple[str, str, str, str], ...] = (
    ("isaac-paper-16b", "isaac", "isaac", "int16"),
    ("isaac-paper-8b", "isaac", "isaac", "int8"),
)


def strategy_specs(strategies, overrides=()) -> dict[str, str]:
    """Return the spec of each strategy: :data:`DEFAULT_SPECS` with ``overrides`` applied.

    Each override is ``"SPEC"`` (every strategy) or ``"STRATEGY=SPEC"``; later ones win.

    Raises
    ------
    ValueError
        If an override names a strategy that is not being compared.
    """
    specs = {strategy: DEFAULT_SPECS.get(strategy, "int8") for strategy in strategies}
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


def compare_strategies(model, strategies=STRATEGIES, specs: dict[str, str] | None = None, *,
                       config: AcceleratorConfig | None = None, calib_x: np.ndarray,
                       xbars: str | int = "auto", baselines: bool = True,
                       labels: dict | None = None, keep_going: bool = False) -> list[dict]:
    """Compile ``model`` under every strategy and return one comparison row per run.

    Each row has ``strategy``, ``cycles``, ``energy_pj``, ``ou_reads``,
    ``adc_conversions``, ``crossbars``, ``speedup_vs_isaac`` and
    ``energy_saving_vs_isaac`` (relative to the ``isaac`` row on the same config; ``None``
    when ``isaac`` is not compared), ``efficiency``, plus ``mapping``, ``quant``,
    ``config``, ``latency_s``, ``area_mm2``, ``labels``, ``sizing`` (the
    :class:`Sizing` records as dicts), ``notes`` (one line per record), ``error`` and the
    step times ``size_s``, ``quantize_s``, ``map_s``. With ``baselines`` two rows of
    :data:`BASELINES` follow (ISAAC on the ``isaac`` preset at 16 and 8 weight bits) and
    every row gets ``speedup_vs_isaac_paper`` / ``energy_saving_vs_isaac_paper`` relative
    to ``isaac-paper-16b``. Quantized models are shared between strategies with the same
    spec. With ``keep_going`` a run that fails (e.g. a network needs more units than any
    config holds) gives a row with ``error`` set and ``None`` metrics instead of raising
    (an invalid spec still raises before any run).
    """
    from bitline.sw.perf import analyze
    from bitline.sw.quant import load_spec

    config = config or preset(DEFAULT_PRESET)
    specs = specs or strategy_specs(strategies)
    config_name = next((name for name in ("bwq", "isaac") if preset(name) == config), "custom")
    runs = [(strategy, strategy, specs[strategy], config, config_name)
            for strategy in strategies]
    if baselines:
        runs += [(label, strategy, spec, preset(name), name)
                 for label, strategy, name, spec in BASELINES]
    for _, _, spec, _, _ in runs:
        load_spec(spec)             # a bad spec is a usage error, not a failed row
    qmodels: dict = {}
    rows: list[dict] = []
    for label, strategy, spec, run_config, run_config_name in runs:
        try:
            result = compile_model(model, strategy, spec, run_config, calib_x, xbars=xbars,
                                   qmodels=qmodels)
        except ValueError as error:
            if not keep_going:
                raise
            row = _row(label, strategy, spec, run_config_name, None)
            row.update(labels=dict(labels or {}), sizing=[], notes=[], size_s=None,
                       quantize_s=None, map_s=None, error=str(error))
        else:
            row = _row(label, strategy, spec, run_config_name,
                       analyze(result.program, result.qmodel))
            row.update(labels=dict(labels or {}),
                       sizing=[record.to_dict() for record in result.sizing],
                       notes=result.notes, size_s=result.size_s,
                       quantize_s=result.quantize_s, map_s=result.map_s, error=None)
        rows.append(row)
    reference = next((row for row in rows if row["strategy"] == "isaac"), None)
    paper = next((row for row in rows if row["strategy"] == "isaac-paper-16b"), None)
    for row in rows:
        for name, base in (("isaac", reference), ("isaac_paper", paper)):
            if name == "isaac_paper" and not baselines:
                continue
            usable = base is not None and base["cycles"] and row["cycles"]
            row[f"speedup_vs_{name}"] = base["cycles"] / row["cycles"] if usable else None
            row[f"energy_saving_vs_{name}"] = (base["energy_pj"] / row["energy_pj"]
                                               if usable else None)
    return rows
