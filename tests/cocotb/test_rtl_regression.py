"""The randomized RTL regression (sim/cocotb/tb_regression.py) in the suite: a seeded subset.

``scripts/rtl_regression.py --jobs 1000`` runs the full regression; here 48 jobs of seed 7
(16 on each build: random strategies, shapes, widths and copies, pauses on every stream,
resets in image loads and layer jobs) must all pass, and the regression must be able to
fail: a corrupted output and a wrong expected counter are reported as mismatches naming
the job, and a job whose output ``ready`` never rises is reported as a hang by the watchdog
(and the bench goes on with the next job).
"""

from __future__ import annotations

import pytest

from bitline.sim.cocotb.tb_regression import BUILDS, draw_job, run_regression

pytestmark = [pytest.mark.cocotb, pytest.mark.slow]

SEED = 7
JOBS_PER_BUILD = 16


@pytest.mark.parametrize("build", list(BUILDS))
def test_seeded_subset_passes(build, tmp_path):
    position = list(BUILDS).index(build)
    jobs = [position + len(BUILDS) * k for k in range(JOBS_PER_BUILD)]
    report = run_regression(build, SEED, jobs, tmp_path)
    bad = [record for record in report.records if record["status"] != "ok"]
    assert not bad, bad[:3]
    assert len(report.records) == JOBS_PER_BUILD
    # the subset exercises what it claims: resets and pauses happened, cycles were simulated
    assert report.resets > 0 and report.cycles > 0
    assert sum(record["cut"] for record in report.records) > 0   # inside a load or a job
    drawn = [draw_job(build, SEED, index) for index in jobs]
    assert any(any(job.throttle["rate"].values()) for job in drawn)


def test_faults_are_reported(tmp_path):
    """A corrupted output and a wrong counter are mismatches; a stuck ready is a hang."""
    jobs = [0, 3, 6, 9]                      # all on the first build
    faults = {"corrupt_output": [0], "wrong_counter": [3], "stuck_ready": [6]}
    report = run_regression(list(BUILDS)[0], SEED, jobs, tmp_path, faults=faults)
    status = {record["index"]: record for record in report.records}
    assert status[0]["status"] == "mismatch"
    assert any("outputs differ" in text for text in status[0]["messages"])
    assert status[3]["status"] == "mismatch"
    assert any("counter ou_reads" in text for text in status[3]["messages"])
    assert status[6]["status"] == "hang"
    assert any("watchdog" in text for text in status[6]["messages"])
    assert f"{SEED}:6" in status[6]["job"]
    assert status[9]["status"] == "ok"      # recovered after the hang
    assert "jobs failed" in report.failure
