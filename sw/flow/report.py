"""Reports of ``compare``: per-layer records, CSV, plots and a Markdown report.

The inputs are the rows of :func:`~bitline.sw.flow.compare_strategies` (one dict per run;
with ``per_layer=True`` each row carries ``layers``, the records of :func:`layer_records`).
Nothing here compiles or measures: every number comes from the rows, so the CSV, the JSON,
the tables and the plots cannot disagree.

* :func:`layer_records` -- the per-layer record of one :class:`~bitline.sw.perf.PerfReport`;
* :func:`per_layer_rows` -- one flat record per (row, layer), with the layer's copies and
  stage cycles when the row has a pipeline (:func:`~bitline.sw.flow.compare.add_pipeline`);
* :func:`summary_table`, :func:`layer_table` -- the tables as header and text cells (the CLI
  prints them with rich, :func:`markdown_report` as Markdown);
* :func:`rows_to_csv` / :func:`read_csv` -- CSV export and its exact inverse;
* :func:`plot_comparison`, :func:`plot_stages` -- matplotlib figures (Agg backend);
* :func:`markdown_report` -- a Markdown file embedding the tables and the plots.

:data:`LEGEND` explains every column name (printed under the tables and in the report).
"""

from __future__ import annotations

import csv
import math
import platform
import sys
from importlib import metadata
from pathlib import Path

__all__ = ["LEGEND", "RATIO_PREFIXES", "layer_records", "per_layer_rows", "ratio_keys",
           "summary_columns", "layer_columns", "summary_table", "layer_table", "rows_to_csv",
           "read_csv", "plot_comparison", "plot_stages", "markdown_report", "versions",
           "cell_text", "pyplot", "save_figure"]

#: Column name -> meaning, for the strategy rows, the per-layer records and the CSV.
LEGEND: dict[str, str] = {
    "strategy": "row label: a mapping strategy, or a named baseline",
    "mapping": "mapping strategy of the row",
    "quant": "quantization spec (int8, varied4, bwq3, ...)",
    "config": "accelerator config the row ran on (preset name or 'custom')",
    "layer": "compute layer (one layer job)",
    "n_inputs": "K: inputs per vector of the layer",
    "n_outputs": "O: output channels of the layer",
    "n_vectors": "V: input vectors per image (output pixels of a conv, 1 for a gemm)",
    "budget": "resources the pipeline's layer copies may use (--budget)",
    "crossbars": "crossbar units holding weights (one copy)",
    "copies": "copies of the layer in the balanced pipeline (at the row's budget)",
    "placement": "the layer's placement in the pipeline: dense (the strategy's own) or "
                 "spread-<s> (each unit filled to 1/s, docs/mapping.md)",
    "ou_reads": "OU reads for one image",
    "adc_conversions": "ADC conversions for one image",
    "cycles": "cycles of one image, one copy per layer (a row: its layer jobs in sequence; "
              "a layer: its job)",
    "stage_cycles": "cycles of the layer's pipeline stage with its copies",
    "stage_s": "stage_cycles at the clock (s)",
    "latency_s": "cycles at the clock (s)",
    "energy_pj": "energy of one image (pJ); energy_<component>_pj its parts",
    "area_mm2": "area of the crossbar units holding weights (mm2)",
    "efficiency": "lower-bound OU reads / OU reads (1.0: a perfect packing)",
    "throughput_ips": "images per second of the layer pipeline at the budget",
    "pipeline_latency_s": "single-image latency through the pipeline stages (s)",
    "energy_per_image_pj": "energy per image in the pipeline (pJ)",
    "bottleneck": "layer whose stage is the slowest",
    "speedup_vs_<b>": "cycles of baseline <b> / cycles of the row (one image, one copy)",
    "energy_saving_vs_<b>": "energy of baseline <b> / energy of the row",
    "throughput_speedup_vs_<b>": "throughput of the row / throughput of <b>, equal budget",
}

#: Prefixes of the ratio keys of a row; the rest of the key names the baseline.
RATIO_PREFIXES = ("speedup_vs_", "energy_saving_vs_", "throughput_speedup_vs_")

