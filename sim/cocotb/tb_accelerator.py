"""cocotb bench: compiled networks end to end on the generated Verilog of the accelerator.

The design is a :class:`~bitline.sim.cocotb.harness.BenchTop` (the accelerator with a stream
source and sink). The pieces, as in cocotb's matrix-multiplier example:

* **driver** -- the host side (:mod:`bitline.sim.cocotb.bench_host`): the project's own host
  driver (:class:`bitline.sw.host.driver.HostDriver`, the code that also drives a board) runs in a
  :func:`cocotb.task.bridge` thread and programs the accelerator with the bundle's ``image.bin``
  through the ``program`` stream (loader, CRC checks), then streams one layer job per
  compute layer, or -- a bundle compiled ``--network`` -- one whole-network run per image
  (only the input image in, the last node's outputs out); the crossbar side's
  :class:`~bitline.sim.cocotb.crossbar.ResultDriver` answers the OU reads of an external
  crossbar;
* **monitors** -- the harness sink (outputs of every job) and
  :class:`~bitline.sim.cocotb.crossbar.PortMonitor` (crossbar reads and row writes);
* **models** -- the reference computed from the spec, never from the RTL: the integer golden
  model (:func:`bitline.sim.golden.run_golden`) in ideal mode, the crossbar-level executor with
  an :class:`~bitline.sim.analog.AnalogDevice` of the same seed in analog mode; the
  performance model (:func:`bitline.sw.perf.analyze_layer`; whole-network runs
  :func:`bitline.sw.perf.network_report`, per run and per node) for the counters; the crossbar
  model (:class:`~bitline.sim.cocotb.crossbar.CrossbarModel`) behind the ports;
* **checkers** -- :class:`InferenceChecker` (every layer's output and every job's counters)
  and :class:`~bitline.sim.cocotb.crossbar.PortChecker` (port protocol).

Everything comes from one JSON file named by ``BITLINE_RUN`` (written by
:func:`bitline.sim.rtl.run_rtl` or a pytest function), never from constants:

``design``
    ``config`` (the :class:`~bitline.hw.spec.config.AcceleratorConfig` fields), ``crossbar``,
    ``harness`` (source and sink sizes) -- the design description of
    :func:`bitline.sim.rtl.bench_design`.
``runs``
    list of ``{"bundle", "input" (.npy), "result" (.npz, optional), "check" ("golden",
    "executor" or "none"), "counters" (bool), "mode" (optional: ``"network"``,
    ``"layers"``; default the driver's choice: whole-network for a bundle with nodes)}``,
    run in order on the same chip. In whole-network mode only the output layer is
    checked (the others stay in the activation buffer).
``analog``
    :class:`~bitline.sim.analog_params.AnalogParams` fields, or ``null`` for the ideal crossbar
    (external designs only); ``seed`` the chip's seed.
``max_vectors``, ``progress``
    Job size limit of the host driver; a JSON file the bench rewrites after every job.
``break_expected``
    Add 1 to one expected value (the checker self-test: the run must fail).
``corrupt``
    For the ``corrupted_image`` test: the bundle whose image is corrupted.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import cocotb
import numpy as np
from cocotb.task import bridge

from bitline.hw.spec.config import AcceleratorConfig, clog2
from bitline.hw.spec.image import HEADER_BYTES, HEADER_LAYOUT, SECTION_ENTRY_BYTES
from bitline.hw.spec.program import Program
from bitline.hw.spec.registers import ErrorCode, Status
from bitline.sim.cocotb.bench_host import BenchHost, CocotbTransport
from bitline.sim.cocotb.crossbar import CrossbarBench
from bitline.sw.bundle import encode_image, read_bundle
from bitline.sw.host.driver import Device, DeviceError, HostDriver

__all__ = ["InferenceChecker", "load_spec", "corruptions", "timed_run"]


def load_spec() -> dict:
    """Return the run description named by ``BITLINE_RUN`` (see the module docstring)."""
    path = os.environ.get("BITLINE_RUN")
    if not path:
        raise ValueError("BITLINE_RUN is not set: it must name the bench's run JSON")
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"BITLINE_RUN={path}: cannot read the run JSON ({error})") from None


class InferenceChecker:
    """Compare what the RTL produced with the reference models; collect every mismatch."""

    def __init__(self, log):
        self.log = log
        self.mismatches: list[str] = []
        self.checked_layers = 0
        self.checked_jobs = 0

    def fail(self, message: str) -> None:
        """Record (and log) one mismatch."""
        if len(self.mismatches) < 20:
            self.log.error(message)
        self.mismatches.append(message)

    def compare_layers(self, run: str, got: dict, expected: dict) -> None:
        """Compare every layer output (``layer name -> int64 array``)."""
        for name, want in expected.items():
            self.checked_layers += 1
            have = got.get(name)
            if have is None:
                self.fail(f"{run}: layer {name} produced no output")
                continue
            if have.shape != want.shape:
                self.fail(f"{run}: layer {name} has shape {have.shape}, expected {want.shape}")
                continue
            wrong = np.argwhere(have != want)
            if len(wrong):
                first = tuple(int(i) for i in wrong[0])
                self.fail(f"{run}: layer {name}: {len(wrong)} of {want.size} values differ, "
                           f"first at {first}: got {int(have[first])}, expected "
                           f"{int(want[first])}")

    def compare_network(self, run: str, record, expected) -> None:
        """Compare a whole-network run's counters, whole run and per node, with the
        model's (:class:`bitline.sw.perf.network.NetworkPerf`)."""
        self.checked_jobs += 1
        for name, want in expected.run_counters().items():
            if record.counters.get(name) != want:
                self.fail(f"{run}: {record.name}: counter {name} = "
                          f"{record.counters.get(name)}, the model says {want}")
        if len(record.nodes) != len(expected.nodes):
            self.fail(f"{run}: {record.name}: {len(record.nodes)} nodes' counters, the "
                      f"program has {len(expected.nodes)} nodes")
            return
        for index, (got, node) in enumerate(zip(record.nodes, expected.nodes)):
            for name, want in node.counters().items():
                if got.get(name) != want:
                    self.fail(f"{run}: {record.name}: node {index} ({node.name}): counter "
                              f"{name} = {got.get(name)}, the model says {want}")

    def compare_counters(self, run: str, job, expected: dict) -> None:
        """Compare one job's hardware counters with the performance model's counts."""
        self.checked_jobs += 1
        for name, want in expected.items():
            if job.counters.get(name) != want:
                self.fail(f"{run}: job {job.name} ({job.n_vectors} vectors): counter {name} "
                           f"= {job.counters.get(name)}, the model says {want}")

    def check(self) -> None:
        """Raise ``AssertionError`` if anything differed."""
        assert not self.mismatches, (f"{len(self.mismatches)} mismatches, first: "
                                     f"{self.mismatches[0]}")


