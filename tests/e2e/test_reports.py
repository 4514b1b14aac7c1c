"""Reports of ``bitline compare`` (--per-layer, --csv, --plot, --report) and the hardware
sweeps of ``bitline explore``, on the digits CNN.

Every number is checked against a second source: the CSV against the JSON, the per-layer
records against the row totals, the ADC energy against conversions x the pow2 price, the
sweep ratios against the baseline row's cycles and energy.
"""

from __future__ import annotations

import json
from dataclasses import replace

import click
import pytest
from click.testing import CliRunner

from bitline.hw.spec.config import PRESETS, preset
from bitline.sw.cli import cli, main
from bitline.sw.flow.explore import AXES, exact_adc_bits, point_config
from bitline.sw.flow.report import LEGEND, read_csv, rows_to_csv
from bitline.sw.perf import ENERGY_COMPONENTS

PNG = b"\x89PNG"


def invoke(*args) -> str:
    result = CliRunner().invoke(cli, [str(arg) for arg in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """One ``compare`` run writing every export, and its JSON."""
    out = tmp_path_factory.mktemp("compare")
    text = invoke("compare", "digits-cnn", "--strategies", "isaac,bwq", "--no-baselines",
                  "--per-layer", "--adc-model", "pow2", "--csv", out / "layers.csv",
                  "--plot", out / "cmp.png", "--report", out / "report.md", "--json")
    return out, json.loads(text)


def test_per_layer_json_adds_up_to_the_rows(compared):
    _, data = compared
    assert [row["strategy"] for row in data["rows"]] == ["isaac", "bwq"]
    for row in data["rows"]:
        layers = row["layers"]
        assert len(layers) == 5                       # the digits CNN's compute layers
        for key in ("cycles", "ou_reads", "adc_conversions", "crossbars"):
            assert sum(layer[key] for layer in layers) == row[key], key
        assert sum(layer["energy_pj"] for layer in layers) == pytest.approx(row["energy_pj"])
        for layer in layers:
            parts = [layer[f"energy_{name}_pj"] for name in ENERGY_COMPONENTS]
            assert sum(parts) == pytest.approx(layer["energy_pj"])
            # --adc-model pow2 reached the compare: 4-bit ADC at 1.667 pJ * 2**(4 - 8).
            assert layer["energy_adc_pj"] == pytest.approx(
                layer["adc_conversions"] * 1.667 / 16)
        # The pipeline's stages: one copy is the layer job; the slowest is the bottleneck.
        stages = row["stage_cycles"]
        assert list(stages) == [layer["layer"] for layer in layers]
        for layer in layers:
            if row["copies"][layer["layer"]] == 1:
                assert stages[layer["layer"]] == layer["cycles"]
            assert stages[layer["layer"]] <= layer["cycles"]
        assert max(stages.values()) == row["bottleneck_cycles"]


def test_per_layer_csv_round_trips_to_the_json(compared):
    out, data = compared
    records = read_csv(out / "layers.csv")
    expected = [(row["strategy"], layer) for row in data["rows"] for layer in row["layers"]]
    assert len(records) == len(expected)
    for record, (strategy, layer) in zip(records, expected):
        assert record["strategy"] == strategy
        for key, value in layer.items():
            assert record[key] == value, key          # exact: floats are written by repr
        row = next(r for r in data["rows"] if r["strategy"] == strategy)
        assert record["copies"] == row["copies"][layer["layer"]]


def test_summary_csv_round_trips(compared, tmp_path):
    _, data = compared
    path = rows_to_csv(data["rows"], tmp_path / "rows.csv")
    back = read_csv(path)
    for record, row in zip(back, data["rows"]):
        for key in ("cycles", "energy_pj", "ou_reads", "area_mm2", "speedup_vs_isaac",
                    "throughput_ips", "bottleneck"):
            assert record[key] == row[key], key
    with pytest.raises(ValueError, match="no row has per-layer results"):
        rows_to_csv([{k: v for k, v in row.items() if k != "layers"} for row in data["rows"]],
                    tmp_path / "x.csv", per_layer=True)


def test_rows_of_several_networks_get_a_model_column_and_one_plot(compared, tmp_path):
    from bitline.sw.flow.report import plot_comparison, summary_table

    _, data = compared
    other = [dict(row, labels={**row["labels"], "model": "other-net"}) for row in data["rows"]]
    rows = data["rows"] + other
    columns, cells = summary_table(rows)
    assert columns[0] == "model"
    assert [line[0] for line in cells] == ["digits-cnn"] * 2 + ["other-net"] * 2
    back = read_csv(rows_to_csv(rows, tmp_path / "nets.csv"))
    assert [(r["model"], r["strategy"], r["cycles"]) for r in back] == \
        [(row["labels"]["model"], row["strategy"], row["cycles"]) for row in rows]
    assert summary_table(data["rows"])[0][0] == "strategy"     # one network: no column
    assert plot_comparison(rows, tmp_path / "nets.png").read_bytes()[:4] == PNG


def test_markdown_report_embeds_tables_plots_command_config_versions(compared):
    out, data = compared
    text = (out / "report.md").read_text()
    assert "bitline compare digits-cnn --strategies isaac,bwq --no-baselines" in text
    assert "--adc-model pow2" in text and "ADC model pow2" in text
    assert "Versions: bitline " in text and "numpy" in text
    assert "[accelerator]" in text and "ou_rows = 9" in text
    for name in ("comparison", "stage cycles per layer"):
        assert f"![{name}](" in text
    for image in ("report.png", "report-layers.png", "cmp.png", "cmp-layers.png"):
        assert (out / image).read_bytes()[:4] == PNG, image
    for row in data["rows"]:
        assert f"| {row['strategy']} | {row['mapping']} |" in text
        assert f"{row['cycles']:,}" in text
    assert text.count("| isaac | /features/features.0/Conv |") == 1      # the per-layer table
    assert "## Columns" in text and LEGEND["stage_cycles"] in text


def test_report_describes_named_rows_and_changed_prices(compared, tmp_path):
    from bitline.sw.flow.baselines import baseline
    from bitline.sw.flow.report import markdown_report
    from bitline.sw.perf import ISAAC_COSTS

    _, data = compared
    rows = [dict(data["rows"][0], strategy="isaac-paper")]
    costs = replace(ISAAC_COSTS, dac_pj=0.2)
    text = markdown_report(rows, tmp_path / "r.md", command="bitline compare x",
                           costs=costs).read_text()
    assert f"* `isaac-paper`: {baseline('isaac-paper').description}" in text
    assert "changed: dac_pj = 0.2" in text
    assert "(no comparison plot" not in text and (tmp_path / "r.png").exists()


def test_compare_prints_the_per_layer_table_and_legend():
    text = invoke("compare", "digits-cnn", "--strategies", "bwq", "--no-baselines",
                  "--per-layer", "--budget", "xbars:20")
    assert "digits-cnn: per layer" in text and "/classifier/classifier.2/Gemm" in text
    assert "stage_cycles: " + LEGEND["stage_cycles"] in text


def test_report_of_a_bundle_with_another_cost_model(tmp_path):
    out = tmp_path / "bundle"
    invoke("compile", "digits-cnn", "-s", "bwq", "--quant", "bwq3", "-o", out, "-q")
    table = json.loads(invoke("report", out, "--json"))
    costs = tmp_path / "costs.toml"
    costs.write_text("[energy]\ndac = 0.834\n")
    pow2 = json.loads(invoke("report", out, "--json", "--adc-model", "pow2", "--costs", costs))
    assert table["adc"]["model"] == "table" and pow2["adc"]["model"] == "pow2"
    assert pow2["adc"]["pj_per_conversion"] == pytest.approx(1.667 / 16)
    conversions = table["totals"]["adc_conversions"]
    assert pow2["energy_pj"]["adc"] == pytest.approx(conversions * 1.667 / 16)
    assert pow2["energy_pj"]["dac"] == pytest.approx(2 * table["energy_pj"]["dac"])
    assert pow2["totals"]["cycles"] == table["totals"]["cycles"]


def test_bad_costs_file_is_a_usage_error_before_compiling(tmp_path, capsys):
    path = tmp_path / "costs.toml"
    path.write_text("[energy]\nadc_pj = 1.0\n")
    assert main(["compare", "digits-cnn", "--costs", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert str(path) in err and "energy.adc_pj = 1.0" in err
    assert main(["compare", "digits-cnn", "--adc-model", "cubic"]) == 2
    assert "unknown ADC model 'cubic'; choose from table, pow2" in capsys.readouterr().err


# ---------------------------------------------------------------------------- explore
def test_point_configs_follow_the_documented_rules():
    base = preset("bwq")
    assert [exact_adc_bits(rows, 1, 1) for rows in (9, 16, 32, 64, 128)] == [4, 5, 6, 7, 8]
    assert exact_adc_bits(9, 2, 1) == 5                 # 9 rows x level 3 = 27 < 32
    big = point_config(base, "ou", "128x128")
    assert (big.ou_rows, big.ou_cols, big.adc_bits, big.adcs_per_xbar) == (128, 128, 8, 128)
    assert big.exact_rows_per_ou == 128
    fixed = point_config(base, "ou", "32x32", adc="fixed")
    assert fixed.adc_bits == 4 and fixed.exact_rows_per_ou == 15
    # ISAAC: one ADC per 128 columns -> 128 conversions per read stays 128 per read...
    isaac = point_config(preset("isaac"), "ou", "16x16", adc="fixed")
    assert isaac.adcs_per_xbar == 1 and isaac.conversions_per_read == 16
    assert point_config(base, "xbar", "256").rows == 256 == point_config(base, "xbar",
                                                                        "256x256").cols
    cells = point_config(base, "cells", "2")
    assert cells.cell_bits == 2 and cells.adc_bits == 5
    assert point_config(base, "adc", "6").adc_bits == 6
    with pytest.raises(ValueError, match=r"explore xbar 8: ou_rows must be between 1 and "
                                         r"rows \(8\), not 9"):
        point_config(base, "xbar", "8")
    with pytest.raises(ValueError, match="explore ou: value '9by8' is not ROWSxCOLS"):
        point_config(base, "ou", "9by8")
    with pytest.raises(ValueError, match="explore ou 256x256: adc_bits must be between 1 "
                                         "and 12, not 9|ou_rows must be between"):
        point_config(base, "ou", "256x256")


@pytest.mark.parametrize("axis", sorted(AXES))
def test_explore_commands_follow_the_cli_conventions(axis):
    ctx = click.Context(cli)
    command = cli.get_command(ctx, "explore").get_command(ctx, axis)
    flags = {opt for param in command.params for opt in param.opts + param.secondary_opts}
    assert {"--json", "-q", "--quiet", "--config", "--preset", "--strategies", "--values",
            "--baseline", "--plot", "--csv", "--costs", "--adc-model", "--xbars"} <= flags
    preset_param = next(p for p in command.params if p.name == "preset_name")
    assert set(preset_param.type.choices) == set(PRESETS)
    assert ("--adc-bits" in flags) == (axis != "adc")


def test_explore_invalid_point_is_a_named_usage_error(capsys):
    assert main(["explore", "xbar", "digits-cnn", "--values", "128,8"]) == 2
    err = capsys.readouterr().err
    assert err == "error: explore xbar 8: ou_rows must be between 1 and rows (8), not 9\n"


def test_explore_ou_table_ratios_and_plot(tmp_path):
    plot, csv_path = tmp_path / "ou.png", tmp_path / "ou.csv"
    data = json.loads(invoke("explore", "ou", "digits-cnn", "--values", "9x8,16x16",
                             "--strategies", "bwq", "--plot", plot, "--csv", csv_path,
                             "--json"))
    assert data["axis"] == "ou" and data["values"] == ["9x8", "16x16"]
    points = data["points"]
    assert [(p["value"], p["strategy"]) for p in points] == [
        ("9x8", "bwq"), ("9x8", "isaac"), ("16x16", "bwq"), ("16x16", "isaac")]
    assert [p["adc_bits"] for p in points] == [4, 4, 5, 5]
    assert [(p["ou_rows"], p["ou_cols"], p["adcs_per_xbar"]) for p in points[2:]] == \
        [(16, 16, 16)] * 2
    for value in data["values"]:
        bwq, isaac = (p for p in points if p["value"] == value)
        assert isaac["speedup_vs_isaac"] == 1.0
        assert bwq["speedup_vs_isaac"] == pytest.approx(isaac["cycles"] / bwq["cycles"])
        assert bwq["energy_saving_vs_isaac"] == pytest.approx(
            isaac["energy_pj"] / bwq["energy_pj"])
    assert plot.read_bytes()[:4] == PNG
    back = read_csv(csv_path)
    assert [(r["value"], r["strategy"], r["cycles"], r["energy_pj"]) for r in back] == \
        [(p["value"], p["strategy"], p["cycles"], p["energy_pj"]) for p in points]


@pytest.mark.slow   # three sweeps of two points each: about 10-20 s on 2 busy cores
@pytest.mark.parametrize("axis, values", [("adc", "4,6"), ("xbar", "64,128"),
                                          ("cells", "1,2")])
def test_explore_other_axes_print_a_table(axis, values):
    text = invoke("explore", axis, "digits-cnn", "--values", values, "--strategies", "bwq",
                  "--baseline", "bwq")
    assert f"digits-cnn: {AXES[axis].unit} sweep, ratios vs bwq" in text
    for value in values.split(","):
        assert f"│ {value} " in text
    assert "failed" not in text