_ROW_COLUMNS = ("strategy", "mapping", "quant", "config", "crossbars", "ou_reads",
                "adc_conversions", "cycles", "latency_s", "energy_pj", "area_mm2",
                "efficiency", "throughput_ips", "pipeline_latency_s", "energy_per_image_pj",
                "bottleneck", "budget", "error")
_LAYER_COLUMNS = ("strategy", "layer", "n_inputs", "n_outputs", "n_vectors", "crossbars",
                  "placement", "copies", "ou_reads", "adc_conversions", "cycles", "latency_s",
                  "stage_cycles", "stage_s", "energy_pj")


def layer_records(report) -> list[dict]:
    """Return one flat record per layer of a :class:`~bitline.sw.perf.PerfReport`.

    Keys: ``layer``, ``n_inputs``, ``n_outputs``, ``n_vectors``, ``crossbars``,
    ``ou_reads``, ``adc_conversions``, ``cycles``, ``latency_s``, ``energy_pj`` (total) and
    ``energy_<component>_pj`` for every component of
    :data:`~bitline.sw.perf.ENERGY_COMPONENTS`.
    """
    records = []
    for layer in report.layers:
        record = {"layer": layer.name, "n_inputs": layer.n_inputs,
                  "n_outputs": layer.n_outputs, "n_vectors": layer.n_vectors,
                  "crossbars": layer.crossbars, "ou_reads": layer.ou_reads,
                  "adc_conversions": layer.adc_conversions, "cycles": layer.cycles,
                  "latency_s": layer.latency_s, "energy_pj": layer.total_energy_pj}
        record.update({f"energy_{key}_pj": value for key, value in layer.energy_pj.items()})
        records.append(record)
    return records


def _stage_cycles(row: dict) -> dict:
    """Per-layer stage cycles of a row's pipeline, however the row carries them."""
    stages = row.get("stage_cycles")
    if isinstance(stages, dict):
        return stages
    pipeline = row.get("pipeline") if isinstance(row.get("pipeline"), dict) else {}
    return {layer["name"]: layer["stage_cycles"] for layer in pipeline.get("layers", ())
            if "stage_cycles" in layer}


def per_layer_rows(rows: list[dict]) -> list[dict]:
    """Return one flat record per (row, layer): the row's label and the layer's record.

    ``placement``, ``copies`` and ``stage_cycles`` come from the row's pipeline when it has
    one (a layer's placement from ``row["placements"]``, its copies from ``row["copies"]``,
    its stage from ``row["stage_cycles"]`` or ``row["pipeline"]["layers"]``); without a
    pipeline a layer is dense with one copy and its stage is its layer job
    (``stage_cycles = cycles``). The other fields describe the dense layer job. ``stage_s`` is ``stage_cycles`` at the
    layer's clock (derived from the record's ``cycles`` and ``latency_s``). Rows without
    ``layers`` (failed runs, or compared without ``per_layer``) give no records.
    """
    out = []
    for row in rows:
        copies = row.get("copies") if isinstance(row.get("copies"), dict) else {}
        placements = row.get("placements") if isinstance(row.get("placements"), dict) else {}
        stages = _stage_cycles(row)
        for record in row.get("layers") or ():
            name = record["layer"]
            stage = stages.get(name, record["cycles"] if not copies else None)
            seconds_per_cycle = record["latency_s"] / record["cycles"] if record["cycles"] else 0
            out.append({"strategy": row["strategy"], **record,
                        "placement": placements.get(name, "dense" if not copies else None),
                        "copies": copies.get(name, 1 if not copies else None),
                        "stage_cycles": stage,
                        "stage_s": None if stage is None else stage * seconds_per_cycle})
    return out


def ratio_keys(rows: list[dict]) -> list[str]:
    """Return the ratio keys the rows carry (``speedup_vs_<b>``, ...), in first-seen order."""
    keys = dict.fromkeys(key for row in rows for key in row if key.startswith(RATIO_PREFIXES))
    return list(keys)


def _models(rows: list[dict]) -> list[str]:
    """The networks the rows belong to (``labels["model"]``), in first-seen order."""
    return list(dict.fromkeys(row.get("labels", {}).get("model") for row in rows
                              if row.get("labels", {}).get("model")))


def _get(row: dict, column: str):
    """A row's value of a column; ``model`` comes from the row's labels."""
    if column == "model" and "model" not in row:
        return row.get("labels", {}).get("model")
    return row.get(column)