class JobWatch:
    """The driver's progress hook: per job, cross-check the ports and report progress.

    The OU reads the crossbar model answered during a job (or a whole-network run) must
    equal its OU_READS counter (the counter and the port agree); the progress file gets
    the state (``unit``: ``"vectors"`` of layer jobs or ``"images"`` of runs).
    """

    def __init__(self, label, crossbars, checker, host, path, run, runs):
        self.label, self.crossbars, self.checker, self.host = label, crossbars, checker, host
        self.path, self.run, self.runs = path, run, runs
        self.reads = 0

    def __call__(self, job, done: int, total: int) -> None:
        if self.crossbars is not None:
            reads = int(self.crossbars.model.reads.sum())
            seen, self.reads = reads - self.reads, reads
            if seen != job.counters["ou_reads"]:
                self.checker.fail(f"{self.label}: job {job.name}: the crossbar ports saw "
                                  f"{seen} OU reads, the OU_READS counter says "
                                  f"{job.counters['ou_reads']}")
        # a layer job counts vectors, a whole-network run (NetworkRun) images
        unit = "images" if hasattr(job, "nodes") else "vectors"
        _write_progress(self.path, {"run": self.run, "runs": self.runs, "layer": job.name,
                                    "done": done, "total": total, "cycles": self.host.now,
                                    "unit": unit})


