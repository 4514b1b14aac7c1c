"""`bitline dse` on the command line: run, refuse a rerun, resume, flags that conflict."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from bitline.sim.dse import ResultStore
from bitline.sw.cli import cli, main

pytest.importorskip("sklearn")

STUDY = """
[study]
name = "one"
metrics = ["cycles", "crossbars"]
[axes]
strategy = ["bwq"]
ou = ["16x16", "128x128"]
xbar = [64]
"""


def test_run_refuse_resume_and_report(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "one.toml").write_text(STUDY)
    result = CliRunner().invoke(cli, ["dse", "one.toml", "--serial", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    # 128x128 does not fit a 64x64 crossbar: stored as failed, without a run
    assert (summary["points"], summary["ran"], summary["failed"]) == (2, 2, 1)
    assert summary["store"] == "one.results.sqlite" and summary["engine"].startswith("serial")
    with ResultStore.open(tmp_path / "one.results.sqlite") as store:
        rows = {row["axes"]["ou"]: row for row in store.rows()}
    assert rows["16x16"]["metrics"]["cycles"] > 0 and rows["16x16"]["error"] is None
    assert rows["128x128"]["error"].startswith("invalid config: ou_rows")
    assert main(["dse", "one.toml", "--serial"]) == 2
    assert "already holds 2 of the 2 points of this study: pass --resume" in \
        capsys.readouterr().err
    result = CliRunner().invoke(cli, ["dse", "run", "one.toml", "--serial", "--resume",
                                      "--json"])
    assert json.loads(result.output)["ran"] == 0
    assert main(["dse", "one.toml", "--resume", "--overwrite"]) == 2
    assert "give --resume or --overwrite, not both" in capsys.readouterr().err
    assert main(["dse", "one.toml", "--serial", "--workers", "2"]) == 2
    assert "give one of --serial, --workers N and --scheduler ADDRESS" in \
        capsys.readouterr().err
    result = CliRunner().invoke(cli, ["dse", "one.toml", "--dry-run", "--json"])
    assert json.loads(result.output)["points"] == 2
    assert main(["dse", "report", "missing.sqlite"]) == 2
    assert "missing.sqlite: results store not found" in capsys.readouterr().err
    assert main(["sweep", "digits-cnn", "--serial", "--scheduler", "tcp://x:1"]) == 2
    assert "give one of --serial" in capsys.readouterr().err
    for command in (["dse", "one.toml"], ["sweep", "digits-cnn"]):
        assert main([*command, "--serial", "--dashboard", ":8787"]) == 2
        assert "--dashboard is the embedded LocalCluster's" in capsys.readouterr().err
