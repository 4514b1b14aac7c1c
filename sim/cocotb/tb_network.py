"""cocotb bench: whole-network runs of compiled networks on the generated Verilog.

The design is the regression's :class:`~bitline.sim.cocotb.tb_regression.RegressionTop`
(the harness :class:`~bitline.sim.cocotb.harness.BenchTop` with seeded pause generators
between it and the accelerator, so backpressure costs no Python per cycle; idle they
change nothing) for a config with the whole-network hardware (``config.network``), with the
accelerator's digital crossbar emulators (``crossbar="emulated"``: no Python per cycle at
all) or external crossbar ports answered by the Python crossbar model (``"external"``, an
analog chip). ``bitline run --backend rtl`` runs a bundle compiled ``--network`` here
(:func:`bitline.sim.rtl.run_rtl`). The pieces:

* **driver** -- the project's host driver (:class:`~bitline.sw.host.driver.HostDriver` in
  whole-network mode, in a :func:`cocotb.task.bridge` thread): it loads ``image.bin`` and,
  per image, writes ``CTRL.RUN_NETWORK``, streams the input codes (lane 0) and takes the
  last node's outputs, then reads the run's counters and every node's (NODE, NODE_*). On
  a design with the inter-layer pipeline (``config.pipeline``, docs/network.md section 6)
  one run carries the whole batch: N_IMAGES, every image's codes, every image's outputs,
  then also LATENCY and INTERVAL (:class:`~bitline.sw.host.driver.PipelinedRun`);
* **model** -- the integer golden model (:func:`bitline.sim.golden.run_golden`) for the
  output (or the executor with the chip's :class:`~bitline.sim.analog.AnalogDevice`), the
  whole-network performance model (:func:`bitline.sw.perf.network_report`,
  i.e. :mod:`bitline.hw.spec.net_timing`) for the counters; on the pipeline
  :func:`bitline.hw.spec.net_timing.pipeline_schedule` for CYCLES, LATENCY, INTERVAL and
  the NODE_* counters (:class:`PipelineExpectation`);
* **checker** -- :class:`~bitline.sim.cocotb.tb_accelerator.InferenceChecker`: the output
  layer equal to the reference; on a run without pauses (``counters``) the run's counters
  and every node's equal the model's. Runs with pauses save their counters for the pytest
  side, which compares them with the free run's (only stall counters may differ).

``BITLINE_RUN`` JSON: ``design`` (``config``, ``crossbar``, ``harness``), ``analog`` and
``seed`` (as :mod:`~bitline.sim.cocotb.tb_accelerator`'s), ``runs``, a list of ``{"name",
"bundle", "input" (.npy), "result" (.npz), "throttle" (``null`` or the pause settings of
:mod:`~bitline.sim.cocotb.tb_backpressure`), "check" (``"golden"``, ``"executor"`` or
``"none"``), "counters" (bool: compare with the model here)}``; ``progress`` (a JSON file
rewritten after every image); ``break_expected`` adds 1 to one expected output and
``break_counters`` to the expected LATENCY of a pipelined run (CYCLES of a sequential one;
checker self-test).

:func:`network_design` writes (or reuses) the Verilog, :func:`run_network_bench` builds and
runs it from pytest, a script or :func:`bitline.sim.rtl.run_rtl` and reads the results
back (:class:`NetworkBenchRun`).
"""

from __future__ import annotations

import hashlib
import inspect
import json
from dataclasses import dataclass
from pathlib import Path

import cocotb
import numpy as np

from bitline.hw.spec.config import AcceleratorConfig
from bitline.sim.cocotb.bench_host import CocotbTransport
from bitline.sim.cocotb.tb_accelerator import (
    InferenceChecker, JobWatch, _bench, _save_result, load_spec, reference_layers,
    result_layer_names, timed_run,
)
from bitline.sim.cocotb.tb_backpressure import set_throttle
from bitline.sw.bundle import read_bundle
from bitline.sw.host.driver import Device, HostDriver
from bitline.sw.perf.network import node_images

__all__ = ["TOPLEVEL", "SIZED_FIELDS", "NetworkBenchRun", "PipelineExpectation",
           "node_images", "bottleneck_layer", "network_design", "run_network_bench",
           "read_runs", "shared_config", "expected_counters"]

#: Top-level module name of the whole-network bench design.
TOPLEVEL = "bitline_network"
#: This module, the cocotb test module of the bench.
MODULE = "bitline.sim.cocotb.tb_network"
#: Config fields the compiler sizes (``xbars="auto"`` and ``--network``):
#: :func:`shared_config` takes the largest value of each.
SIZED_FIELDS = ("n_xbars", "max_entries", "max_in_features", "max_out_channels",
                "max_weight_bits", "max_layers", "act_buffer_depth", "max_nodes",
                "max_map_channels", "max_map_height", "max_map_width")
