"""The study engine: serial vs Dask bit for bit, a killed worker, a killed run and resume."""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import sys
import textwrap

import pytest

from bitline.sim.dse import Engine, ResultStore, StoreMismatch, VersionMismatch, run_study
from bitline.sim.dse import point as point_module
from bitline.sim.dse.engine import bitline_version, checked_call
from bitline.sw.flow.study import parse_study

pytest.importorskip("distributed")

#: A small study with a seeded metric (analog chips): 4 points of the digits CNN.
STUDY = {
    "study": {"name": "tiny", "seed": 11, "samples": 4, "chips": 2,
              "metrics": ["cycles", "energy", "area", "crossbars", "analog_accuracy"]},
    "axes": {"strategy": ["bwq"], "ou": ["9x8", "16x16"], "stuck": [0.0, 0.05]},
}
#: The fields that may differ between runs (where and how long a point ran).
RUN_FIELDS = ("seconds", "worker", "finished_at")


def _study():
    return parse_study(STUDY, source="tiny.toml")


def _fresh():
    """Forget the per-process caches, so a run in this process recomputes everything."""
    point_module._perf.cache_clear()
    point_module._network.cache_clear()
    point_module._compiled.cache_clear()


def _rows(path) -> list[dict]:
    with ResultStore.open(path) as store:
        return [{k: v for k, v in row.items() if k not in RUN_FIELDS} for row in store.rows()]


@pytest.fixture(scope="module")
def serial_rows(tmp_path_factory):
    path = tmp_path_factory.mktemp("serial") / "serial.sqlite"
    _fresh()
    summary = run_study(_study(), path, engine=Engine("serial"))
    assert summary["ran"] == summary["points"] == 4 and summary["failed"] == 0
    return _rows(path)


def test_serial_rows_are_complete(serial_rows):
    assert len(serial_rows) == 4
    for row in serial_rows:
        assert set(row["metrics"]) == {"spec", "cycles", "energy", "area", "crossbars",
                                       "analog_accuracy", "analog_accuracies"}
        assert row["error"] is None and len(row["config_digest"]) == 16
        assert row["bitline_version"] == bitline_version()
    # without stuck cells every chip is exact: the ideal accuracy on the 4 images
    exact = [r for r in serial_rows if r["axes"]["stuck"] == 0.0]
    assert all(len(set(r["metrics"]["analog_accuracies"])) == 1 for r in exact)


def test_local_cluster_equals_serial_bit_for_bit(serial_rows, tmp_path):
    _fresh()
    path = tmp_path / "threads.sqlite"
    engine = Engine("local", workers=2, processes=False)
    summary = run_study(_study(), path, engine=engine)
    assert summary["ran"] == 4 and "2 worker threads" in summary["engine"]
    assert _rows(path) == serial_rows


def _die_once(marker_dir: str, payload: dict) -> dict:
    """Kill the worker process the first time the 16x16 / stuck 0.05 point runs."""
    marker = os.path.join(marker_dir, "died")
    if payload["axes"]["ou"] == "16x16" and payload["axes"]["stuck"] and \
            not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(3)
    return point_module.run_point(payload)


@pytest.mark.slow   # two worker processes start and import bitline: 20-60 s on 2 busy cores
def test_worker_processes_and_a_killed_worker(serial_rows, tmp_path):
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    path = tmp_path / "processes.sqlite"
    summary = run_study(_study(), path, engine=Engine("local", workers=2, processes=True),
                        task=functools.partial(_die_once, str(tmp_path)))
    assert (tmp_path / "died").exists()          # a worker did die mid-study
    assert summary["ran"] == 4 and summary["failed"] == 0
    assert _rows(path) == serial_rows            # and the study completed, bit for bit


KILLED_RUN = textwrap.dedent("""
    import os, sys
    from bitline.sim.dse import Engine, run_study
    from bitline.sim.dse import point
    from bitline.sw.flow.study import parse_study
    STUDY = {study!r}
    calls = []
    def task(payload):
        if len(calls) == 2:
            os._exit(9)                 # the client dies as hard as kill -9
        calls.append(payload["id"])
        return point.run_point(payload)
    run_study(parse_study(STUDY, source="tiny.toml"), sys.argv[1], engine=Engine("serial"),
              task=task)
""")


@pytest.mark.slow   # a second Python process imports bitline and the digits data: ~5 s idle
def test_a_killed_run_resumes_without_recomputing(serial_rows, tmp_path):
    path = tmp_path / "killed.sqlite"
    script = KILLED_RUN.format(study=STUDY)
    done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 9, done.stderr
    kept = _rows(path)
    assert len(kept) == 2 and all(row in serial_rows for row in kept)   # rows intact
    # without --resume the half-finished store is refused
    with pytest.raises(ValueError, match="already holds 2 of the 4 points.*--resume"):
        run_study(_study(), path, engine=Engine("serial"))
    ran = []

    def counting(payload):
        ran.append(payload["id"])
        return point_module.run_point(payload)

    summary = run_study(_study(), path, engine=Engine("serial"), resume=True, task=counting)
    assert summary["skipped"] == 2 and summary["ran"] == 2
    assert set(ran).isdisjoint(row["id"] for row in kept) and len(ran) == 2
    assert _rows(path) == serial_rows