def model_counters(program: Program, job) -> dict[str, int]:
    """Return the performance model's counters of one job (docs/contract.md section 5)."""
    from bitline.sw.perf import analyze_layer

    perf = analyze_layer(program.layers[job.layer], program.config, job.n_vectors)
    return {"cycles": perf.cycles, "ou_reads": perf.ou_reads,
            "adc_conversions": perf.adc_conversions,
            "reduction_operands": perf.reduction_transfers, "stall_cycles": 0}


def result_layer_names(bundle) -> list[str]:
    """The layer whose output a whole-network run returns: the model output's producer."""
    model = bundle.qmodel.model
    return [layer.name for layer in model.layers if layer.output == model.output_name]


def reference_layers(bundle, x: np.ndarray, check: str, params, seed: int) -> dict:
    """Return the expected output of every layer: golden model or executor (analog)."""
    if check == "golden":
        from bitline.sim.golden import run_golden

        return run_golden(bundle.qmodel, x, return_all=True).layers
    if check == "executor":
        from bitline.sim.analog import AnalogDevice
        from bitline.sim.executor import run_executor

        device = AnalogDevice(bundle.program.config, params, seed=seed)
        return run_executor(bundle.program, bundle.qmodel, x, device=device,
                            return_all=True).layers
    raise ValueError(f"check must be 'golden' or 'executor', not {check!r}")


def _analog(spec: dict, config: AcceleratorConfig):
    """Return ``(AnalogParams or None, seed, AnalogDevice or None)`` of the run."""
    if spec.get("analog") is None:
        return None, int(spec.get("seed", 0)), None
    from bitline.sim.analog import AnalogDevice
    from bitline.sim.analog_params import AnalogParams

    params = AnalogParams.from_dict(spec["analog"], source="BITLINE_RUN analog")
    seed = int(spec.get("seed", 0))
    return params, seed, AnalogDevice(config, params, seed=seed)


async def _bench(dut, spec: dict):
    """Start clock, reset, host and (external designs) the crossbar model."""
    design = spec["design"]
    config = AcceleratorConfig.from_dict(design["config"], source="BITLINE_RUN design")
    host = BenchHost(dut, config, design["harness"])
    crossbars = None
    params, seed, device = _analog(spec, config)
    if design["crossbar"] == "external":
        crossbars = CrossbarBench(dut, config, device)
        crossbars.start()
    elif params is not None:
        raise ValueError("analog parameters need a design with external crossbars")
    await host.start()
    return config, host, crossbars, params, seed


def _write_progress(path: str | None, state: dict) -> None:
    if not path:
        return
    target = Path(path)
    temporary = target.with_name(target.name + ".tmp")
    temporary.write_text(json.dumps(state))
    temporary.replace(target)


def _save_result(path: str, result, cycles: int, wall: float, cpu: float) -> None:
    arrays = {"output": result.output, "output_int": result.output_int}
    if result.runs:
        # whole-network runs: runs/<counter> (N,), nodes/<counter> (N, nodes)
        for counter in result.runs[0].counters:
            arrays[f"runs/{counter}"] = np.array([run.counters[counter]
                                                  for run in result.runs], dtype=np.int64)
        if hasattr(result.runs[0], "n_images"):
            # a pipelined run (PipelinedRun): its images; latency, interval are counters
            arrays["runs/n_images"] = np.array([run.n_images for run in result.runs],
                                               dtype=np.int64)
        for counter in result.runs[0].nodes[0] if result.runs[0].nodes else ():
            arrays[f"nodes/{counter}"] = np.array(
                [[node[counter] for node in run.nodes] for run in result.runs],
                dtype=np.int64)
    for name, value in result.layers.items():
        arrays[f"layer/{name}"] = value
    for key in ("layer", "n_vectors"):
        arrays[f"jobs/{key}"] = np.array([getattr(job, key) for job in result.jobs],
                                         dtype=np.int64)
    arrays["jobs/name"] = np.array([job.name for job in result.jobs])
    for counter in result.counters():
        arrays[f"jobs/{counter}"] = np.array([job.counters[counter] for job in result.jobs],
                                             dtype=np.int64)
    arrays["simulated_cycles"] = np.int64(cycles)
    arrays["wall_seconds"] = np.float64(wall)
    arrays["cpu_seconds"] = np.float64(cpu)
    temporary = Path(path).with_name(Path(path).name + ".tmp.npz")
    np.savez(temporary, **arrays)
    temporary.replace(path)


