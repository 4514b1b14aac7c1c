"""Where tasks run: one process (``--serial``), an embedded Dask ``LocalCluster`` or a cluster.

:class:`Engine` runs a list of independent tasks (a picklable top-level function applied to
each payload) and yields ``(key, result)`` as tasks finish, in completion order; callers
never depend on that order (every task's result is a function of its payload alone).

* ``serial``: in this process, in list order (debugging, tests, one-point studies), with
  one BLAS / OpenMP thread per task as in a worker;
* ``local`` (the default): a ``distributed.LocalCluster`` started for the run, one worker
  process per core (``workers``) with one thread each, shut down afterwards; no dashboard
  unless ``dashboard`` gives its address (``--dashboard :8787``, needs bokeh);
* ``scheduler``: an existing cluster at ``address`` (``tcp://host:8786``), started with the
  stock ``dask scheduler`` / ``dask worker ADDRESS`` commands (docs/dse.md).

Before submitting, the engine asks every worker for its bitline version and refuses a
cluster whose workers run another version than this process (:class:`VersionMismatch`);
each task checks it again, for workers that join later. A task that raises is retried
``retries`` times by Dask (``Client.submit(retries=)``), except for a ``ValueError`` (bad
input fails the same way every time): it is raised again in this process at once; a worker that dies mid-task (its
nanny restarts it) has its tasks rescheduled by the scheduler up to
``distributed.scheduler.allowed-failures`` times (default 3) before ``KilledWorker``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import uuid
from dataclasses import dataclass
from importlib.metadata import version as _package_version

__all__ = ["Engine", "VersionMismatch", "bitline_version", "checked_call"]


def bitline_version() -> str:
    """The installed bitline version (package metadata)."""
    return _package_version("bitline")


class VersionMismatch(ValueError):
    """A worker runs another bitline version than the client."""


def checked_call(function, payload, expected_version: str):
    """Run ``function(payload)`` on a worker after checking its bitline version.

    Raises
    ------
    VersionMismatch
        If this worker's bitline version is not ``expected_version``.
    """
    mine = bitline_version()
    if mine != expected_version:
        raise VersionMismatch(f"worker {os.uname().nodename} (pid {os.getpid()}) runs "
                              f"bitline {mine}, the client {expected_version}: install the "
                              f"same bitline version on every worker")
    try:
        return function(payload)
    except ValueError as error:
        # bad input fails the same way on every try: returned, not raised, so Dask does
        # not retry it; the client raises it again (Engine.run)
        return _InputError(str(error))


@dataclass(frozen=True)
class _InputError:
    """A task's ``ValueError``, carried back to the client as a result."""

    message: str


