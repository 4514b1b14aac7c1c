"""`bitline sweep`: accuracy under analog non-idealities per mapping strategy."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from bitline.sw.cli import cli, main
from bitline.sim.sweep import format_tables, nonideal_sweep, sweep_points

pytest.importorskip("sklearn")


def test_sweep_points_axes_and_grid():
    assert sweep_points([0, 0.1], [0, 0.01]) == [(0.0, 0.0), (0.1, 0.0), (0.0, 0.01)]
    assert len(sweep_points([0, 0.1], [0, 0.01, 0.02], grid=True)) == 6


@pytest.fixture(scope="module")
def report():
    return nonideal_sweep("digits-cnn", strategies=["bwq"], variations=[0, 0.3],
                          stuck=[0, 0.1], samples=12, seed=2)


def test_sweep_report(report):
    assert report["images"] == 12 and report["subsample_seed"] == 2
    assert [(p["variation"], p["stuck"]) for p in report["points"]] == \
        [(0.0, 0.0), (0.3, 0.0), (0.0, 0.1)]
    ideal = report["points"][0]
    # ideal parameters: the executor equals the golden model, prediction for prediction
    assert ideal["agreement"] == 1.0 and ideal["accuracy"] == report["ideal"]["bwq"]
    # 10 % stuck cells on a 1-bit-cell chip change predictions
    assert report["points"][2]["agreement"] < 1.0
    text = format_tables(report)
    assert "| bwq |" in text and "sigma 30 %" in text and "stuck 10 %" in text


def test_sweep_cli_json_and_plot(tmp_path):
    pytest.importorskip("matplotlib")
    plot = tmp_path / "sweep.png"
    result = CliRunner().invoke(cli, [
        "sweep", "digits-cnn", "--strategies", "bwq", "--variation", "0,0.1", "--stuck", "0",
        "--samples", "6", "--json", "--plot", str(plot), "--serial"])
    # --serial: the default Dask LocalCluster is tested in tests/unit/test_dse_sweep.py
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert len(report["points"]) == 2 and report["specs"] == {"bwq": "bwq3"}
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("args, message", [
    (["--variation", "0,x"], "expected comma-separated numbers"),
    (["--stuck", "0,1.5"], "--stuck values must be between 0 and 1, not 1.5"),
    (["--strategies", "bwq,foo"], "unknown strategy foo"),
    (["--chips", "0"], "--chips must be a positive integer"),
    (["--params", "nope.toml"], "nope.toml: analog parameter file not found"),
])
def test_sweep_cli_errors(args, message, capsys):
    code = main(["sweep", "digits-cnn", "--samples", "2", *args])
    assert code != 0
    assert message in capsys.readouterr().err