def summary_columns(rows: list[dict]) -> list[str]:
    """Columns of the one-row-per-strategy table and CSV (those some row carries).

    Rows of several networks (concatenated ``compare_strategies`` results) get a first
    ``model`` column.
    """
    present = {key for row in rows for key, value in row.items() if value is not None}
    columns = [key for key in _ROW_COLUMNS if key in present or key in _ROW_COLUMNS[:4]]
    return (["model"] if len(_models(rows)) > 1 else []) + columns + ratio_keys(rows)


def layer_columns(records: list[dict]) -> list[str]:
    """Columns of the per-layer table and CSV: :data:`_LAYER_COLUMNS` and the energy parts."""
    parts = dict.fromkeys(key for record in records for key in record
                          if key.startswith("energy_") and key != "energy_pj")
    return list(_LAYER_COLUMNS) + list(parts)


def cell_text(value, column: str = "") -> str:
    """Return one table cell: integers with separators, ratios as ``1.75x``, other floats
    with 4 significant digits (thousands with separators); ``-`` for ``None``."""
    if value is None:
        return "-"
    if isinstance(value, (bool, str)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if column.startswith(RATIO_PREFIXES):
            return f"{value:.2f}x"
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value)


def summary_table(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Return the strategy table as ``(columns, cells)`` (text; see :data:`LEGEND`)."""
    columns = summary_columns(rows)
    return columns, [[cell_text(_get(row, column), column) for column in columns]
                     for row in rows]


def layer_table(rows: list[dict], compact: bool = False) -> tuple[list[str], list[list[str]]]:
    """Return the per-layer table of the rows' ``layers`` as ``(columns, cells)``.

    ``compact`` (the terminal table) leaves out ``n_inputs``, ``n_outputs``, ``n_vectors``,
    ``latency_s`` and ``stage_s`` and heads the energy parts by component (``adc`` for
    ``energy_adc_pj``); the CSV and the JSON keep every column and name.
    """
    records = per_layer_rows(rows)
    columns = layer_columns(records)
    if compact:
        columns = [c for c in columns if c not in ("n_inputs", "n_outputs", "n_vectors",
                                                   "latency_s", "stage_s")]
    cells = [[cell_text(record.get(column), column) for column in columns]
             for record in records]
    if compact:
        columns = [c[len("energy_"):-len("_pj")] if c.startswith("energy_") and c != "energy_pj"
                   else c for c in columns]
    return columns, cells


# ------------------------------------------------------------------------------- CSV
def _csv_value(value) -> str:
    # repr of a float round-trips exactly; None is the empty cell.
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else str(value)


def rows_to_csv(rows: list[dict], path: str | Path, *, per_layer: bool = False,
                columns: list[str] | None = None) -> Path:
    """Write the rows as CSV: one line per strategy, or per (strategy, layer).

    The columns are :func:`summary_columns` (or :func:`layer_columns` with ``per_layer``,
    or ``columns`` when given);
    floats are written exactly (``repr``), ``None`` as an empty cell. :func:`read_csv` reads
    the file back to the same numbers. Returns the written path.

    Raises
    ------
    ValueError
        With ``per_layer`` when no row carries ``layers``.
    """
    if per_layer:
        records = per_layer_rows(rows)
        if not records:
            raise ValueError("--csv with --per-layer: no row has per-layer results")
        columns = columns or layer_columns(records)
    else:
        records, columns = rows, columns or summary_columns(rows)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for record in records:
            writer.writerow([_csv_value(_get(record, column)) for column in columns])
    return path


def _parse(text: str):
    if text == "":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def read_csv(path: str | Path) -> list[dict]:
    """Read a file of :func:`rows_to_csv` back: numbers as int / float, empty as ``None``."""
    with Path(path).open(newline="") as handle:
        return [{key: _parse(value) for key, value in line.items()}
                for line in csv.DictReader(handle)]


# ------------------------------------------------------------------------------ plots
def pyplot():
    """Return ``matplotlib.pyplot`` on the Agg backend (a ``ValueError`` without it)."""
    try:
        import matplotlib
    except ImportError as error:
        raise ValueError("--plot needs matplotlib: pip install -e \".[dev]\"") from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure, path: str | Path) -> Path:
    """Lay out and write ``figure`` to ``path`` (parents made); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    return path


def plot_comparison(rows: list[dict], path: str | Path, title: str = "") -> Path:
    """Plot speedup and energy saving of every row against every baseline (bar charts).

    One panel per ratio kind (``speedup_vs``, ``energy_saving_vs``, and
    ``throughput_speedup_vs`` when the rows have a pipeline), one group of bars per row,
    one bar per baseline named in the ratio keys; a dashed line marks 1x. Rows of several
    networks (concatenated results, each with its own ``labels["model"]``) are labelled
    ``model / strategy`` and grouped by network. Returns the path.

    Raises
    ------
    ValueError
        If matplotlib is missing or no row has a ratio.
    """
    kinds = [prefix for prefix in RATIO_PREFIXES
             if any(key.startswith(prefix) for key in ratio_keys(rows))]
    usable = [row for row in rows if not row.get("error")]
    if not kinds or not usable:
        raise ValueError("--plot: no row has a speedup or energy saving to plot")
    several = len(_models(usable)) > 1
    names = [f"{_get(row, 'model')} / {row['strategy']}" if several else row["strategy"]
             for row in usable]
    plt = pyplot()
    width_in = max(4.2, 0.35 * len(usable) + 1.5)
    figure, axes = plt.subplots(1, len(kinds), figsize=(width_in * len(kinds) + 1, 3.8),
                                squeeze=False)
    for axis, prefix in zip(axes[0], kinds):
        baselines = [key[len(prefix):] for key in ratio_keys(rows) if key.startswith(prefix)]
        width = 0.8 / len(baselines)
        for index, baseline in enumerate(baselines):
            values = [row.get(prefix + baseline) or 0.0 for row in usable]
            positions = [i + (index - (len(baselines) - 1) / 2) * width
                         for i in range(len(usable))]
            axis.bar(positions, values, width, label=f"vs {baseline}")
        axis.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
        axis.set_xticks(range(len(usable)), names, rotation=35, ha="right", fontsize="small")
        axis.set_ylabel(prefix.rstrip("_").replace("_vs", "").replace("_", " ") + " (x)")
        axis.grid(True, axis="y", alpha=0.3)
        axis.legend(fontsize="x-small")
    if title:
        figure.suptitle(title, fontsize=10)
    try:
        return save_figure(figure, path)
    finally:
        plt.close(figure)


def plot_stages(rows: list[dict], path: str | Path, title: str = "") -> Path:
    """Plot the per-layer stage cycles of every row (one line per row, log scale).

    Raises
    ------
    ValueError
        If matplotlib is missing or no row carries per-layer results.
    """
    records = per_layer_rows(rows)
    if not records:
        raise ValueError("--plot with --per-layer: no row has per-layer results")
    if all(record["stage_cycles"] is None for record in records):
        raise ValueError("--plot with --per-layer: the rows have copies but no stage cycles")
    plt = pyplot()
    layers = list(dict.fromkeys(record["layer"] for record in records))
    figure, axis = plt.subplots(figsize=(max(6.0, 0.45 * len(layers) + 3), 3.8))
    for strategy in dict.fromkeys(record["strategy"] for record in records):
        stage = {r["layer"]: r["stage_cycles"] for r in records if r["strategy"] == strategy}
        axis.plot(range(len(layers)), [stage.get(name) or math.nan for name in layers],
                  marker="o", label=strategy)
    axis.set_xticks(range(len(layers)), layers, rotation=45, ha="right", fontsize="small")
    axis.set_yscale("log")
    axis.set_ylabel("stage cycles (with copies)")
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize="x-small")
    if title:
        figure.suptitle(title, fontsize=10)
    try:
        return save_figure(figure, path)
    finally:
        plt.close(figure)