async def timed_run(host: BenchHost, driver: HostDriver, x: np.ndarray):
    """Load the driver's bundle and run ``x`` through it (in a bridge thread).

    Returns ``(result, simulated cycles, wall seconds, CPU seconds)``.
    """
    def work():
        driver.load()
        return driver.run(x, return_all=True)

    start_cycles, start_wall, start_cpu = host.now, time.perf_counter(), time.process_time()
    result = await bridge(work)()
    return (result, host.now - start_cycles, time.perf_counter() - start_wall,
            time.process_time() - start_cpu)


@cocotb.test()
async def inference(dut):
    """Run every bundle of the spec end to end; compare layers and counters to the models."""
    spec = load_spec()
    config, host, crossbars, params, seed = await _bench(dut, spec)
    device = Device(CocotbTransport(host))
    checker = InferenceChecker(dut._log)
    runs = spec["runs"]
    progress_path = spec.get("progress")
    max_vectors = spec.get("max_vectors")
    for index, run in enumerate(runs):
        bundle = read_bundle(run["bundle"])
        if bundle.program.config != config:
            raise ValueError(f"bundle {run['bundle']} was compiled for another config than "
                             f"the design's")
        x = np.load(run["input"], allow_pickle=False)
        label = f"run {index} ({Path(run['bundle']).name}, {bundle.program.strategy})"
        watch = JobWatch(label, crossbars, checker, host, progress_path, index, len(runs))
        if crossbars is not None:
            crossbars.model.restart_reads()    # read numbers count from the batch's start
        driver = HostDriver.from_bundle(bundle, device, max_vectors=max_vectors,
                                        progress=watch, mode=run.get("mode"))
        result, cycles, wall, cpu = await timed_run(host, driver, x)
        dut._log.info("%s: %d samples, %s, %d simulated cycles in %.1f s wall, %.1f s CPU "
                      "(%.0f cycles/s)", label, len(x),
                      f"{len(result.runs)} whole-network runs" if result.runs
                      else f"{len(result.jobs)} jobs", cycles, wall, cpu,
                      cycles / max(wall, 1e-9))
        if run.get("result"):
            _save_result(run["result"], result, cycles, wall, cpu)
        check = run.get("check", "none")
        if check != "none":
            expected = reference_layers(bundle, x, check, params, seed)
            if spec.get("break_expected"):
                name = bundle.program.layers[0].name
                broken = expected[name].copy()
                broken.reshape(-1)[0] += 1
                expected = dict(expected, **{name: broken})
            if result.runs:
                # whole network: only the output layer leaves the chip
                expected = {name: expected[name] for name in result_layer_names(bundle)}
            checker.compare_layers(label, result.layers, expected)
        if run.get("counters"):
            for job in result.jobs:
                checker.compare_counters(label, job, model_counters(bundle.program, job))
            if result.runs:
                from bitline.sw.perf.network import network_report

                model = network_report(bundle.program)
                for record in result.runs:
                    checker.compare_network(label, record, model)
    if crossbars is not None:
        crossbars.stop()
        assert not crossbars.checker.violations, crossbars.checker.violations[0]
    dut._log.info("checked %d layer outputs and %d jobs' counters", checker.checked_layers,
                  checker.checked_jobs)
    checker.check()


