#!/usr/bin/env python3
"""Print how the BWQ-vs-ISAAC energy saving depends on each price of the cost model.

Usage::

    python scripts/cost_sensitivity.py [--model digits-cnn] [--preset bwq]
                                       [--json FILE]

The model is compiled once with ``bwq`` (spec ``bwq3``) and once with ``isaac`` (``int8``)
on the preset (the ``isaac`` strategy row of ``bitline compare``: same hardware). Then every
energy price of :class:`bitline.sw.perf.CostModel` -- and the whole ADC table at once -- is
multiplied by 0.5 and by 2 while the others stay, the two programs are priced again
(:func:`bitline.sw.perf.analyze`; the counts do not change) and the table shows the energy
saving ``E_isaac / E_bwq`` at x0.5, x1 and x2, with each component's share of the two
energies at x1. A last row switches the ADC model to ``pow2``. Area prices do not enter
the energy and are left out. The docs/performance.md sensitivity table is this script's
markdown output for the digits CNN.
"""

from __future__ import annotations

import json
from dataclasses import replace

import click

from bitline.sw.flow import calibration_inputs, compile_model, load_config, resolve_target
from bitline.sw.perf import ISAAC_COSTS, analyze, cost_model

#: Energy price -> the energy component it prices (for the share columns). Two prices reach
#: a second component: ``shift_add_pj`` is also the add of each reduction transfer, and the
#: ``reduction`` share shown for ``router_bit_pj`` includes those adds.
PRICES = {
    "adc_table": ("adc",),
    "dac_pj": ("dac",),
    "crossbar_cell_pj": ("crossbar",),
    "sample_hold_pj": ("sample_hold",),
    "shift_add_pj": ("shift_add",),           # also part of each reduction add
    "input_register_bit_pj": ("input_register",),
    "output_register_pj": ("output_register",),
    "router_bit_pj": ("reduction",),
    "edram_bit_pj": ("edram",),
}
FACTORS = (0.5, 2.0)


def scaled(costs, price: str, factor: float):
    """Return ``costs`` with one price (or the whole ADC table) multiplied by ``factor``."""
    if price == "adc_table":
        return replace(costs, adc_table=tuple((bits, pj * factor)
                                              for bits, pj in costs.adc_table))
    return replace(costs, **{price: getattr(costs, price) * factor})


def sensitivity(model_name: str = "digits-cnn", preset_name: str = "bwq") -> dict:
    """Compile once per strategy, re-price per cost; return the table as a dict."""
    model = resolve_target(model_name).require("model", "cost_sensitivity")
    calib_x, _ = calibration_inputs(model, None, model_name=model_name)
    config = load_config(None, preset_name)
    runs = {strategy: compile_model(model, strategy, spec, config, calib_x)
            for strategy, spec in (("isaac", "int8"), ("bwq", "bwq3"))}

    def energies(costs):
        return {strategy: analyze(run.program, run.qmodel, costs=costs)
                for strategy, run in runs.items()}

    base = energies(ISAAC_COSTS)
    saving = base["isaac"].total_energy_pj / base["bwq"].total_energy_pj
    rows = []
    for price, components in PRICES.items():
        share = {s: sum(base[s].energy_pj[c] for c in components) / base[s].total_energy_pj
                 for s in base}
        ratios = {}
        for factor in FACTORS:
            priced = energies(scaled(ISAAC_COSTS, price, factor))
            ratios[factor] = priced["isaac"].total_energy_pj / priced["bwq"].total_energy_pj
        rows.append({"price": price, "share_isaac": share["isaac"], "share_bwq": share["bwq"],
                     "saving_x0.5": ratios[0.5], "saving_x1": saving,
                     "saving_x2": ratios[2.0]})
    pow2 = energies(cost_model(adc_model="pow2"))
    rows.append({"price": "adc_model = pow2", "share_isaac": None, "share_bwq": None,
                 "saving_x0.5": None, "saving_x1": saving,
                 "saving_x2": None,
                 "saving_switched": pow2["isaac"].total_energy_pj / pow2["bwq"].total_energy_pj})
    return {"model": model_name, "preset": preset_name, "saving": saving,
            "energy_pj": {s: r.total_energy_pj for s, r in base.items()}, "rows": rows}


def markdown(result: dict) -> str:
    """Return the table as Markdown."""
    def pct(value):
        return "" if value is None else f"{100 * value:.1f} %"

    def ratio(value):
        return "" if value is None else f"{value:.2f}x"

    lines = [f"Energy saving of `bwq` (bwq3) over `isaac` (int8) on `{result['model']}`, "
             f"`{result['preset']}` preset: {result['saving']:.2f}x at ISAAC's prices.", "",
             "| price | share of E (isaac) | share of E (bwq) | saving at x0.5 | at x1 | "
             "at x2 |", "|---|---:|---:|---:|---:|---:|"]
    for row in result["rows"]:
        if row["price"].startswith("adc_model"):
            lines.append(f"| ADC model switched to `pow2` (2^N from 8 bits) | | | | "
                         f"{ratio(row['saving_switched'])} | |")
            continue
        name = "ADC table (every entry)" if row["price"] == "adc_table" else f"`{row['price']}`"
        lines.append(f"| {name} | {pct(row['share_isaac'])} | {pct(row['share_bwq'])} | "
                     f"{ratio(row['saving_x0.5'])} | {ratio(row['saving_x1'])} | "
                     f"{ratio(row['saving_x2'])} |")
    return "\n".join(lines)


@click.command()
@click.option("--model", default="digits-cnn", show_default=True)
@click.option("--preset", "preset_name", default="bwq", show_default=True)
@click.option("--json", "json_path", default=None, metavar="FILE",
              help="Also write the table as JSON.")
def main(model, preset_name, json_path):
    """Print the cost-sensitivity table (Markdown)."""
    result = sensitivity(model, preset_name)
    click.echo(markdown(result))
    if json_path:
        with open(json_path, "w") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
