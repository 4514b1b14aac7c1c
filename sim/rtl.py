"""The ``rtl`` backend: a compiled bundle on the generated Verilog, end to end, in cocotb.

:func:`run_rtl` is what ``bitline run OUT/ --backend rtl`` calls (through the ``rtl``
backend of :mod:`bitline.sim.backends`, which parses the run options; progress reaches the
caller through a callback, so nothing here prints):

1. read the bundle (:func:`bitline.sw.bundle.read_bundle`, every check);
2. generate the Verilog of :class:`~bitline.sim.cocotb.harness.BenchTop` -- the bundle's
   :class:`~bitline.hw.core.top.Accelerator` with a stream source and sink -- for the bundle's
   config (:func:`bench_design`; cached by a digest of the config, the crossbar mode, the
   entry-memory depth and the hardware sources, because Amaranth takes tens of seconds on a
   real configuration);
3. build it with Verilator (or Icarus, ``BITLINE_SIM=icarus``) through
   :func:`bitline.sim.cocotb.runner.build_and_test` (build cached by digest) and run the
   cocotb test ``bitline.sim.cocotb.tb_accelerator.inference``: the bench loads ``image.bin``
   through the host interface and runs the batch with the host driver
   (:class:`bitline.sw.host.driver.HostDriver`): one whole-network run per image for a
   bundle compiled ``--network`` (only the input image crosses the host interface), one
   run of the whole batch for a bundle compiled ``--network --pipeline`` (N_IMAGES, the
   images overlapping in the stage engines; :func:`pipeline_summary` prints its latency,
   interval and images/s beside the model), else -- or with ``mode="layers"`` -- one layer
   job per compute layer;
4. read the outputs, every layer's output (whole network: the output layer's) and every
   job's or run's counters back from the npz the bench wrote.

Crossbar mode: without analog parameters the accelerator's own digital crossbar emulators
(``crossbar="emulated"``) answer the OU reads inside the simulator, the fastest setting;
with :class:`~bitline.sim.analog_params.AnalogParams` the crossbar ports are external and the
bench's Python crossbar model (:class:`bitline.sim.cocotb.crossbar.CrossbarModel`, an
:class:`~bitline.sim.analog.AnalogDevice`) answers every read.

Verilator builds make only the top-level ports visible to cocotb (``--no-public-flat-rw``
and a generated ``.vlt`` file): with every internal signal public (cocotb's default) the
accelerator simulates 3-4 times slower and its C++ is twice as large.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

from bitline.hw.spec.config import AcceleratorConfig

__all__ = ["BenchDesign", "RtlResult", "bench_design", "design_unit_entries", "run_rtl",
           "run_spec", "job_capacity", "pipeline_summary", "TOPLEVEL", "BENCH_MODULE",
           "DIGITS_CONFIG"]

#: The accelerator the cocotb end-to-end suite and ``scripts/bench_rtl.py`` map the digits
#: CNN onto: the BWQ paper's OU (9 x 8, 1-bit cells and DACs, 4-bit ADC, one ADC per OU
#: column) on ten 72 x 512 crossbars. Every input of every layer needs a driven row (the
#: network's five layers have 633 inputs, in 9-row chunks), and the per-row input registers
#: dominate the generated Verilog, so few rows per unit and wide crossbars keep the design
#: -- and its Verilator build -- as small as the network allows (bwq3: 1193 OU entries on
#: 10 units, the largest layer on 4).
DIGITS_CONFIG = AcceleratorConfig(
    rows=72, cols=512, cell_bits=1, dac_bits=1, ou_rows=9, ou_cols=8, adc_bits=4,
    adcs_per_xbar=8, n_xbars=10, acc_bits=24, max_act_bits=8, max_weight_bits=8,
    max_out_channels=64, max_in_features=288, max_layers=8, max_entries=2048, adc_latency=1)

#: Top-level module name of the bench design.
TOPLEVEL = "bitline_bench"
#: The cocotb test module the backend runs.
BENCH_MODULE = "bitline.sim.cocotb.tb_accelerator"


@dataclass(frozen=True)
class BenchDesign:
    """A generated bench design (cached files).

    Attributes
    ----------
    verilog:
        The Verilog of :class:`~bitline.sim.cocotb.harness.BenchTop`.
    vlt:
        Verilator configuration file making only the top-level ports public.
    description:
        JSON with the config, crossbar mode, unit entries, harness parameters and ports.
    config, crossbar, unit_entries:
        What the design was generated for.
    """

    verilog: Path
    vlt: Path
    description: Path
    config: AcceleratorConfig
    crossbar: str
    unit_entries: int

    @property
    def verilator_args(self) -> list[str]:
        """Verilator arguments: only the ports in :attr:`vlt` are visible to cocotb."""
        return ["--no-public-flat-rw", str(self.vlt)]

    @property
    def info(self) -> dict:
        """The parsed :attr:`description`."""
        return json.loads(self.description.read_text())


@lru_cache(maxsize=1)
def hardware_sources() -> list[Path]:
    """Return the sources a generated bench design depends on: every module of
    :mod:`bitline.hw` (all subpackages) and the cocotb harness."""
    import bitline.hw
    from bitline.sim.cocotb import harness

    return sorted(Path(bitline.hw.__file__).parent.rglob("*.py")) + [Path(harness.__file__)]


def _hardware_digest() -> str:
    """SHA-256 of :func:`hardware_sources` (paths and contents) and the Amaranth version.

    The cache key of a generated design: any edit of the hardware, in any subpackage,
    gives a new design folder.
    """
    import amaranth

    import bitline.hw

    base = Path(bitline.hw.__file__).parent.parent
    digest = hashlib.sha256(amaranth.__version__.encode())
    for path in hardware_sources():
        name = path.relative_to(base) if path.is_relative_to(base) else Path(path.name)
        digest.update(name.as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _design_root() -> Path:
    """``rtl/`` inside the cocotb build root (``$BITLINE_BUILD_DIR`` or the user cache,
    :func:`bitline.sim.cocotb.runner.default_build_root`)."""
    from bitline.sim.cocotb.runner import default_build_root

    return default_build_root() / "rtl"


def design_unit_entries(config: AcceleratorConfig, programs=()) -> int:
    """Return the entry-memory depth for ``config`` that holds every program in ``programs``.

    The default depth (one entry per OU of a crossbar) or, if a program needs more on some
    unit, that many (as ``bitline verilog --bundle`` does).
    """
    from bitline.hw.core.memories import default_unit_entries, required_unit_entries

    depth = default_unit_entries(config)
    for program in programs:
        depth = max(depth, required_unit_entries(config, program.layers))
    return depth


def bench_design(config: AcceleratorConfig, crossbar: str = "emulated", *,
                 unit_entries: int | None = None, root: str | Path | None = None
                 ) -> BenchDesign:
    """Generate (or reuse) the bench Verilog for ``config``.

    Parameters
    ----------
    config:
        The accelerator configuration (the bundle's).
    crossbar:
        ``"emulated"`` or ``"external"``.
    unit_entries:
        Entry-memory depth per unit (default :func:`design_unit_entries` of ``config``).
    root:
        Cache folder (default ``rtl/`` inside the cocotb build root,
        ``~/.cache/bitline/cocotb/rtl`` unless ``BITLINE_BUILD_DIR`` says otherwise).

    Returns
    -------
    BenchDesign
        Files in ``<root>/<crossbar>-<digest>/``, reused when present.

    Raises
    ------
    ValueError
        For ``max_act_bits`` above 8: the bench source streams one byte per input code.
    """
    from bitline.sim.cocotb.harness import BenchTop

    if config.max_act_bits > 8:
        raise ValueError(f"the cocotb bench streams one byte per input code: max_act_bits "
                         f"<= 8, not {config.max_act_bits} (wider activations run on the "
                         f"golden, executor and Amaranth-simulator backends)")
    from bitline.sim.cocotb.runner import component_verilog, write_texts

    unit_entries = design_unit_entries(config) if unit_entries is None else int(unit_entries)
    key = json.dumps({"config": config.to_dict(), "crossbar": crossbar,
                      "unit_entries": unit_entries, "hardware": _hardware_digest(),
                      "top": TOPLEVEL}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    folder = Path(root) if root is not None else _design_root()
    folder = folder / f"{crossbar}-{digest}"
    verilog = folder / f"{TOPLEVEL}.v"
    vlt = folder / f"{TOPLEVEL}-ports-{digest}.vlt"
    description = folder / f"{TOPLEVEL}.json"
    design = BenchDesign(verilog, vlt, description, config, crossbar, unit_entries)
    if verilog.is_file() and vlt.is_file() and description.is_file():
        return design
    folder.mkdir(parents=True, exist_ok=True)
    top = BenchTop(config, crossbar, unit_entries=unit_entries)
    text = component_verilog(top, TOPLEVEL)
    from bitline.hw.toolchain.verilog import port_table

    ports = port_table(top)
    names = ["clk", "rst"] + [port["name"] for port in ports]
    vlt_text = "`verilator_config\n" + "".join(
        f'public_flat_rw -module "{TOPLEVEL}" -var "{name}"\n' for name in names)
    info = {
        "top": TOPLEVEL, "crossbar": crossbar, "config": config.to_dict(),
        "digest": config.digest, "unit_entries": unit_entries,
        "harness": {"source_depth": top.source_depth, "sink_depth": top.sink_depth,
                    "fill_lanes": top.fill_lanes, "drain_lanes": top.drain_lanes},
        "ports": ports,
    }
    # atomically: parallel sessions may generate the same design
    write_texts({vlt: vlt_text, description: json.dumps(info, indent=2) + "\n",
                 verilog: text})
    return design


@dataclass
class RtlResult:
    """What :func:`run_rtl` returns.

    Attributes
    ----------
    output, output_int, layers:
        As :class:`bitline.sw.host.driver.DriverResult` (``layers``: every layer's output).
    jobs:
        Per layer job: ``name``, ``layer``, ``n_vectors`` and the counters
        (:data:`bitline.hw.core.host_interface.COUNTERS` names).
    runs:
        Per whole-network run (one per image): the counters by name (``cycles`` = the
        image's latency) and ``nodes``, a list of each node's counters
        (:data:`bitline.hw.spec.registers.NODE_COUNTERS` names). On pipeline hardware one
        run carries the batch: ``n_images``, ``cycles`` of the whole run, ``latency`` and
        ``interval`` (docs/network.md section 6.6), the nodes' counters summed over the
        images.
    simulated_cycles:
        Clock cycles the bench simulated for the run (image load, jobs, register traffic).
    run_seconds, cpu_seconds:
        Wall and CPU time of the inference inside the simulator process (from the first
        image byte to the last output; CPU time is what an unloaded machine would take).
    build_seconds, test_seconds, generate_seconds:
        Wall time of the Verilator / Icarus build (0 when cached), of the whole simulator
        process (start-up and reference checks included) and of the Verilog generation
        (0 when cached).
    simulator, design:
        The simulator used and the design.
    """

    output: np.ndarray
    output_int: np.ndarray
    layers: dict[str, np.ndarray]
    jobs: list[dict]
    simulated_cycles: int
    run_seconds: float
    cpu_seconds: float
    build_seconds: float
    test_seconds: float
    generate_seconds: float
    simulator: str
    design: BenchDesign
    runs: list[dict] = field(default_factory=list)

    @property
    def mode(self) -> str:
        """``"network"`` (whole-network runs) or ``"layers"`` (layer jobs)."""
        return "network" if self.runs else "layers"

    @property
    def cycles_per_second(self) -> float:
        """Simulated cycles per wall-clock second of the inference."""
        return self.simulated_cycles / self.run_seconds if self.run_seconds else 0.0

    def counters(self) -> dict[str, int]:
        """Counters summed over all jobs and whole-network runs (a pipelined run's
        ``latency``, ``interval`` and ``n_images`` are the run's, not summed)."""
        total: dict[str, int] = {}
        for record in self.jobs + self.runs:
            for key, value in record.items():
                if key not in ("name", "layer", "n_vectors", "nodes", "n_images", "latency",
                               "interval"):
                    total[key] = total.get(key, 0) + int(value)
        return total

    @property
    def pipelined(self) -> bool:
        """Whether the runs were pipelined (pipeline hardware: runs of ``n_images``)."""
        return any("n_images" in run for run in self.runs)


def job_capacity(design: BenchDesign, program) -> int:
    """Return the most vectors one layer job of ``program`` may have on ``design``.

    A job's input codes must fit the harness source and its outputs the sink (the host
    never stalls, so the counters stay exact).
    """
    harness = design.info["harness"]
    inputs = max(layer.n_inputs for layer in program.layers)
    outputs = max(layer.n_outputs for layer in program.layers)
    # with max_copies lanes an input beat takes beat_bytes() source bytes (harness docstring)
    per_code = 1 << (program.config.max_copies - 1).bit_length()
    return max(1, min(harness["source_depth"] // (inputs * per_code),
                      harness["sink_depth"] // outputs))


def pipeline_summary(runs: list[dict], program, clock_mhz: float) -> str:
    """One line on pipelined whole-network runs: the RTL's latency, interval and images/s
    at ``clock_mhz`` next to the model's (:func:`bitline.hw.spec.net_timing.pipeline_schedule`
    for the same number of images).

    ``runs`` are :attr:`RtlResult.runs` (``n_images``, ``cycles``, ``latency``,
    ``interval``); the line shows the first run's figures. images/s in steady state is
    ``clock / INTERVAL`` (a run of one image has no interval: ``clock / CYCLES``), and for
    the batch ``n_images * clock / CYCLES``. A program with layer replicas
    (docs/network.md section 7) names each replicated layer and its replica count after
    the engine count.

    Raises
    ------
    ValueError
        For no runs, runs without ``n_images`` or a clock that is not positive.
    """
    from bitline.sim.cocotb.tb_network import PipelineExpectation

    if not clock_mhz > 0:
        raise ValueError(f"clock_mhz must be positive, not {clock_mhz}")
    if not runs or any("n_images" not in run for run in runs):
        raise ValueError("pipeline_summary needs pipelined runs (n_images, latency, interval)")
    run = runs[0]
    images = int(run["n_images"])
    model = PipelineExpectation(program, images).run_counters()

    def rate(counters) -> float:
        cycles = counters["interval"] or counters["cycles"]
        return clock_mhz * 1e6 / cycles

    total = sum(int(item["n_images"]) for item in runs)
    groups = [f"{program.layers[node.layer].name} x{1 << int(node.replicas_log2)}"
              for node in program.nodes
              if int(getattr(node, "replicas_log2", 0)) and int(node.phase) == 0]
    replicas = f"; replicas: {', '.join(groups)}" if groups else ""
    return (f"whole network, pipelined ({program.config.pipeline_stages} stage engines"
            f"{replicas}): "
            f"{total} image(s) in {len(runs)} run(s); run of {images}: latency "
            f"{run['latency']:,} cycles (model {model['latency']:,}), interval "
            f"{run['interval']:,} (model {model['interval']:,}), run {run['cycles']:,} "
            f"(model {model['cycles']:,}); at {clock_mhz:g} MHz "
            f"{run['latency'] / clock_mhz:,.2f} us latency, {rate(run):,.0f} images/s "
            f"(model {rate(model):,.0f}; clock / interval), batch "
            f"{images * clock_mhz * 1e6 / run['cycles']:,.0f} images/s")


def _read_result(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    layers = {key[len("layer/"):]: value for key, value in arrays.items()
              if key.startswith("layer/")}
    job_keys = [key[len("jobs/"):] for key in arrays if key.startswith("jobs/")]
    count = len(arrays.get("jobs/layer", []))
    jobs = []
    for index in range(count):
        job = {}
        for key in job_keys:
            value = arrays[f"jobs/{key}"][index]
            job[key] = str(value) if key == "name" else int(value)
        jobs.append(job)
    runs = []
    run_keys = [key[len("runs/"):] for key in arrays if key.startswith("runs/")]
    node_keys = [key[len("nodes/"):] for key in arrays if key.startswith("nodes/")]
    for index in range(len(arrays[f"runs/{run_keys[0]}"]) if run_keys else 0):
        record = {key: int(arrays[f"runs/{key}"][index]) for key in run_keys}
        count = arrays[f"nodes/{node_keys[0]}"].shape[1] if node_keys else 0
        record["nodes"] = [{key: int(arrays[f"nodes/{key}"][index, node])
                            for key in node_keys} for node in range(count)]
        runs.append(record)
    return {"output": arrays["output"], "output_int": arrays["output_int"],
            "layers": layers, "jobs": jobs, "runs": runs,
            "simulated_cycles": int(arrays["simulated_cycles"]),
            "run_seconds": float(arrays["wall_seconds"]),
            "cpu_seconds": float(arrays["cpu_seconds"])}


def run_spec(design: BenchDesign, spec: dict, *, test: str = "inference",
             work_dir: str | Path | None = None, progress: Callable[[dict], None] | None = None,
             build_root: str | Path | None = None, module: str = BENCH_MODULE,
             toplevel: str = TOPLEVEL):
    """Build ``design`` and run one test of the bench with a run description.

    ``spec`` is the bench's run JSON without ``design`` (added here, see
    :mod:`bitline.sim.cocotb.tb_accelerator`). ``progress`` is called with the bench's
    progress state (``done``, ``total``, ``layer``, ``cycles``...) while it runs.
    ``module`` and ``toplevel`` name the cocotb test module and the design's top (the
    whole-network bench: :mod:`bitline.sim.cocotb.tb_network`).

    Returns
    -------
    bitline.sim.cocotb.runner.BenchResult

    Raises
    ------
    bitline.sim.cocotb.runner.BenchFailure
        If the build fails or the test fails (a checker mismatch, a hardware error).
    """
    from bitline.sim.cocotb.runner import build_and_test

    work = Path(work_dir) if work_dir is not None else Path(tempfile.mkdtemp(prefix="rtl-"))
    work.mkdir(parents=True, exist_ok=True)
    info = design.info
    spec = dict(spec, design={key: info[key] for key in ("config", "crossbar", "harness")})
    if progress is not None:
        spec["progress"] = str(work / "progress.json")
    spec_path = work / "run.json"
    spec_path.write_text(json.dumps(spec, indent=2) + "\n")
    outcome: dict = {}

    def target():
        try:
            outcome["result"] = build_and_test(
                design.verilog, toplevel, module, build_root=build_root,
                extra_env={"BITLINE_RUN": str(spec_path)}, test_filter=rf"(^|\.){test}$",
                verilator_args=design.verilator_args)
        except BaseException as error:  # re-raised in the caller's thread
            outcome["error"] = error

    if progress is None:
        target()
    else:
        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        seen = None
        progress_path = Path(spec["progress"])
        while thread.is_alive():
            thread.join(0.2)
            try:
                state = json.loads(progress_path.read_text())
            except (OSError, ValueError):
                continue
            if state != seen:
                seen = state
                progress(state)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def run_rtl(bundle_dir: str | Path, x: np.ndarray, *, analog=None, seed: int = 0,
            max_vectors: int | None = None, check: bool = False,
            progress: Callable[[dict], None] | None = None,
            work_dir: str | Path | None = None, mode: str | None = None) -> RtlResult:
    """Run a float batch through a bundle on the RTL (module docstring).

    Parameters
    ----------
    bundle_dir:
        The compiled bundle.
    x:
        Float batch ``(N, *input_shape)``.
    analog:
        :class:`~bitline.sim.analog_params.AnalogParams` (or a file / example name for
        :meth:`~bitline.sim.analog_params.AnalogParams.load`): external crossbars with the
        analog model; ``None``: the digital emulators inside the design.
    seed:
        The analog chip's seed.
    max_vectors:
        Split layer jobs into at most this many vectors (default: what the bench's source
        and sink hold, one job per layer when it fits).
    check:
        Also compare every layer with the golden model (ideal) or the executor with the
        same seed (analog) inside the bench; a difference fails the run.
    progress:
        Called with the bench's progress state after every layer job (or image).
    work_dir:
        Folder for the run's files (default: a new temporary folder).
    mode:
        ``"network"``, ``"layers"`` or ``None`` (whole network for a bundle with node
        records, :class:`bitline.sw.host.driver.HostDriver`). Whole-network runs use the
        bench of :mod:`bitline.sim.cocotb.tb_network` (``max_vectors`` does not apply).

    Returns
    -------
    RtlResult

    Raises
    ------
    ValueError
        For an unreadable bundle, a batch of the wrong shape or analog parameters that do
        not load.
    bitline.sim.cocotb.runner.BenchFailure
        If the build or the simulation fails.
    """
    from bitline.sw.bundle import read_bundle
    from bitline.sw.host.driver import resolve_mode
    from bitline.sw.integer.graph import check_input

    bundle = read_bundle(bundle_dir)
    x = check_input(bundle.qmodel, np.asarray(x, dtype=np.float32))
    mode = resolve_mode(bundle.program, mode)
    params = None
    if analog is not None:
        from bitline.sim.analog_params import AnalogParams

        params = analog if isinstance(analog, AnalogParams) else AnalogParams.load(analog)
    config = bundle.program.config
    work = Path(work_dir) if work_dir is not None else Path(tempfile.mkdtemp(prefix="rtl-"))
    work.mkdir(parents=True, exist_ok=True)
    np.save(work / "input.npy", x)
    if mode == "network":
        return _run_network(Path(bundle_dir), bundle.program, work, params, seed, check,
                            progress)
    start = time.perf_counter()
    design = bench_design(config, "external" if params is not None else "emulated",
                          unit_entries=design_unit_entries(config, [bundle.program]))
    generate_seconds = time.perf_counter() - start
    capacity = job_capacity(design, bundle.program)
    max_vectors = capacity if max_vectors is None else min(int(max_vectors), capacity)
    reference = "executor" if params is not None else "golden"
    spec = {
        "runs": [{"bundle": str(Path(bundle_dir).resolve()), "input": str(work / "input.npy"),
                  "result": str(work / "result.npz"),
                  "check": reference if check else "none", "counters": False,
                  "mode": mode}],
        "analog": params.to_dict() if params is not None else None,
        "seed": int(seed),
        "max_vectors": max_vectors,
    }
    bench = run_spec(design, spec, work_dir=work, progress=progress)
    data = _read_result(work / "result.npz")
    return RtlResult(
        output=data["output"], output_int=data["output_int"], layers=data["layers"],
        jobs=data["jobs"], runs=data["runs"], simulated_cycles=data["simulated_cycles"],
        run_seconds=data["run_seconds"], cpu_seconds=data["cpu_seconds"],
        build_seconds=bench.build_seconds,
        test_seconds=bench.test_seconds, generate_seconds=generate_seconds,
        simulator=bench.simulator, design=design)


def _run_network(bundle_dir: Path, program, work: Path, params, seed: int, check: bool,
                 progress: Callable[[dict], None] | None) -> RtlResult:
    """:func:`run_rtl` in whole-network mode: the bench of
    :mod:`bitline.sim.cocotb.tb_network` (one run per image)."""
    from bitline.sim.cocotb.tb_network import network_design, run_network_bench

    config = program.config
    crossbar = "external" if params is not None else "emulated"
    start = time.perf_counter()
    design = network_design(config, [program], crossbar)
    generate_seconds = time.perf_counter() - start
    reference = "executor" if params is not None else "golden"
    run = {"name": "batch", "bundle": str(Path(bundle_dir).resolve()),
           "input": str(work / "input.npy"), "check": reference if check else "none"}
    bench, results = run_network_bench(
        config, [run], work, programs=[program], crossbar=crossbar,
        analog=params.to_dict() if params is not None else None, seed=seed,
        progress=progress)
    data = results["batch"]
    runs = [dict(counters, nodes=nodes) for counters, nodes in zip(data.runs, data.nodes)]
    return RtlResult(
        output=data.output, output_int=data.output_int, layers=data.layers, jobs=[],
        runs=runs, simulated_cycles=data.simulated_cycles, run_seconds=data.run_seconds,
        cpu_seconds=data.cpu_seconds, build_seconds=bench.build_seconds,
        test_seconds=bench.test_seconds, generate_seconds=generate_seconds,
        simulator=bench.simulator, design=design)
