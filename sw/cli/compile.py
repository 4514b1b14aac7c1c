"""``bitline compile``, ``bitline report`` and ``bitline compare``: the mapping compiler's CLI.

The flow is a sequence of named steps, each a function of this module that the commands
and the scripts share:

1. :func:`load_config` -- the accelerator config (TOML file or preset, default ``bwq``);
2. :func:`calibration_inputs` -- the data set's ``calib`` split, or seeded random
   non-negative inputs for models without a data set (results are labelled *synthetic*);
3. :func:`compile_model` -- quantize (:func:`quantize_for`, i.e.
   :func:`bitline.sw.quant.quantize_model`) and map (:func:`map_program`, i.e.
   :func:`bitline.sw.mapping.map_model`), sizing the machine to the network with
   ``--xbars auto`` (:func:`fit_capacity`);
4. :func:`bitline.sw.bundle.write_bundle` -- the program bundle;
5. :func:`bitline.sw.perf.analyze` -- the performance report.

:func:`compare_strategies` runs steps 3 and 5 for several strategies (and the ISAAC
baselines as the ISAAC paper ran them) and computes speedups and energy savings; see
docs/performance.md section 6 for the default quantization of each strategy.
:func:`golden_backend` and :func:`executor_backend` are the bundle backends of
``bitline run`` (registered in :data:`bitline.sw.cli.model.BACKENDS`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import click
import numpy as np

from bitline.hw.spec.config import AcceleratorConfig, preset
from bitline.hw.spec.program import STRATEGIES

__all__ = [
    "DEFAULT_PRESET",
    "DEFAULT_SPECS",
    "BASELINES",
    "is_synthetic",
    "CompileResult",
    "load_config",
    "parse_xbars",
    "fit_capacity",
    "quantize_for",
    "map_program",
    "calibration_inputs",
    "compile_model",
    "strategy_specs",
    "compare_strategies",
    "comparison_table",
    "golden_backend",
    "executor_backend",
    "compile_cmd",
    "report",
    "compare",
]

#: Preset used when neither ``--config`` nor ``--preset`` is given.
DEFAULT_PRESET = "bwq"

#: Quantization spec each strategy uses in ``bitline compare`` unless overridden:
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

#: Seed and sample count of the random calibration inputs of synthetic models.
CALIB_SEED = 0
SYNTHETIC_CALIB_SAMPLES = 16


@dataclass
class CompileResult:
    """The products of :func:`compile_model` and how long each step took (seconds)."""

    qmodel: object
    program: object
    quantize_s: float
    map_s: float
    notes: list = field(default_factory=list)


def load_config(config_path: str | Path | None = None,
                preset_name: str | None = None) -> AcceleratorConfig:
    """Return the accelerator config from a TOML file or a preset (default ``bwq``).

    Raises
    ------
    ValueError
        If both a file and a preset are given, the preset is unknown or the file is invalid.
    """
    if config_path is not None and preset_name is not None:
        raise ValueError("give either --config or --preset, not both")
    if config_path is not None:
        return AcceleratorConfig.load(config_path)
    return preset(preset_name or DEFAULT_PRESET)


def parse_xbars(value: str | int) -> str | int:
    """Return ``"auto"`` or a positive crossbar count from a ``--xbars`` value.

    Raises
    ------
    ValueError
        If ``value`` is neither ``auto`` nor a positive integer.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        count = value
    elif str(value).strip().lower() == "auto":
        return "auto"
    else:
        try:
            count = int(str(value).strip())
        except ValueError:
            raise ValueError(f"--xbars must be 'auto' or a positive integer, not {value!r}") \
                from None
    if count < 1:
        raise ValueError(f"--xbars must be 'auto' or a positive integer, not {value!r}")
    return count


def _model_name(model) -> str:
    return str(getattr(model, "name", "") or "")


def is_synthetic(model_name: str) -> bool:
    """True for the builtin models with generated weights and no data set."""
    from bitline.sw.models import BUILTIN_MODELS

    builtin = BUILTIN_MODELS.get(str(model_name))
    return builtin is not None and builtin.generator is not None


