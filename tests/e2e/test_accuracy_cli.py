"""``bitline accuracy`` and the accuracy table of docs/quantization.md."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

from click.testing import CliRunner

from bitline.sw.cli import cli, main
from bitline.sim.evaluate import REPORT_KEYS

ROOT = Path(__file__).resolve().parents[2]


def run_json(*args) -> dict:
    result = CliRunner().invoke(cli, ["accuracy", *map(str, args), "--json"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_int8_json_report():
    report = run_json("digits-cnn", "--quant", "int8", "--dataset", "digits")
    for key in REPORT_KEYS:
        assert isinstance(report[key], float)
    assert report["images"] == 450
    assert report["avg_weight_bits"] == 8.0 and report["avg_activation_bits"] == 8.0
    assert report["zero_block_fraction"] == 0.0
    assert report["accuracy"] >= report["fp32_accuracy"] - 0.005


def test_bwq3_file_within_one_percent_of_fp32():
    report = run_json("digits-cnn", "--quant", ROOT / "examples/quant/bwq3.toml")
    assert report["mode"] == "bwq"
    assert report["avg_weight_bits"] <= 3.0
    assert report["accuracy"] >= report["fp32_accuracy"] - 0.01
    assert 0 <= report["zero_block_fraction"] < 1
    assert sum(report["block_bits_histogram"].values()) > 0


def test_text_report():
    result = CliRunner().invoke(cli, ["accuracy", "digits-cnn", "--quant", "apot4"],
                                catch_exceptions=False)
    assert result.exit_code == 0
    for label in ("fp32 accuracy", "accuracy", "avg weight bits", "avg activation bits",
                  "zero-block fraction"):
        assert label in result.output


def test_malformed_spec_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('[weights]\nscheme = "int"\nbits = 40\n')
    assert main(["accuracy", "digits-cnn", "--quant", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"spec {bad}: weights.bits: bits for scheme int must be between 2 and 16" in err
    assert main(["accuracy", "digits-cnn", "--quant", "bwq9"]) == 2
    assert "bwq.budget: 9.0 is above the maximum 8" in capsys.readouterr().err


def _documented_table() -> dict[str, float]:
    """spec -> accuracy (%) from the table in docs/quantization.md."""
    text = (ROOT / "docs" / "quantization.md").read_text()
    rows = re.findall(r"^\| [^|]+ \| `([^`]+)` \| ([0-9.]+) \|", text, flags=re.MULTILINE)
    return {spec: float(value) for spec, value in rows}


def test_documented_table_is_reproduced():
    """Rows of the docs table, recomputed by scripts/accuracy_table.py's code."""
    spec = importlib.util.spec_from_file_location("accuracy_table",
                                                  ROOT / "scripts" / "accuracy_table.py")
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    documented = _documented_table()
    rows = [row for row in table.ROWS if row[1] in ("int4", "varied4", "bwq3", "bwq2")]
    assert len(rows) == 4 and all(stem in documented for _, stem in rows)
    reports = table.build_rows("digits-cnn", "digits", rows)
    for report in reports:
        assert round(100 * report["accuracy"], 2) == documented[report["spec"]]
    assert "| FP32 |" in table.markdown(reports)
