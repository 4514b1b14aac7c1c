"""Looking at a study's results: tables, Pareto fronts, plots, a Markdown summary.

``bitline dse report RESULTS`` reads a results store (:mod:`.store`) and

* prints the points table (the axes that vary, then the metrics; failed points listed);
* finds the Pareto front over the objective metrics present (:data:`OBJECTIVES`: energy,
  latency, area lower is better, accuracy higher; ``cycles`` stands in for ``latency`` when
  only it was measured): a point is on the front when no other point is at least as good in
  every objective and better in one;
* writes plots (matplotlib): Pareto scatters (the first objective against each other one,
  and latency against accuracy), one colour per strategy with the front circled; and per
  varying axis (hardware, quant, network, budget, analog), every metric against it (a
  panel each), one line per strategy (mean over the other axes);
* writes ``summary.md``: the study, the front, the best point per strategy and metric, and
  the plots.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np

from bitline.sw.flow.study import METRICS

__all__ = ["OBJECTIVES", "load_results", "pareto_mask", "pareto_front", "points_table",
           "write_plots", "markdown_summary", "write_parquet"]

#: Metrics a Pareto front is taken over, in this order, when the study measured them.
OBJECTIVES = ("energy", "latency", "accuracy", "analog_accuracy", "area")


def load_results(path) -> tuple[dict, list[dict]]:
    """``(study, records)`` of a store: one flat record per point (axes, metrics, error)."""
    from bitline.sim.dse.store import ResultStore

    with ResultStore.open(path) as store:
        study, rows = store.study, store.rows()
    records = [{"id": row["id"], **row["axes"], **row["metrics"], "error": row["error"],
                "seconds": row["seconds"], "bitline_version": row["bitline_version"],
                "config_digest": row["config_digest"]} for row in rows]
    order = {name: {str(v): i for i, v in enumerate(values)}
             for name, values in study["axes"].items()}
    # file order of the axes (the store keeps rows by id)
    records.sort(key=lambda r: [order[name].get(str(r.get(name)), 0) for name in order])
    return study, records


def _objectives(study: dict) -> list[str]:
    metrics = study["metrics"]
    names = [name for name in OBJECTIVES if name in metrics]
    if "latency" not in metrics and "cycles" in metrics:
        names.insert(min(1, len(names)), "cycles")
    return names


def pareto_mask(values: np.ndarray) -> np.ndarray:
    """Non-dominated rows of ``values`` (n x m, every column lower-is-better).

    Vectorized over blocks of rows (memory ``block x n x m``); NaN rows are dominated.
    """
    values = np.asarray(values, dtype=np.float64)
    usable = ~np.isnan(values).any(axis=1)
    keep = usable.copy()
    good = values[usable]
    block = max(1, 2_000_000 // max(1, good.size))
    index = np.flatnonzero(usable)
    for lo in range(0, len(good), block):
        mine = good[lo:lo + block, None, :]
        dominated = ((good[None] <= mine).all(-1) & (good[None] < mine).any(-1)).any(-1)
        keep[index[lo:lo + block]] = ~dominated
    return keep


def pareto_front(study: dict, records: list[dict], objectives=None) -> list[dict]:
    """The records on the Pareto front of ``objectives`` (default :func:`_objectives`)."""
    objectives = list(objectives or _objectives(study))
    if not objectives:
        return []
    sign = {name: -1.0 if METRICS[name][2] == "max" else 1.0 for name in objectives}
    values = np.array([[sign[name] * _number(r.get(name)) for name in objectives]
                       for r in records], dtype=np.float64).reshape(len(records), -1)
    return [r for r, on in zip(records, pareto_mask(values)) if on]


def _number(value) -> float:
    return float(value) if isinstance(value, (int, float)) else math.nan


def _varying(study: dict) -> list[str]:
    return [name for name, values in study["axes"].items() if len(values) > 1]


def _text(value, metric: str | None = None) -> str:
    if value is None:
        return "-"
    if metric in ("accuracy", "analog_accuracy"):
        return f"{100 * value:.2f} %"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def points_table(study: dict, records: list[dict]) -> tuple[list[str], list[list[str]]]:
    """``(columns, cells)``: the varying axes (all axes if none vary), metrics, error."""
    axes = _varying(study) or list(study["axes"])
    metrics = list(study["metrics"])
    columns = [*axes, *metrics] + (["error"] if any(r["error"] for r in records) else [])
    cells = [[_text(r.get(c), c if c in METRICS else None) if c != "error" else
              (r["error"] or "") for c in columns] for r in records]
    return columns, cells


def best_per_strategy(study: dict, records: list[dict]) -> list[dict]:
    """Per strategy and metric, the best point (its value and varying axes)."""
    best = []
    strategies = dict.fromkeys(r.get("strategy") for r in records)
    for strategy, metric in itertools.product(strategies, study["metrics"]):
        mine = [r for r in records if r.get("strategy") == strategy
                and isinstance(r.get(metric), (int, float))]
        if not mine:
            continue
        pick = (max if METRICS[metric][2] == "max" else min)(mine, key=lambda r: r[metric])
        best.append({"strategy": strategy, "metric": metric, "value": pick[metric],
                     "point": {name: pick.get(name) for name in _varying(study)}})
    return best


def write_plots(study: dict, records: list[dict], folder) -> list[Path]:
    """Write the Pareto scatters and the axis-against-metric plots; return their paths."""
    from bitline.sw.flow.report import pyplot, save_figure

    plt = pyplot()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    strategies = list(dict.fromkeys(r.get("strategy") for r in records))
    front = {r["id"] for r in pareto_front(study, records)}
    paths = []
    for x_name, y_name in _pareto_pairs(study):
        figure, axis = plt.subplots(figsize=(5.5, 4))
        for strategy in strategies:
            mine = [r for r in records if r.get("strategy") == strategy and not r["error"]]
            axis.scatter([_number(r.get(x_name)) for r in mine],
                         [_number(r.get(y_name)) for r in mine], s=16, label=strategy)
        on = [r for r in records if r["id"] in front]
        axis.scatter([_number(r.get(x_name)) for r in on], [_number(r.get(y_name)) for r in on],
                     s=60, facecolors="none", edgecolors="black", label="Pareto front")
        axis.set_xlabel(f"{x_name} ({METRICS[x_name][1]})")
        axis.set_ylabel(f"{y_name} ({METRICS[y_name][1]})")
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize="x-small")
        figure.suptitle(f"{study['name']}: {y_name} vs {x_name}", fontsize=10)
        paths.append(_save(plt, save_figure, figure, folder / f"pareto_{x_name}_{y_name}.png"))
    for axis_name in [name for name in _varying(study) if name != "strategy"]:
        paths.append(_axis_plot(plt, save_figure, study, records, strategies, axis_name,
                                folder))
    return paths


def _pareto_pairs(study: dict) -> list[tuple[str, str]]:
    """The scatter plots: the first objective against each other one, and the second
    (latency) against accuracy -- the fronts the papers draw -- not every pair."""
    names = _objectives(study)
    pairs = [(names[0], other) for other in names[1:]]
    accuracy = [name for name in names if name.endswith("accuracy")]
    if len(names) > 2 and accuracy and names[1] not in accuracy:
        pairs.append((names[1], accuracy[0]))
    return pairs


def _save(plt, save_figure, figure, path: Path) -> Path:
    try:
        return save_figure(figure, path)
    finally:
        plt.close(figure)


def _axis_plot(plt, save_figure, study, records, strategies, axis_name, folder):
    """One hardware axis against every metric (a panel each), a line per strategy; the
    mean over the other axes."""
    values = [str(v) for v in study["axes"][axis_name]]
    metrics = list(study["metrics"])
    figure, panels = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.6),
                                  squeeze=False)
    for axis, metric in zip(panels[0], metrics):
        for strategy in strategies:
            means = []
            for value in values:
                found = [_number(r.get(metric)) for r in records
                         if r.get("strategy") == strategy and str(r.get(axis_name)) == value
                         and not r["error"]]
                means.append(float(np.mean(found)) if found else math.nan)
            axis.plot(range(len(values)), means, marker="o", label=strategy)
        long = sum(map(len, values)) > 30          # slant long labels so they do not overlap
        axis.set_xticks(range(len(values)), values, fontsize="small",
                        rotation=45 if long else 0, ha="right" if long else "center")
        axis.set_xlabel(axis_name)
        axis.set_ylabel(f"{metric} ({METRICS[metric][1]})")
        axis.grid(True, alpha=0.3)
    panels[0][0].legend(fontsize="x-small")
    figure.suptitle(f"{study['name']}: metrics by {axis_name} (mean over the other axes)",
                    fontsize=10)
    figure.tight_layout()
    return _save(plt, save_figure, figure, folder / f"axis_{axis_name}.png")


def _markdown_table(columns, cells) -> list[str]:
    return ["| " + " | ".join(columns) + " |", "|" + "|".join(["---"] * len(columns)) + "|",
            *("| " + " | ".join(row) + " |" for row in cells)]


def markdown_summary(study: dict, records: list[dict], plots=(), folder=None) -> str:
    """The Markdown summary: study, counts, Pareto front, best per strategy, plots."""
    failed = [r for r in records if r["error"]]
    lines = [f"# Study {study['name']}", "",
             f"- file: `{study['path']}`, digest `{study['digest'][:16]}`",
             f"- points: {len(records)} stored of {study['points']} ({len(failed)} failed)",
             f"- metrics: {', '.join(study['metrics'])}",
             f"- axes: " + "; ".join(f"{k} = {', '.join(map(str, v))}"
                                    for k, v in study["axes"].items()), ""]
    objectives = _objectives(study)
    front = pareto_front(study, records)
    if objectives:
        lines += [f"## Pareto front ({', '.join(objectives)}): {len(front)} points", ""]
        columns, cells = points_table(study, front)
        lines += _markdown_table(columns, cells) + [""]
    best = best_per_strategy(study, records)
    if best:
        lines += ["## Best point per strategy and metric", ""]
        lines += _markdown_table(["strategy", "metric", "value", "at"], [
            [b["strategy"], b["metric"], _text(b["value"], b["metric"]),
             ", ".join(f"{k} {v}" for k, v in b["point"].items() if k != "strategy")]
            for b in best]) + [""]
    if failed:
        lines += ["## Failed points", ""] + [
            f"- {', '.join(f'{k} {r.get(k)}' for k in _varying(study))}: {r['error']}"
            for r in failed] + [""]
    if plots:
        lines += ["## Plots", ""]
        for path in plots:
            shown = Path(path).relative_to(folder) if folder else Path(path)
            lines.append(f"![{Path(path).stem}]({shown})")
        lines.append("")
    return "\n".join(lines)


def write_parquet(records: list[dict], path) -> Path:
    """Write the records as a Parquet table (pyarrow); lists become JSON text."""
    import json

    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as error:
        raise ValueError('--parquet needs pyarrow: pip install -e ".[dse]"') from error

    columns = list(dict.fromkeys(key for record in records for key in record))
    data = {name: [json.dumps(r.get(name)) if isinstance(r.get(name), (list, dict))
                   else r.get(name) for r in records] for name in columns}
    path = Path(path)
    pq.write_table(pa.table(data), path)
    return path