def calibration_inputs(model, dataset: str | None = None, *, model_name: str | None = None,
                       samples: int = SYNTHETIC_CALIB_SAMPLES, seed: int = CALIB_SEED):
    """Return ``(calib_x, label)``: calibration inputs for ``model`` and where they came from.

    Parameters
    ----------
    model:
        The IR model (its ``input_shape`` sizes random inputs).
    dataset:
        A data set name (its ``calib`` split is used); ``None`` picks ``digits`` for the
        ``digits-*`` models and seeded random inputs otherwise.
    model_name:
        The name the model was resolved from (default ``model.name``).
    samples, seed:
        Size and seed of the random inputs: uniform in ``[0, 1)`` (non-negative, like
        normalized images), float32, shape ``(samples, *model.input_shape)``.

    Returns
    -------
    calib_x, label
        ``label`` is ``"digits/calib"`` or ``"random(seed=0, n=16)"``.
    """
    name = model_name or _model_name(model)
    if dataset is None and Path(name).name.startswith("digits"):
        dataset = "digits"
    if dataset is not None:
        from bitline.sw.datasets import load_dataset

        x, _ = load_dataset(dataset, "calib")
        return np.asarray(x, dtype=np.float32), f"{dataset}/calib"
    if samples < 1:
        raise ValueError(f"calibration samples must be at least 1, not {samples}")
    rng = np.random.default_rng(seed)
    x = rng.random((samples, *model.input_shape), dtype=np.float32)
    return x, f"random(seed={seed}, n={samples})"


def fit_capacity(model, config: AcceleratorConfig) -> tuple[AcceleratorConfig, list[str]]:
    """Raise ``max_in_features`` / ``max_out_channels`` to the model's largest compute layer.

    Used with ``--xbars auto``, which sizes the machine to the network: a layer's input
    vector (``K``; a depthwise conv's block-diagonal matrix has ``C * KH * KW`` inputs) and
    output channels must fit the config's layer-job capacity. Returns the config and a note
    per raised field.
    """
    largest_k = largest_o = 1
    for layer in model.compute_layers:
        weight = layer.weight
        groups = int(layer.attrs.get("groups", 1)) if layer.op == "conv" else 1
        largest_k = max(largest_k, int(np.prod(weight.shape[1:])) * groups)
        largest_o = max(largest_o, int(weight.shape[0]))
    changes, notes = {}, []
    for field, need in (("max_in_features", largest_k), ("max_out_channels", largest_o)):
        if need > getattr(config, field):
            changes[field] = need
            notes.append(f"{field} raised from {getattr(config, field)} to {need}")
    return (config.replace(**changes) if changes else config), notes


#: The widest ``max_weight_bits`` an :class:`AcceleratorConfig` accepts.
WIDEST_WEIGHT_BITS = 16


def quantize_for(model, spec, calib_x: np.ndarray, config: AcceleratorConfig, *,
                 auto: bool = True):
    """Quantize ``model`` for ``config``; return ``(qmodel, config, notes)``.

    With ``auto`` (``--xbars auto`` sizes the machine to the network), a spec whose weights
    need more magnitude bit planes than ``config.max_weight_bits`` allows (varied schemes
    such as power-of-two or adaptive float reach high magnitudes) is quantized again with
    the widest weights a config holds, and the returned config's ``max_weight_bits`` is
    raised to exactly what the weights need; a note says so.

    Raises
    ------
    ValueError
        From the quantizer, when the spec is invalid or cannot fit even the widest config.
    """
    from bitline.sw.quant import load_spec, quantize_model

    spec = load_spec(spec)
    try:
        return quantize_model(model, spec, calib_x, config), config, []
    except ValueError:
        if not auto or config.max_weight_bits >= WIDEST_WEIGHT_BITS:
            raise
        qmodel = quantize_model(model, spec, calib_x,
                                config.replace(max_weight_bits=WIDEST_WEIGHT_BITS))
    planes = max((qlayer.weight.magnitude_bits for qlayer in qmodel.compute_layers
                  if qlayer.weight is not None), default=1)
    needed = max(config.max_weight_bits, planes + 1)
    note = (f"max_weight_bits raised from {config.max_weight_bits} to {needed} "
            f"({planes} magnitude bit planes)")
    return qmodel, config.replace(max_weight_bits=needed), [note]


def map_program(qmodel, config: AcceleratorConfig, strategy: str, *,
                xbars: str | int = "auto"):
    """Map ``qmodel`` with :func:`bitline.sw.mapping.map_model`; return ``(program, notes)``.

    With ``xbars="auto"`` the entry memory is sized too: ``max_entries`` is raised to the
    program's entry count when needed (noted).
    """
    from bitline.sw.mapping import map_model

    xbars = parse_xbars(xbars)
    program = map_model(qmodel, config, strategy, xbars="auto" if xbars == "auto" else xbars)
    entries = sum(len(layer.entries) for layer in program.layers)
    if xbars != "auto" or entries <= program.config.max_entries:
        return program, []
    # --xbars auto sizes the machine: the entry memory too.
    note = f"max_entries raised from {program.config.max_entries} to {entries}"
    program.config = program.config.replace(max_entries=entries)
    return program, [note]