#: The counters of a pipelined run that count events: per image the sequential run's, so
#: ``N`` times them for ``N`` images (docs/network.md section 6.6).
EVENT_COUNTERS = ("ou_reads", "adc_conversions", "reduction_operands")


# ====================================================================== cocotb side
@cocotb.test()
async def network_runs(dut):
    """Run every entry of ``runs`` whole-network; outputs == golden, counters == model."""
    from bitline.sim.cocotb.tb_backpressure import _drive_controls

    spec = load_spec()
    _drive_controls(dut, None, 0)             # no pauses from the first cycle on
    config, host, crossbars, params, seed = await _bench(dut, spec)
    device = Device(CocotbTransport(host))
    checker = InferenceChecker(dut._log)
    runs = spec["runs"]
    for index, run in enumerate(runs):
        bundle = read_bundle(run["bundle"])
        if bundle.program.config != config:
            raise ValueError(f"bundle {run['bundle']} was compiled for another config than "
                             f"the design's")
        await set_throttle(dut, host.edge, run.get("throttle"))
        x = np.load(run["input"], allow_pickle=False)
        label = f"run {run['name']} ({Path(run['bundle']).name})"
        watch = JobWatch(label, crossbars, checker, host, spec.get("progress"), index,
                         len(runs))
        if crossbars is not None:
            crossbars.model.restart_reads()    # read numbers count from the batch's start
        driver = HostDriver.from_bundle(bundle, device, mode="network", progress=watch)
        result, cycles, wall, cpu = await timed_run(host, driver, x)
        dut._log.info("%s: %d images whole-network, %s cycles per image, %d simulated "
                      "cycles in %.1f s wall, %.1f s CPU", label, len(x),
                      [record.counters["cycles"] for record in result.runs], cycles, wall,
                      cpu)
        _save_result(run["result"], result, cycles, wall, cpu)
        check = run.get("check", "golden")
        if check != "none":
            names = result_layer_names(bundle)
            expected = reference_layers(bundle, x, check, params, seed)
            expected = {name: expected[name] for name in names}
            if spec.get("break_expected"):
                broken = expected[names[0]].copy()
                broken.reshape(-1)[0] += 1
                expected[names[0]] = broken
            checker.compare_layers(label, result.layers, expected)
        if run.get("counters"):
            for record in result.runs:
                expected = expected_counters(bundle.program, getattr(record, "n_images", None))
                if spec.get("break_counters"):
                    expected = _BrokenCounters(expected)
                checker.compare_network(label, record, expected)
    await set_throttle(dut, host.edge, None)
    if crossbars is not None:
        crossbars.stop()
        assert not crossbars.checker.violations, crossbars.checker.violations[0]
    dut._log.info("checked %d outputs and %d runs' counters", checker.checked_layers,
                  checker.checked_jobs)
    checker.check()


# ====================================================================== models
@dataclass(frozen=True)
class _NodeCounters:
    """One node's expected counters (``name``, ``counters()``: the interface of
    :class:`bitline.sw.perf.network.NodePerf` the checker reads)."""

    name: str
    values: dict

    def counters(self) -> dict[str, int]:
        return dict(self.values)


class PipelineExpectation:
    """The counters of a pipelined run of ``n_images`` images with a host that never waits.

    CYCLES, LATENCY, INTERVAL and every node's NODE_CYCLES / NODE_INPUT_STALL /
    NODE_OUTPUT_STALL (summed over the images) from
    :func:`bitline.hw.spec.net_timing.pipeline_schedule`; OU_READS, ADC_CONVERSIONS and
    REDUCTION_OPERANDS the sum over the nodes of one job's events
    (:func:`bitline.sw.perf.network_report`'s nodes) times the images the node runs
    (:func:`bitline.sw.perf.network.node_images`: every image on a node without replicas,
    its phase's images on a replica, docs/network.md 7.2); STALL_CYCLES 0.
    ``run_counters()`` and ``nodes`` are the interface of
    :class:`bitline.sw.perf.network.NetworkPerf` that
    :meth:`~bitline.sim.cocotb.tb_accelerator.InferenceChecker.compare_network` reads.
    """

    def __init__(self, program, n_images: int):
        from bitline.hw.spec.net_timing import pipeline_schedule
        from bitline.sw.perf.network import network_report

        self.n_images = int(n_images)
        schedule = pipeline_schedule(program.config, program, self.n_images)
        self.schedule = schedule
        jobs = network_report(program).nodes
        runs = [node_images(node, schedule.n_images) for node in program.nodes[:len(jobs)]]
        counters = {name: sum(count * int(getattr(job, name)) for count, job in zip(runs, jobs))
                    for name in EVENT_COUNTERS}
        counters.update(cycles=int(schedule.cycles), stall_cycles=0,
                        latency=int(schedule.latency), interval=int(schedule.interval))
        self.counters = counters
        self.nodes = [_NodeCounters(node.name, values)
                      for node, values in zip(program.nodes, _schedule_nodes(schedule))]

    def run_counters(self) -> dict[str, int]:
        """The run's counters (COUNTERS and IMAGE_COUNTERS names)."""
        return dict(self.counters)


