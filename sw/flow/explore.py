"""Hardware sweeps like the papers' figures: one accelerator field (or pair) at a time.

``bitline explore AXIS MODEL --values ...`` compiles MODEL under every strategy at every
value of one hardware axis (:data:`AXES`) and reports cycles, energy, area and the speedup
and energy saving against a named baseline strategy *at the same point* (same hardware):

* ``ou``    -- OU size ``ROWSxCOLS`` (``ou_rows``, ``ou_cols``; BWQ: 9x8 ... 128x128);
* ``adc``   -- ADC resolution in bits (``adc_bits``);
* ``xbar``  -- crossbar size ``ROWSxCOLS`` or ``N`` for ``NxN`` (``rows``, ``cols``);
* ``cells`` -- bits per ReRAM cell (``cell_bits``).

Each point's config is the base config (preset or file) with the swept field(s) replaced
and, by rule, the fields that must follow them (:func:`point_config`):

* ``adc_bits`` follows with ``adc="exact"`` (axes ``ou``, ``xbar``, ``cells``): the
  smallest resolution that keeps every row of the OU exact, ``ceil(log2(ou_rows *
  level_max * dac_max + 1))`` (9 rows of 1-bit cells: 4 bits, 128 rows: 8 bits). With
  ``adc="fixed"`` it stays, and a mapper drives only ``exact_rows_per_ou`` rows per read;
* ``adcs_per_xbar`` follows the OU width on the ``ou`` axis so that a read takes as many
  conversion cycles as in the base config: ``ceil(ou_cols / base.conversions_per_read)``
  (the ``bwq`` preset has one ADC per OU column, so it stays one conversion per read).

A point whose config is invalid raises a ``ValueError`` naming the axis, the value and the
field (the :class:`~bitline.hw.spec.config.AcceleratorConfig` message). A run that fails at
a valid point (e.g. a layer does not fit) gives rows with ``error`` set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bitline.hw.spec.config import AcceleratorConfig
from bitline.hw.spec.program import STRATEGIES

__all__ = ["AXES", "ADC_POLICIES", "Axis", "parse_values", "exact_adc_bits", "point_config",
           "explore",
           "explore_table", "plot_explore"]

#: How ``adc_bits`` follows a point: ``exact`` (every OU row exact) or ``fixed`` (as given).
ADC_POLICIES = ("exact", "fixed")


@dataclass(frozen=True)
class Axis:
    """One sweepable hardware axis.

    Attributes
    ----------
    name:
        The subcommand / axis name.
    fields:
        The :class:`AcceleratorConfig` fields a value sets (one, or a ``RxC`` pair).
    default:
        Default ``--values`` (the papers' points).
    unit:
        Label of the axis in tables and plots.
    """

    name: str
    fields: tuple[str, ...]
    default: str
    unit: str

    def parse(self, text: str) -> dict[str, int]:
        """Return the field values of one value (``"16x16"``, ``"128"``, ``"4"``).

        Raises
        ------
        ValueError
            If the text is not an integer (or ``RxC`` for a pair).
        """
        parts = text.lower().split("x")
        if len(self.fields) == 2 and len(parts) == 1 and self.name == "xbar":
            parts = parts * 2                      # "128" is a 128 x 128 crossbar
        if len(parts) != len(self.fields) or not all(p.strip().isdigit() for p in parts):
            form = "ROWSxCOLS" if len(self.fields) == 2 else "an integer"
            raise ValueError(f"explore {self.name}: value {text!r} is not {form}")
        return {field: int(part) for field, part in zip(self.fields, parts)}


#: The sweepable axes by name.
AXES: dict[str, Axis] = {
    "ou": Axis("ou", ("ou_rows", "ou_cols"), "9x8,16x16,32x32,64x64,128x128", "OU size"),
    "adc": Axis("adc", ("adc_bits",), "3,4,5,6,8", "ADC bits"),
    "xbar": Axis("xbar", ("rows", "cols"), "64,128,256,512", "crossbar size"),
    "cells": Axis("cells", ("cell_bits",), "1,2,3,4", "bits per cell"),
}


def parse_values(axis: str, values: str | None) -> list[str]:
    """Split ``--values`` (default: the axis's) into value texts, each checked by the axis.

    Raises
    ------
    ValueError
        For an unknown axis, an empty list or a malformed value.
    """
    if axis not in AXES:
        raise ValueError(f"unknown axis {axis!r}; choose from {', '.join(AXES)}")
    texts = [part.strip() for part in (values or AXES[axis].default).split(",") if part.strip()]
    if not texts:
        raise ValueError(f"explore {axis}: --values is empty")
    for text in texts:
        AXES[axis].parse(text)
    return texts


def exact_adc_bits(ou_rows: int, cell_bits: int, dac_bits: int) -> int:
    """Return the smallest ADC resolution that keeps all ``ou_rows`` rows of a read exact.

    ``ceil(log2(ou_rows * (2**cell_bits - 1) * (2**dac_bits - 1) + 1))``: the ADC must
    represent the largest column sum of one read.
    """
    largest = ou_rows * ((1 << cell_bits) - 1) * ((1 << dac_bits) - 1)
    return max(1, math.ceil(math.log2(largest + 1)))


def point_config(base: AcceleratorConfig, axis: str, value: str,
                 adc: str = "exact") -> AcceleratorConfig:
    """Return the config of one sweep point (module docstring: the follow rules).

    Raises
    ------
    ValueError
        ``explore <axis> <value>: <field> must be ...`` when the point is not a valid
        config, or for an unknown ``adc`` policy.
    """
    if adc not in ADC_POLICIES:
        raise ValueError(f"adc policy must be one of {', '.join(ADC_POLICIES)}, not {adc!r}")
    changes = AXES[axis].parse(value)
    if axis == "ou":
        per_read = base.conversions_per_read
        changes["adcs_per_xbar"] = max(1, -(-changes["ou_cols"] // per_read))
    try:
        # Raise the ADC first when it must follow: a cell or OU change may need it to be
        # valid at all (an ADC that cannot resolve one row is rejected).
        if adc == "exact" and axis != "adc":
            values = {**base.to_dict(), **changes}
            changes["adc_bits"] = exact_adc_bits(values["ou_rows"], values["cell_bits"],
                                                 values["dac_bits"])
        return base.replace(**changes)
    except ValueError as error:
        raise ValueError(f"explore {axis} {value}: {error}") from None


def explore(model, axis: str, values, strategies=STRATEGIES, specs: dict | None = None, *,
            config: AcceleratorConfig, calib_x, baseline: str = "isaac", adc: str = "exact",
            xbars: str | int = "auto", costs=None, labels: dict | None = None,
            progress=None) -> dict:
    """Compile ``model`` under ``strategies`` at every value of ``axis``; return the sweep.

    Every point runs :func:`~bitline.sw.flow.compare_strategies` (no paper baselines) on
    :func:`point_config`; ``baseline`` is compared too (added when missing) and every row
    gets ``speedup_vs_<baseline>`` and ``energy_saving_vs_<baseline>`` against the
    baseline's row at the same point (``None`` when either run failed).

    Returns
    -------
    dict
        ``{"axis", "unit", "fields", "values", "baseline", "adc", "base_config", "labels",
        "points": [one row per (value, strategy): value, the point's swept and following
        fields, and the compare row (strategy, cycles, energy_pj, area_mm2, ...)]}``.

    Raises
    ------
    ValueError
        For a bad value or invalid point config (before any run), or an unknown baseline.
    """
    from bitline.sw.flow.compare import compare_strategies, strategy_specs

    if baseline not in STRATEGIES:
        raise ValueError(f"unknown baseline strategy {baseline!r}; choose from "
                         f"{', '.join(STRATEGIES)}")
    strategies = list(strategies) + ([baseline] if baseline not in strategies else [])
    specs = {**strategy_specs(strategies), **(specs or {})}
    texts = parse_values(axis, values) if isinstance(values, str) or values is None \
        else [str(v) for v in values]
    configs = [point_config(config, axis, text, adc) for text in texts]   # all checked first
    follow = [*AXES[axis].fields, "adc_bits", "adcs_per_xbar"]
    points = []
    for text, point in zip(texts, configs):
        if progress:
            progress(f"explore {axis} = {text}")
        rows = compare_strategies(model, strategies, specs, config=point, calib_x=calib_x,
                                  xbars=xbars, baselines=False, labels=labels,
                                  keep_going=True, costs=costs)
        base = next(row for row in rows if row["strategy"] == baseline)
        fields = {name: getattr(point, name) for name in dict.fromkeys(follow)}
        for row in rows:
            usable = not row.get("error") and not base.get("error")
            row[f"speedup_vs_{baseline}"] = base["cycles"] / row["cycles"] if usable else None
            row[f"energy_saving_vs_{baseline}"] = (base["energy_pj"] / row["energy_pj"]
                                                   if usable else None)
            points.append({"value": text, **fields, **row})
    return {"axis": axis, "unit": AXES[axis].unit, "fields": list(AXES[axis].fields),
            "values": texts, "baseline": baseline, "adc": adc,
            "base_config": config.to_dict(), "labels": dict(labels or {}), "points": points}


#: Columns of :func:`explore_table`.
_TABLE_COLUMNS = ("value", "strategy", "quant", "adc_bits", "adcs_per_xbar", "crossbars",
                  "cycles", "energy_pj", "area_mm2")


def explore_table(result: dict) -> tuple[list[str], list[list[str]]]:
    """Return the sweep table as ``(columns, cells)``: per value and strategy, cycles,
    energy, area and the ratios against the baseline (text cells; ``-`` for a failed run)."""
    from bitline.sw.flow.report import cell_text

    baseline = result["baseline"]
    columns = list(_TABLE_COLUMNS) + [f"speedup_vs_{baseline}",
                                      f"energy_saving_vs_{baseline}"]
    if any(point.get("throughput_ips") for point in result["points"]):
        columns.insert(columns.index("energy_pj"), "throughput_ips")
    cells = [[cell_text(point.get(column), column) for column in columns]
             for point in result["points"]]
    return columns, cells


def plot_explore(result: dict, path):
    """Plot cycles, energy, area and speedup against the swept value, one line per strategy.

    Writes ``path`` (PNG) and returns it as a :class:`~pathlib.Path`.

    Raises
    ------
    ValueError
        If matplotlib is missing.
    """
    from bitline.sw.flow.report import pyplot, save_figure

    plt = pyplot()
    baseline = result["baseline"]
    panels = (("cycles", "cycles per image", True), ("energy_pj", "energy per image (pJ)", True),
              ("area_mm2", "area of used units (mm2)", True),
              (f"speedup_vs_{baseline}", f"speedup vs {baseline} (x)", False))
    figure, axes = plt.subplots(1, 4, figsize=(16, 3.8))
    values = result["values"]
    strategies = dict.fromkeys(point["strategy"] for point in result["points"])
    for axis, (key, label, log) in zip(axes, panels):
        for strategy in strategies:
            by_value = {p["value"]: p.get(key) for p in result["points"]
                        if p["strategy"] == strategy}
            axis.plot(range(len(values)), [by_value.get(v) or math.nan for v in values],
                      marker="o", label=strategy)
        axis.set_xticks(range(len(values)), values, fontsize="small")
        axis.set_xlabel(result["unit"])
        axis.set_ylabel(label)
        if log:
            axis.set_yscale("log")
        axis.grid(True, alpha=0.3)
    axes[-1].axhline(1.0, color="black", linewidth=0.8, linestyle="--")
    axes[0].legend(fontsize="x-small")
    figure.suptitle(f"{result.get('model', '')} swept over {result['unit']} "
                    f"(ADC {result['adc']})", fontsize=10)
    try:
        return save_figure(figure, path)
    finally:
        plt.close(figure)
