"""The design-space study engine (``bitline dse``, and the engine of ``bitline sweep``).

* :mod:`.engine`: where tasks run (serial, a Dask ``LocalCluster``, a Dask cluster), the
  bitline version check of the workers, retries;
* :mod:`.point`: one study point (compile, count, accuracy) as a task;
* :mod:`.store`: the SQLite results store (one committed row per finished point);
* :mod:`.run`: a study into a store, with resume;
* :mod:`.report`: tables, Pareto fronts, plots and a Markdown summary of a store.

The study file format, the axes expansion and the point ids and seeds are pure and live in
:mod:`bitline.sw.flow.study`.
"""

from bitline.sim.dse.engine import Engine, VersionMismatch, bitline_version
from bitline.sim.dse.run import default_store, run_study
from bitline.sim.dse.store import ResultStore, StoreMismatch

__all__ = ["Engine", "VersionMismatch", "bitline_version", "run_study", "default_store",
           "ResultStore", "StoreMismatch"]