def bottleneck_layer(program) -> str:
    """The layer of ``program``'s compute node with the longest job
    (:func:`bitline.hw.spec.net_timing.node_timing`): the one to replicate first
    (``--replicate NAME=R``, docs/network.md section 7)."""
    from bitline.hw.spec.net_timing import node_timing
    from bitline.hw.spec.network import NodeKind

    compute = [node for node in program.nodes or ()
               if NodeKind(int(node.kind)) == NodeKind.COMPUTE]
    if not compute:
        raise ValueError("the program has no compute nodes (compile with --network)")
    node = max(compute, key=lambda node: node_timing(program.config, node,
                                                     program.layers[node.layer]).cycles)
    return program.layers[node.layer].name


def _schedule_nodes(schedule) -> list[dict]:
    """Per node the NODE_* counters of a pipeline schedule (its
    :class:`~bitline.hw.spec.net_timing.NodeTiming` s), by register name."""
    from bitline.hw.spec.registers import NODE_COUNTERS

    return [{name: int(value) for (name, _), value in zip(
                NODE_COUNTERS, (node.cycles, node.input_stall, node.output_stall))}
            for node in schedule.nodes]


class _BrokenCounters:
    """An expectation with one run counter off by one (the checker's self-test): LATENCY
    of a pipelined run, else CYCLES."""

    def __init__(self, expected):
        self.nodes = expected.nodes
        self.counters = expected.run_counters()
        self.counters["latency" if "latency" in self.counters else "cycles"] += 1

    def run_counters(self) -> dict[str, int]:
        return dict(self.counters)


def expected_counters(program, n_images: int | None):
    """The model of a whole-network run: :class:`PipelineExpectation` of ``n_images`` on
    pipeline hardware (``n_images`` not ``None``), else one image's
    :func:`bitline.sw.perf.network_report`."""
    if n_images is not None:
        return PipelineExpectation(program, n_images)
    from bitline.sw.perf.network import network_report

    return network_report(program)


# ====================================================================== pytest / script side
def shared_config(configs) -> AcceleratorConfig:
    """Return the first of ``configs`` with each :data:`SIZED_FIELDS` value the largest of
    all: one design (one Verilator build) that runs every network compiled for the configs
    (compile each again with it, ``xbars=config.n_xbars``)."""
    configs = list(configs)
    return configs[0].replace(**{name: max(getattr(config, name) for config in configs)
                                 for name in SIZED_FIELDS})