def test_a_store_of_another_study_is_refused(tmp_path):
    path = tmp_path / "other.sqlite"
    other = parse_study({**STUDY, "study": {**STUDY["study"], "seed": 12}}, source="o.toml")
    with ResultStore.open(path, other.to_dict(), version=bitline_version()):
        pass
    for resume in (False, True):
        with pytest.raises(StoreMismatch, match="holds study 'tiny' .* not 'tiny'"):
            run_study(_study(), path, engine=Engine("serial"), resume=resume)
    with pytest.raises(ValueError, match="missing.sqlite: results store not found"):
        ResultStore.open(tmp_path / "missing.sqlite")
    (tmp_path / "junk.sqlite").write_text("not a database, " * 100)
    with pytest.raises(ValueError, match="junk.sqlite: not a bitline results store"):
        ResultStore.open(tmp_path / "junk.sqlite")


def test_version_check_and_engine_options():
    mine = bitline_version()
    with pytest.raises(VersionMismatch, match=f"runs bitline {mine}, the client 99.0"):
        checked_call(len, [1], "99.0")
    assert checked_call(len, [1, 2], mine) == 2

    class Client:
        def wait_for_workers(self, n, timeout):
            pass

        def run(self, function):
            return {"tcp://a:1": function(), "tcp://b:2": "0.0.1"}

    with pytest.raises(VersionMismatch, match="worker tcp://b:2 runs bitline 0.0.1"):
        Engine._check_workers(Client(), mine)
    with pytest.raises(ValueError, match="one of --serial, --workers N and --scheduler"):
        Engine.from_options(serial=True, workers=2)
    with pytest.raises(ValueError, match="--workers must be a positive integer"):
        Engine.from_options(workers=0)
    assert Engine.from_options(scheduler="tcp://h:8786").label == "Dask cluster at tcp://h:8786"
    assert Engine.from_options(serial=True).mode == "serial"


def _bad_input(payload):
    raise ValueError(f"point {payload}: layer conv1 does not fit")


def _counted_bad_input(log: str, payload):
    with open(log, "a") as file:                # tasks are pickled: count in a file
        file.write("call\n")
    return _bad_input(payload)


def test_a_task_value_error_is_raised_once_not_retried(tmp_path):
    log = tmp_path / "calls.txt"
    engine = Engine("local", workers=1, processes=False, retries=2)
    with pytest.raises(ValueError, match="point 7: layer conv1 does not fit"):
        list(engine.run(functools.partial(_counted_bad_input, str(log)), [("a", 7)]))
    assert log.read_text() == "call\n"          # no retry of an input error
    with pytest.raises(ValueError, match="point 7: layer conv1 does not fit"):
        list(Engine("serial").run(_bad_input, [("a", 7)]))


def test_two_local_clusters_at_once_do_not_fight_over_port_8787(recwarn):
    # the parallel suite starts clusters side by side: without a dashboard neither may
    # take the dashboard's default port (the second would warn "already in use")
    one, two = (Engine("local", workers=1, processes=False) for _ in range(2))
    with one._client() as first, two._client() as second:
        ports = [client.cluster.scheduler.http_server.port for client in (first, second)]
        assert first.submit(len, [1, 2]).result() == second.submit(len, [3]).result() + 1
    assert 8787 not in ports and ports[0] != ports[1]
    assert not [w for w in recwarn if "already in use" in str(w.message)]


def test_dashboard_option(monkeypatch):
    import distributed

    with pytest.raises(ValueError, match="--dashboard is the embedded LocalCluster's"):
        Engine.from_options(serial=True, dashboard=":8787")
    with pytest.raises(ValueError, match="--dashboard is the embedded LocalCluster's"):
        Engine.from_options(scheduler="tcp://h:8786", dashboard=":8787")
    found = {"bokeh": None}
    monkeypatch.setattr("importlib.util.find_spec", lambda name: found.get(name, "spec"))
    with pytest.raises(ValueError, match="--dashboard :8787 needs bokeh, which is not "
                                         "installed: pip install bokeh"):
        Engine(dashboard=":8787")
    found["bokeh"] = "spec"
    engine = Engine.from_options(workers=1, dashboard="localhost:9999")
    assert engine.label == "Dask LocalCluster, 1 worker processes, dashboard at localhost:9999"
    started = []

    class Cluster:                    # records what the engine asks Dask for
        def __init__(self, **options):
            started.append(options)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

    monkeypatch.setattr(distributed, "LocalCluster", Cluster)
    monkeypatch.setattr(distributed, "Client", lambda cluster: contextlib.nullcontext())
    for dashboard in ("localhost:9999", None):
        with Engine("local", workers=1, dashboard=dashboard)._client():
            pass
    asked, default = started
    assert asked["dashboard_address"] == "localhost:9999" and "scheduler_kwargs" not in asked
    assert default["dashboard_address"] is None
    assert default["scheduler_kwargs"] == {"dashboard_address": "127.0.0.1:0"}


def _blas_threads(payload):
    from threadpoolctl import threadpool_info

    return {info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"}


def test_serial_tasks_run_with_one_blas_thread_as_in_a_worker():
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=2, user_api="blas"):
        assert _blas_threads(None) == {2}       # a pool the tasks must not use
        seen = dict(Engine("serial").run(_blas_threads, [("a", 1), ("b", 2)]))
        assert seen == {"a": {1}, "b": {1}}
        assert _blas_threads(None) == {2}       # restored for the caller