def compile_model(model, strategy: str, spec, config: AcceleratorConfig, calib_x: np.ndarray,
                  *, xbars: str | int = "auto") -> CompileResult:
    """Quantize ``model`` with ``spec`` and map it with ``strategy`` onto ``config``.

    ``xbars`` is ``"auto"`` (the mapper sizes the crossbar count, and :func:`fit_capacity`
    the layer-job capacity) or a unit count that replaces ``config.n_xbars``.

    Raises
    ------
    ValueError
        If the strategy is unknown or a step rejects the model, spec or config.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    xbars = parse_xbars(xbars)
    notes: list[str] = []
    if xbars == "auto":
        config, notes = fit_capacity(model, config)
    else:
        config = config.replace(n_xbars=xbars)
    start = time.perf_counter()
    qmodel, config, more = quantize_for(model, spec, calib_x, config, auto=xbars == "auto")
    notes += more
    quantized = time.perf_counter()
    program, more = map_program(qmodel, config, strategy, xbars=xbars)
    return CompileResult(qmodel, program, quantized - start, time.perf_counter() - quantized,
                         notes + more)


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
    head = {"strategy": label, "mapping": strategy, "quant": spec, "config": config_name}
    if report is None:
        return {**head, **dict.fromkeys(_METRICS)}
    return {
        **head,
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
    when ``isaac`` is not compared), ``efficiency``, plus ``quant``, ``config``,
    ``latency_s``, ``area_mm2``, ``labels`` and the compile times. With ``baselines`` two
    rows of :data:`BASELINES` follow (ISAAC on the ``isaac`` preset at 16 and 8 weight bits)
    and every row gets ``speedup_vs_isaac_paper`` / ``energy_saving_vs_isaac_paper``
    relative to ``isaac-paper-16b``. Quantized models are shared between strategies with
    the same spec. ``notes`` lists capacity changes (:func:`fit_capacity`, :func:`map_program`).
    With ``keep_going`` a run that fails (e.g. a network needs more units than any config holds) gives a row with
    ``error`` set and ``None`` metrics instead of raising.
    """
    from bitline.sw.perf import analyze

    config = config or preset(DEFAULT_PRESET)
    specs = specs or strategy_specs(strategies)
    config_name = next((name for name in ("bwq", "isaac") if preset(name) == config), "custom")
    runs = [(strategy, strategy, specs[strategy], config, config_name)
            for strategy in strategies]
    if baselines:
        runs += [(label, strategy, spec, preset(name), name)
                 for label, strategy, name, spec in BASELINES]
    count = parse_xbars(xbars)
    rows: list[dict] = []
    quantized: dict[tuple[str, str], object] = {}
    for label, strategy, spec, run_config, config_name in runs:
        notes: list[str] = []
        if count == "auto":
            run_config, notes = fit_capacity(model, run_config)
        else:
            run_config = run_config.replace(n_xbars=count)
        key = (spec, run_config.digest)
        start = time.perf_counter()
        if key not in quantized:
            quantized[key] = quantize_for(model, spec, calib_x, run_config, auto=count == "auto")
        qmodel, run_config, more = quantized[key]
        notes = notes + more
        mid = time.perf_counter()
        try:
            program, more = map_program(qmodel, run_config, strategy, xbars=count)
        except ValueError as error:
            if not keep_going:
                raise
            program, more, failure = None, [], str(error)
        else:
            failure = None
        end = time.perf_counter()
        report = analyze(program, qmodel) if program is not None else None
        row = _row(label, strategy, spec, config_name, report)
        row.update(labels=dict(labels or {}), notes=notes + more, quantize_s=mid - start,
                   map_s=end - mid, error=failure)
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


def comparison_table(rows: list[dict], title: str):
    """Return a rich table of :func:`compare_strategies` rows."""
    from rich.table import Table

    table = Table(title=title)
    paper = any("speedup_vs_isaac_paper" in row for row in rows)
    columns = ["strategy", "quant", "config", "xbars", "OU reads", "ADC conv", "cycles",
               "energy uJ", "speedup", "E saving", "eff"]
    if paper:
        columns += ["speedup vs paper", "E saving vs paper"]
    for column in columns:
        table.add_column(column, justify="left" if column in ("strategy", "quant", "config")
                         else "right")

    def ratio(value):
        return "-" if value is None else f"{value:.2f}x"

    for row in rows:
        if row.get("error"):
            table.add_row(row["strategy"], row["quant"], row["config"],
                          *["-"] * (len(columns) - 3))
            continue
        cells = [row["strategy"], row["quant"], row["config"], str(row["crossbars"]),
                 f"{row['ou_reads']:,}", f"{row['adc_conversions']:,}", f"{row['cycles']:,}",
                 f"{row['energy_pj'] / 1e6:,.3f}", ratio(row["speedup_vs_isaac"]),
                 ratio(row["energy_saving_vs_isaac"]), f"{row['efficiency']:.2f}"]
        if paper:
            cells += [ratio(row.get("speedup_vs_isaac_paper")),
                      ratio(row.get("energy_saving_vs_isaac_paper"))]
        table.add_row(*cells)
    return table