def network_design(config: AcceleratorConfig, programs=(), crossbar: str = "emulated", *,
                   root: str | Path | None = None):
    """Generate (or reuse) the bench Verilog for ``config`` and ``crossbar`` (``"emulated"``
    or ``"external"``).

    ``programs`` size the units' entry memories (:func:`bitline.sim.rtl.design_unit_entries`).
    Returns a :class:`bitline.sim.rtl.BenchDesign` (the Verilog, the Verilator file making
    only the top-level ports public, the description with the harness parameters). Cached
    under ``<root>/network-<crossbar>-<digest>/`` (default: the bench designs' folder of
    :mod:`bitline.sim.rtl`), the digest covering the config, the crossbar mode, the entry
    depth, every hardware source and the pause generators' code.

    Raises
    ------
    ValueError
        For a config without the whole-network hardware.
    """
    from bitline.hw.toolchain.verilog import port_table
    from bitline.sim import rtl
    from bitline.sim.cocotb import tb_regression
    from bitline.sim.cocotb.runner import component_verilog, write_texts

    if not config.network:
        raise ValueError("the network bench needs a config with the whole-network hardware "
                         "(act_buffer_depth > 0: compile with --network)")
    entries = rtl.design_unit_entries(config, programs)
    throttle = "".join(inspect.getsource(item) for item in (
        tb_regression.Throttle, tb_regression.RegressionTop, tb_regression._controls))
    key = json.dumps({"config": config.to_dict(), "crossbar": crossbar,
                      "entries": entries, "top": TOPLEVEL,
                      "hardware": rtl._hardware_digest(),
                      "throttle": hashlib.sha256(throttle.encode()).hexdigest()},
                     sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    folder = ((Path(root) if root is not None else rtl._design_root())
              / f"network-{crossbar}-{digest}")
    verilog, vlt, description = (folder / f"{TOPLEVEL}.v", folder / f"{TOPLEVEL}-{digest}.vlt",
                                 folder / f"{TOPLEVEL}.json")
    design = rtl.BenchDesign(verilog, vlt, description, config, crossbar, entries)
    if verilog.is_file() and vlt.is_file() and description.is_file():
        return design
    folder.mkdir(parents=True, exist_ok=True)
    top = tb_regression.RegressionTop(config, crossbar, unit_entries=entries)
    ports = port_table(top)
    names = ["clk", "rst"] + [port["name"] for port in ports]
    info = {"top": TOPLEVEL, "crossbar": crossbar, "config": config.to_dict(),
            "digest": config.digest, "unit_entries": entries,
            "harness": {name: getattr(top, name) for name in (
                "source_depth", "sink_depth", "fill_lanes", "drain_lanes")},
            "ports": ports}
    texts = {vlt: "`verilator_config\n" + "".join(
                 f'public_flat_rw -module "{TOPLEVEL}" -var "{name}"\n' for name in names),
             description: json.dumps(info, indent=2) + "\n",
             verilog: component_verilog(top, TOPLEVEL)}
    write_texts(texts)                    # atomically: parallel sessions share the cache
    return design


@dataclass
class NetworkBenchRun:
    """One run's results read back (:func:`read_runs`).

    Attributes
    ----------
    output, output_int:
        float64 / int64 ``(N, *output_shape)``: the model output and the integer outputs
        the RTL returned.
    layers:
        The output layer's integer output by name.
    runs:
        Per run (one image each, or ``n_images`` on the pipeline), the run's counters
        (``cycles``, ``ou_reads``, ...; on the pipeline also ``latency``, ``interval`` and
        ``n_images``).
    nodes:
        Per run, per node, the node's counters (``node_cycles``, ...).
    simulated_cycles:
        Cycles the bench simulated for the batch (image load and register traffic included).
    run_seconds, cpu_seconds:
        Wall and CPU time of the batch inside the simulator process.
    """

    output: np.ndarray
    output_int: np.ndarray
    layers: dict
    runs: list[dict]
    nodes: list[list[dict]]
    simulated_cycles: int
    run_seconds: float
    cpu_seconds: float


def read_runs(path: str | Path) -> NetworkBenchRun:
    """Read a run's result file (the bench's ``result`` npz)."""
    from bitline.sim.rtl import _read_result

    data = _read_result(Path(path))
    runs = [{key: value for key, value in run.items() if key != "nodes"}
            for run in data["runs"]]
    return NetworkBenchRun(data["output"], data["output_int"], data["layers"], runs,
                           [run["nodes"] for run in data["runs"]], data["simulated_cycles"],
                           data["run_seconds"], data["cpu_seconds"])


def run_network_bench(config: AcceleratorConfig, runs: list[dict], work_dir: str | Path, *,
                      programs=(), crossbar: str = "emulated", analog: dict | None = None,
                      seed: int = 0, break_expected: bool = False,
                      break_counters: bool = False, progress=None):
    """Build the bench for ``config`` (cached) and run ``runs`` on it.

    ``runs``: ``{"name", "bundle", "input"}`` plus optional ``"throttle"``, ``"check"``
    (default ``"golden"``) and ``"counters"`` (default False); each gets a ``result`` file
    in ``work_dir``. ``analog`` (:class:`~bitline.sim.analog_params.AnalogParams` fields,
    external crossbars only) and ``seed`` describe the chip; ``progress`` is called with the
    bench's progress state after every image; ``break_expected`` / ``break_counters`` make
    one expected output / run counter wrong (the checker's self-test, module docstring).
    Returns ``(bench result, {name: NetworkBenchRun})``
    (:class:`bitline.sim.cocotb.runner.BenchResult`).

    Raises
    ------
    bitline.sim.cocotb.runner.BenchFailure
        If the build fails or the bench finds a mismatch.
    """
    from bitline.sim.rtl import run_spec

    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    design = network_design(config, programs, crossbar)
    entries = []
    for run in runs:
        entries.append({"throttle": None, "check": "golden", "counters": False, **run,
                        "bundle": str(run["bundle"]), "input": str(run["input"]),
                        "result": str(work / f"result-{run['name']}.npz")})
    spec = {"runs": entries, "analog": analog, "seed": int(seed),
            "break_expected": bool(break_expected), "break_counters": bool(break_counters)}
    result = run_spec(design, spec, test="network_runs", work_dir=work, progress=progress,
                      module=MODULE, toplevel=TOPLEVEL)
    return result, {entry["name"]: read_runs(entry["result"]) for entry in entries}