def corruptions(image: bytes, config: AcceleratorConfig) -> list[tuple[str, bytes, ErrorCode]]:
    """Return ``(what, corrupted image, expected error)`` cases for ``image``.

    One flipped bit in the magic, in a header field covered only by the header CRC, in the
    section table, in a cell level and in the last section's payload; a CELLS record naming
    a unit the hardware lacks (when the unit field can hold one).
    """
    from bitline.sw.bundle import parse_image

    def flip(offset: int) -> bytes:
        blob = bytearray(image)
        blob[offset] ^= 0x10
        return bytes(blob)

    parsed = parse_image(image, config)
    sections = sorted(parsed.sections.values(), key=lambda section: section.offset)
    cells = next(section for section in sections if section.name == "CELLS")
    last = sections[-1]
    cases = [
        ("magic", flip(0), ErrorCode.BAD_MAGIC),
        ("header field image_bytes", flip(HEADER_LAYOUT["image_bytes"].offset // 8),
         ErrorCode.HEADER_CRC),
        ("section table", flip(HEADER_BYTES + 2 * SECTION_ENTRY_BYTES - 1),
         ErrorCode.TABLE_CRC),
        # a cell level in the middle of the first CELLS record (past its unit word): only
        # the section CRC at the section's end can tell
        ("CELLS levels", flip(cells.offset + cells.record_bytes // 2), ErrorCode.SECTION_CRC),
        (f"{last.name} payload", flip(last.offset + last.length - 1), ErrorCode.SECTION_CRC),
    ]
    unit_bits = clog2(config.n_xbars)
    if config.n_xbars < 1 << unit_bits:
        # a CELLS record naming a unit the hardware does not have: refused on the spot
        blob = bytearray(image)
        word = int.from_bytes(blob[cells.offset:cells.offset + 4], "little")
        word = (word & ~((1 << unit_bits) - 1)) | config.n_xbars
        blob[cells.offset:cells.offset + 4] = word.to_bytes(4, "little")
        cases.append(("CELLS record unit", bytes(blob), ErrorCode.BAD_RECORD))
    return cases


@cocotb.test()
async def corrupted_image(dut):
    """Corrupted images are reported in STATUS; a job on no image is refused; a good one runs."""
    spec = load_spec()
    config, host, crossbars, params, seed = await _bench(dut, spec)
    device = Device(CocotbTransport(host))
    bundle = read_bundle(spec["corrupt"])
    image = bundle.image
    cases = corruptions(image, config)
    other = Program(config.replace(clock_mhz=config.clock_mhz + 1.0), bundle.program.strategy,
                    bundle.program.layers)
    cases.append(("image of another config", encode_image(other), ErrorCode.BAD_DIGEST))
    x = np.load(spec["runs"][0]["input"], allow_pickle=False)

    def work():
        reported = []
        for what, blob, code in cases:
            try:
                device.program(blob)
            except DeviceError as error:
                reported.append((what, error.code, code, str(error)))
                device.clear_error()   # else the loader's error stays the reported one
                try:
                    device.run_layer_job(0, np.zeros((1, bundle.program.layers[0].n_inputs),
                                                     dtype=np.int64),
                                         bundle.program.layers[0].n_outputs)
                except DeviceError as refused:
                    reported.append((f"job after {what}", refused.code,
                                     ErrorCode.NOT_PROGRAMMED, str(refused)))
                else:
                    reported.append((f"job after {what}", None, ErrorCode.NOT_PROGRAMMED,
                                     "the job ran"))
            else:
                reported.append((what, None, code, "the image was accepted"))
        driver = HostDriver.from_bundle(bundle, device)
        status = driver.load()
        return reported, status, driver.run(x, return_all=True)

    reported, status, result = await bridge(work)()
    failures = []
    for what, got, want, message in reported:
        dut._log.info("%s: %s (expected %s): %s", what, getattr(got, "name", got), want.name,
                      message)
        if got != want:
            failures.append(f"{what}: reported {getattr(got, 'name', got)}, expected "
                            f"{want.name} ({message})")
    assert status & Status.PROGRAMMED and not status & Status.ERROR, hex(status)
    checker = InferenceChecker(dut._log)
    checker.compare_layers("good image after the errors", result.layers,
                           reference_layers(bundle, x, "golden", None, 0))
    if crossbars is not None:
        crossbars.stop()
    assert not failures, "; ".join(failures)
    checker.check()