# ------------------------------------------------------------------------------ commands
def _resolve(model_name: str):
    from bitline.sw.models import resolve_model

    return resolve_model(model_name)


def _labels(model_name: str, calib_label: str) -> dict:
    labels = {"model": model_name, "calibration": calib_label}
    if is_synthetic(model_name):
        labels["weights"] = "synthetic"
    return labels


def _console():
    import sys

    from rich.console import Console

    # Tables are wide; never squeeze them below 140 columns (pipes and CI logs).
    return Console(file=sys.stdout, width=max(140, Console(file=sys.stdout).width))


_SIDECAR = "compile.json"

_config_options = [
    click.option("--config", "config_path", type=click.Path(dir_okay=False),
                 help="Accelerator config TOML file."),
    click.option("--preset", "preset_name", help=f"Config preset (default {DEFAULT_PRESET})."),
    click.option("--xbars", default="auto", show_default=True,
                 help="Crossbar units: 'auto' (sized by the mapper) or a count."),
    click.option("--calib-dataset", default=None,
                 help="Calibration data set (default: digits for digits-* models, "
                      "seeded random inputs otherwise)."),
    click.option("--calib-samples", default=SYNTHETIC_CALIB_SAMPLES, show_default=True,
                 help="Random calibration inputs for models without a data set."),
]


def _with_config_options(function):
    for option in reversed(_config_options):
        function = option(function)
    return function


@click.command("compile")
@click.argument("model")
@click.option("--strategy", "-s", required=True, type=click.Choice(STRATEGIES),
              help="Mapping strategy.")
@click.option("--quant", "spec", default="int8", show_default=True,
              help="Quantization spec: a file or a shorthand (int8, varied4, bwq3, ...).")
@_with_config_options
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False),
              help="Bundle directory to write.")
def compile_cmd(model, strategy, spec, config_path, preset_name, xbars, calib_dataset,
                calib_samples, output):
    """Quantize MODEL, map it with a strategy and write the program bundle to OUTPUT."""
    from bitline.sw.bundle import write_bundle
    from bitline.sw.perf import analyze

    config = load_config(config_path, preset_name)
    ir_model = _resolve(model)
    calib_x, calib_label = calibration_inputs(ir_model, calib_dataset, model_name=model,
                                              samples=calib_samples)
    result = compile_model(ir_model, strategy, spec, config, calib_x, xbars=xbars)
    out = Path(output)
    start = time.perf_counter()
    write_bundle(out, result.program, result.qmodel)
    write_s = time.perf_counter() - start
    labels = _labels(model, calib_label)
    (out / _SIDECAR).write_text(json.dumps({
        "model": model, "strategy": strategy, "quant": str(spec),
        "config": str(config_path) if config_path else (preset_name or DEFAULT_PRESET),
        "xbars": parse_xbars(xbars), "labels": labels,
        "seconds": {"quantize": result.quantize_s, "map": result.map_s, "write": write_s},
    }, indent=2) + "\n")
    report = analyze(result.program, result.qmodel, labels=labels)
    console = _console()
    console.print(
        f"compiled [bold]{model}[/] with [bold]{strategy}[/] ({spec}) onto "
        f"{result.program.xbars_used} crossbars -> {out}  "
        f"(quantize {result.quantize_s:.2f} s, map {result.map_s:.2f} s, "
        f"write {write_s:.2f} s)")
    for note in result.notes:
        console.print(f"note: {note}")
    for table in report.tables():
        console.print(table)