@dataclass
class Engine:
    """How a run's tasks are executed (module docstring).

    Attributes
    ----------
    mode:
        ``"serial"``, ``"local"`` or ``"scheduler"``.
    workers:
        Worker processes of the local cluster (default: one per core).
    address:
        Scheduler address (``scheduler`` mode).
    processes:
        Local workers are processes (default) or threads of this process.
    retries:
        Times Dask retries a task that raised.
    dashboard:
        Address of the local cluster's Dask dashboard (``:8787``, ``localhost:8787``);
        default none.
    """

    mode: str = "local"
    workers: int | None = None
    address: str | None = None
    processes: bool = True
    retries: int = 2
    dashboard: str | None = None

    def __post_init__(self):
        if self.mode not in ("serial", "local", "scheduler"):
            raise ValueError(f"engine mode must be serial, local or scheduler, not {self.mode!r}")
        if self.mode == "scheduler" and not self.address:
            raise ValueError("--scheduler needs an address, e.g. tcp://10.0.0.1:8786")
        if self.workers is not None and (isinstance(self.workers, bool)
                                         or not isinstance(self.workers, int)
                                         or self.workers < 1):
            raise ValueError(f"--workers must be a positive integer, not {self.workers!r}")
        if self.dashboard is not None:
            if self.mode != "local":
                raise ValueError("--dashboard is the embedded LocalCluster's: a --scheduler "
                                 "cluster serves its own (http://HOST:8787), --serial has none")
            if importlib.util.find_spec("bokeh") is None:
                raise ValueError(f"--dashboard {self.dashboard} needs bokeh, which is not "
                                 f"installed: pip install bokeh")

    @classmethod
    def from_options(cls, serial: bool = False, workers: int | None = None,
                     scheduler: str | None = None, **kwargs) -> Engine:
        """The engine of the CLI flags ``--serial`` / ``--workers N`` / ``--scheduler ADDR``.

        Raises
        ------
        ValueError
            If more than one of them is given (``--workers`` with ``--serial`` or
            ``--scheduler``).
        """
        if serial and (workers or scheduler) or (workers and scheduler):
            raise ValueError("give one of --serial, --workers N and --scheduler ADDRESS")
        if serial:
            return cls("serial", **kwargs)
        if scheduler:
            return cls("scheduler", address=scheduler, **kwargs)
        return cls("local", workers=workers, **kwargs)

    @property
    def label(self) -> str:
        """How the engine runs, for progress lines and reports."""
        if self.mode == "serial":
            return "serial (this process)"
        if self.mode == "scheduler":
            return f"Dask cluster at {self.address}"
        kind = "processes" if self.processes else "threads"
        label = f"Dask LocalCluster, {self.workers or os.cpu_count()} worker {kind}"
        return label + (f", dashboard at {self.dashboard}" if self.dashboard else "")

    def run(self, function, items, name: str = "task"):
        """Run ``function(payload)`` for every ``(key, payload)`` in ``items``.

        Yields ``(key, result)`` as tasks finish (serial: in order). ``function`` must be
        a picklable top-level function. An exception of a task (after the retries)
        propagates; closing the generator early cancels what is left and, for a local
        cluster, shuts it down.
        """
        items = list(items)
        if self.mode == "serial":
            from threadpoolctl import threadpool_limits

            # one thread, as in a Dask worker (its nanny sets OPENBLAS_NUM_THREADS=1 and
            # OMP_NUM_THREADS=1): the tasks' small matrix products gain nothing from a
            # BLAS thread pool, whose threads spin between calls (the README's `bitline
            # sweep ... --serial`: 61 s of CPU with a 2-thread pool, 24 s without);
            # entered per task (~3 ms), so a library an earlier task loaded is limited too
            for key, payload in items:
                with threadpool_limits(limits=1):
                    result = function(payload)
                yield key, result
            return
        if not items:
            return
        from distributed import as_completed

        expected = bitline_version()
        run = uuid.uuid4().hex[:8]   # two runs sharing a scheduler never share a task key
        with self._client() as client:
            self._check_workers(client, expected)
            futures = {client.submit(checked_call, function, payload, expected,
                                     key=f"{name}-{run}-{key}", pure=False,
                                     retries=self.retries): key for key, payload in items}
            try:
                for future in as_completed(futures):
                    result = future.result()
                    if isinstance(result, _InputError):
                        raise ValueError(result.message)
                    yield futures[future], result
                    future.release()
            finally:
                client.cancel([future for future in futures if not future.done()])

    @contextlib.contextmanager
    def _client(self):
        """A ``distributed.Client`` for this engine (a local cluster lives as long as it)."""
        from distributed import Client, LocalCluster

        if self.mode == "scheduler":
            with Client(self.address, timeout="30s") as client:
                yield client
            return
        # The scheduler serves HTTP (health, metrics) even without a dashboard, on port
        # 8787 unless told otherwise: two runs at once would warn "Port 8787 is already in
        # use". Without a dashboard it takes any free port of this host.
        http = {} if self.dashboard else {"scheduler_kwargs": {"dashboard_address":
                                                               "127.0.0.1:0"}}
        with LocalCluster(n_workers=self.workers or os.cpu_count() or 1,
                          threads_per_worker=1, processes=self.processes,
                          dashboard_address=self.dashboard, silence_logs=40,
                          **http) as cluster, \
                Client(cluster) as client:
            yield client

    @staticmethod
    def _check_workers(client, expected: str) -> None:
        """Refuse a cluster with no worker or with a worker of another bitline version."""
        client.wait_for_workers(1, timeout=60)
        versions = client.run(bitline_version)
        wrong = {address: found for address, found in versions.items() if found != expected}
        if wrong:
            address, found = sorted(wrong.items())[0]
            raise VersionMismatch(f"worker {address} runs bitline {found}, this client "
                                  f"{expected} ({len(wrong)} of {len(versions)} workers "
                                  f"differ): install the same bitline version on every worker")