# ---------------------------------------------------------------------------- Markdown
def versions() -> dict[str, str]:
    """Return the versions a report states: bitline, Python, numpy, the platform."""
    import numpy

    def version(name):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    return {"bitline": version("bitline"), "python": sys.version.split()[0],
            "numpy": numpy.__version__, "platform": platform.platform()}


_TEXT_COLUMNS = ("strategy", "mapping", "quant", "config", "layer", "bottleneck", "budget",
                 "error", "value")


def _markdown_table(columns: list[str], cells: list[list[str]]) -> str:
    lines = ["| " + " | ".join(columns) + " |",
             "|" + "|".join("---" if c in _TEXT_COLUMNS else "---:" for c in columns) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |"
              for row in cells]
    return "\n".join(lines)


def _legend(columns) -> str:
    lines = []
    for key, text in LEGEND.items():
        stem = key.split("<")[0]
        if any(column == key or ("<" in key and column.startswith(stem)) or
               (key == "energy_pj" and column.startswith("energy_") and
                not column.startswith("energy_saving")) for column in columns):
            lines.append(f"* `{key}`: {text}")
    return "\n".join(lines)


def _costs_text(costs) -> str:
    """One line naming the cost model: ISAAC's, or the prices that differ from it."""
    from bitline.sw.perf.costs import ISAAC_COSTS

    changed = [f"{name} = {getattr(costs, name)!r}" for name in costs.__dataclass_fields__
               if getattr(costs, name) != getattr(ISAAC_COSTS, name)]
    return ("Prices: ISAAC / Accelergy (docs/performance.md), ADC model "
            f"{costs.adc_model}" + ("; changed: " + ", ".join(changed) if changed else ""))