@click.command("report")
@click.argument("bundle_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def report(bundle_dir, as_json):
    """Print the performance report of the program bundle in BUNDLE_DIR."""
    from bitline.sw.bundle import read_bundle
    from bitline.sw.perf import analyze

    bundle = read_bundle(bundle_dir)
    sidecar = Path(bundle_dir) / _SIDECAR
    labels = json.loads(sidecar.read_text()).get("labels", {}) if sidecar.exists() else {}
    perf = analyze(bundle.program, bundle.qmodel, labels=labels)
    if as_json:
        click.echo(json.dumps(perf.to_dict(), indent=2))
        return
    console = _console()
    for table in perf.tables():
        console.print(table)


@click.command("compare")
@click.argument("model")
@click.option("--strategies", default=",".join(STRATEGIES), show_default=True,
              help="Comma-separated strategies to compare.")
@click.option("--quant", "quant", multiple=True,
              help="Override a spec: SPEC for all strategies or STRATEGY=SPEC (repeatable). "
                   "Defaults: " + ", ".join(f"{k}={v}" for k, v in DEFAULT_SPECS.items()))
@_with_config_options
@click.option("--baselines/--no-baselines", default=True, show_default=True,
              help="Add ISAAC as its paper ran it (isaac preset, 16- and 8-bit weights).")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as a JSON list.")
def compare(model, strategies, quant, config_path, preset_name, xbars, calib_dataset,
            calib_samples, baselines, as_json):
    """Compile MODEL under several strategies and compare cycles and energy with ISAAC."""
    names = [name.strip() for name in strategies.split(",") if name.strip()]
    unknown = [name for name in names if name not in STRATEGIES]
    if unknown or not names:
        raise ValueError(f"--strategies: unknown strategy {unknown[0] if unknown else ''!r}; "
                         f"choose from {', '.join(STRATEGIES)}")
    config = load_config(config_path, preset_name)
    ir_model = _resolve(model)
    calib_x, calib_label = calibration_inputs(ir_model, calib_dataset, model_name=model,
                                              samples=calib_samples)
    labels = _labels(model, calib_label)
    rows = compare_strategies(ir_model, names, strategy_specs(names, quant), config=config,
                              calib_x=calib_x, xbars=xbars, baselines=baselines,
                              labels=labels, keep_going=True)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    title = f"{model}: strategies vs isaac" + (" (synthetic weights)"
                                               if labels.get("weights") else "")
    console = _console()
    console.print(comparison_table(rows, title))
    for row in rows:
        for note in row["notes"]:
            console.print(f"note ({row['strategy']}): {note}")
        if row.get("error"):
            console.print(f"failed ({row['strategy']}): {row['error']}")


# ------------------------------------------------------------------ `bitline run` backends
def _flag(options: dict, key: str) -> bool:
    value = str(options.get(key, "0")).strip().lower()
    if value not in ("0", "1", "true", "false", "yes", "no", ""):
        raise ValueError(f"option {key} must be 0 or 1, not {options[key]!r}")
    return value in ("1", "true", "yes")


def _bundle_result(result, all_layers: bool) -> dict[str, np.ndarray]:
    arrays = {"output": np.asarray(result.output), "output_int": np.asarray(result.output_int)}
    if all_layers:
        for name, value in result.layers.items():
            arrays[f"layer/{name}"] = np.asarray(value)
    return arrays


def _check_options(options: dict, known: tuple[str, ...], backend: str) -> None:
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(f"backend {backend!r}: unknown option(s) {', '.join(unknown)}; "
                         f"known: {', '.join(known)}")


def golden_backend(target, x: np.ndarray, options: dict) -> dict[str, np.ndarray]:
    """Run a bundle's quantized model with the integer golden model.

    ``target`` must be a bundle directory; option ``all_layers=1`` (or ``--all-layers``)
    adds every layer's integer output as ``layer/<name>``. Returns ``output`` (dequantized
    float64) and ``output_int`` (int64 codes, or ``acc + bias`` for a raw final layer).
    """
    from bitline.sim.golden import run_golden
    from bitline.sw.bundle import read_bundle

    bundle_dir = target.require("bundle", "backend 'golden'")
    _check_options(options, ("all_layers",), "golden")
    all_layers = _flag(options, "all_layers")
    bundle = read_bundle(bundle_dir)
    return _bundle_result(run_golden(bundle.qmodel, x, return_all=all_layers), all_layers)


def executor_backend(target, x: np.ndarray, options: dict) -> dict[str, np.ndarray]:
    """Run a bundle's OU program on the crossbar-level executor (ideal device).

    Same outputs and options as :func:`golden_backend`; compute layers run through the
    program's cells, row maps and OU entries (:func:`bitline.sim.executor.run_executor`).
    """
    from bitline.sim.executor import run_executor
    from bitline.sw.bundle import read_bundle

    bundle_dir = target.require("bundle", "backend 'executor'")
    _check_options(options, ("all_layers",), "executor")
    all_layers = _flag(options, "all_layers")
    bundle = read_bundle(bundle_dir)
    result = run_executor(bundle.program, bundle.qmodel, x, return_all=all_layers)
    return _bundle_result(result, all_layers)
