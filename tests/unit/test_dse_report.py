"""`bitline dse report`: tables, Pareto front (checked by brute force), plots, summary,
Parquet; and a point's metrics against what `bitline compare` prints for the same config."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from bitline.sim.dse import ResultStore, bitline_version
from bitline.sim.dse.point import point_payload, run_point
from bitline.sim.dse.report import load_results, pareto_front, pareto_mask
from bitline.sw.cli import cli
from bitline.sw.flow.study import parse_study

STUDY = {"study": {"name": "made-up", "metrics": ["energy", "latency", "area", "accuracy"]},
         "axes": {"strategy": ["isaac", "bwq"], "adc_bits": [4, 5, 6]}}


def _store(tmp_path):
    """A store with made-up metrics (the report is a function of the rows alone)."""
    study = parse_study(STUDY, source="made-up.toml")
    rng = np.random.default_rng(4)
    path = tmp_path / "made-up.sqlite"
    with ResultStore.open(path, study.to_dict(), version=bitline_version()) as store:
        for k, point in enumerate(study.points):
            failed = k == 3
            metrics = {} if failed else {
                "energy": float(rng.uniform(1, 10)), "latency": float(rng.uniform(1, 10)),
                "area": float(rng.uniform(1, 10)), "accuracy": float(rng.uniform(0.8, 1))}
            store.append({"id": point.id, "axes": point.axes, "metrics": metrics,
                          "error": "does not fit" if failed else None, "seed": point.seed,
                          "config_digest": point.config.digest[:16],
                          "bitline_version": bitline_version(), "seconds": 0.1,
                          "worker": "here"})
    return study, path


def _dominated_brute_force(a: dict, records: list[dict]) -> bool:
    """Is ``a`` dominated? Loops, on the metrics' own directions (accuracy higher)."""
    def as_good(b, x):
        return (b["energy"] <= x["energy"] and b["latency"] <= x["latency"]
                and b["area"] <= x["area"] and b["accuracy"] >= x["accuracy"])
    return any(as_good(b, a) and b != a and (
        b["energy"] < a["energy"] or b["latency"] < a["latency"] or b["area"] < a["area"]
        or b["accuracy"] > a["accuracy"]) for b in records)


def test_pareto_front_equals_brute_force(tmp_path):
    study, path = _store(tmp_path)
    stored, records = load_results(path)
    assert stored["digest"] == study.digest and len(records) == 6
    # rows come back in the study's axis order, not by id
    assert [(r["strategy"], r["adc_bits"]) for r in records] == \
        [(s, b) for s in ("isaac", "bwq") for b in (4, 5, 6)]
    good = [r for r in records if not r["error"]]
    front = pareto_front(stored, records)
    assert [r["id"] for r in front] == [r["id"] for r in good
                                        if not _dominated_brute_force(r, good)]
    assert 1 <= len(front) <= 5 and all(not r["error"] for r in front)
    # a larger random cloud, checked the same way
    rng = np.random.default_rng(0)
    values = rng.random((300, 3))
    mask = pareto_mask(values)
    brute = [not any((values[j] <= values[i]).all() and (values[j] < values[i]).any()
                     for j in range(300)) for i in range(300)]
    assert mask.tolist() == brute


def test_report_command_writes_tables_plots_summary_and_parquet(tmp_path):
    pytest.importorskip("matplotlib")
    pyarrow = pytest.importorskip("pyarrow.parquet")
    study, path = _store(tmp_path)
    out = tmp_path / "report"
    result = CliRunner().invoke(cli, ["dse", "report", str(path), "--out", str(out),
                                      "--parquet", str(tmp_path / "points.parquet")])
    assert result.exit_code == 0, result.output
    assert "made-up: 6 points" in result.output and "Pareto front:" in result.output
    assert "does not fit" in result.output
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert "pareto_energy_latency.png" in pngs and "axis_adc_bits.png" in pngs
    assert all((out / name).read_bytes()[:4] == b"\x89PNG" for name in pngs)
    summary = (out / "summary.md").read_text()
    assert "# Study made-up" in summary and "## Pareto front (energy, latency, accuracy, area)" \
        in summary and "![pareto_energy_latency](pareto_energy_latency.png)" in summary
    assert "points: 6 stored of 6 (1 failed)" in summary
    table = pyarrow.read_table(tmp_path / "points.parquet").to_pylist()
    _, records = load_results(path)
    assert [row["id"] for row in table] == [r["id"] for r in records]
    assert [row["energy"] for row in table] == [r.get("energy") for r in records]
    data = json.loads(CliRunner().invoke(cli, ["dse", "report", str(path), "--no-plots",
                                               "--out", str(out), "--json"]).output)
    assert len(data["points"]) == 6 and data["files"] == [str(out / "summary.md")]
    assert data["pareto"] == [r["id"] for r in pareto_front(study.to_dict(), records)]


def test_a_point_equals_bitline_compare_for_the_same_config(tmp_path):
    pytest.importorskip("sklearn")
    study = parse_study({"study": {"metrics": ["cycles", "latency", "throughput", "energy",
                                               "area", "crossbars"]},
                         "axes": {"strategy": ["bwq"], "adc_bits": [5]}})
    point = study.points[0]
    row = run_point(point_payload(study, point, bitline_version()))
    assert row["error"] is None
    config = tmp_path / "point.toml"
    point.config.save(config)
    result = CliRunner().invoke(cli, ["compare", "digits-cnn", "--strategies", "bwq",
                                      "--no-baselines", "--config", str(config), "--json"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)["rows"][0]
    metrics = row["metrics"]
    assert (metrics["cycles"], metrics["crossbars"]) == (printed["cycles"], printed["crossbars"])
    assert metrics["energy"] == printed["energy_pj"] and metrics["area"] == printed["area_mm2"]
    assert metrics["latency"] == printed["latency_s"]
    assert metrics["throughput"] == printed["throughput_ips"]
    assert metrics["spec"] == printed["quant"] == "bwq3"
    # and the latency is the cycles at the clock: a second, simpler count
    assert metrics["latency"] == pytest.approx(metrics["cycles"] / (point.config.clock_mhz * 1e6))