def markdown_report(rows: list[dict], path: str | Path, *, command: str, config=None,
                    costs=None, title: str = "bitline compare", per_layer: bool = False,
                    notes: list[str] | None = None) -> Path:
    """Write a Markdown report of the rows to ``path`` and its plots next to it.

    The report states the command, the versions (:func:`versions`) and the accelerator
    config (``config``: an :class:`~bitline.hw.spec.config.AcceleratorConfig`, as TOML),
    the prices (``costs``: a :class:`~bitline.sw.perf.CostModel`, named where it differs
    from ISAAC's),
    then the strategy table with the description of each named row (baselines and variants
    of :mod:`bitline.sw.flow.baselines`), its plot (``<stem>.png``, :func:`plot_comparison`)
    and, with ``per_layer``, the per-layer table and the stage plot (``<stem>-layers.png``,
    :func:`plot_stages`), and a legend of every column. Without matplotlib the plots are
    left out and the report says so. Returns the path of the Markdown file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    parts = [f"# {title}", "", "Command:", "", "```", command, "```", "",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()), ""]
    if costs is not None:
        parts += [_costs_text(costs), ""]
    if config is not None:
        parts += ["Accelerator config (requested; per-row sizing in the notes):", "",
                  "```toml", config.to_toml().rstrip(), "```", ""]
    columns, cells = summary_table(rows)
    parts += ["## Strategies", "", _markdown_table(columns, cells), ""]
    named = _named_rows(rows)
    if named:
        parts += ["Named rows:", ""] + [f"* `{label}`: {text}" for label, text in named] + [""]
    legend_columns = list(columns)
    figures = [("comparison", plot_comparison, path.with_suffix(".png"))]
    if per_layer:
        figures.append(("stage cycles per layer", plot_stages,
                        path.with_name(path.stem + "-layers.png")))
    for caption, plot, target in figures[:1]:
        parts += _figure(caption, plot, rows, target)
    if per_layer:
        layer_cols, layer_cells = layer_table(rows)
        legend_columns += layer_cols
        parts += ["## Per layer", "", _markdown_table(layer_cols, layer_cells), ""]
        parts += _figure(*figures[1][:2], rows, figures[1][2])
    if notes:
        parts += ["## Notes", ""] + [f"* {note}" for note in notes] + [""]
    parts += ["## Columns", "", _legend(legend_columns), ""]
    path.write_text("\n".join(parts))
    return path


def _named_rows(rows: list[dict]) -> list[tuple[str, str]]:
    """``(label, description)`` of the rows that are named baselines or variants."""
    from bitline.sw.flow.baselines import BASELINES, VARIANTS

    runs = {run.label: run for run in (*BASELINES, *VARIANTS.values())}
    return [(row["strategy"], runs[row["strategy"]].description) for row in rows
            if row["strategy"] in runs]


def _figure(caption: str, plot, rows: list[dict], target: Path) -> list[str]:
    try:
        written = plot(rows, target)
    except ValueError as error:
        return [f"(no {caption} plot: {error})", ""]
    return [f"![{caption}]({written.name})", ""]
