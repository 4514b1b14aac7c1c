"""cocotb end to end: the digits CNN with layer copies, with and without random backpressure.

The digits CNN (bwq, 3-bit blocks) is compiled for :data:`bitline.sim.rtl.DIGITS_CONFIG`
(ten 72 x 512 units) and given copies at ``--budget xbars:14`` (``allocate_copies``, dense
placements: ``/features/features.2/Conv`` gets three copies on six units, ``max_copies = 3``,
14 units; its 2 x 64 output pixels split 43 / 43 / 42, so the last share ends early and
an idle lane is exercised). The bundle runs twice on the Verilog of that config (external
crossbar ports, the Python crossbar model) behind the regression's seeded pause generators
(``bitline.sim.cocotb.tb_backpressure``): once with a host that never stalls, once with
random pauses on the image, input and output streams. The bench checks every layer
against the golden model; here, per job:

* without pauses: cycles = the performance model's figure (``analyze_layer``, hence
  ``hw.spec.timing.layer_cycles`` with copies) and, counted a second, independent way,
  ``layer_cycles(copies=c)`` of the crossbar executor's per-unit reads of the same vectors;
  OU reads and ADC conversions = the executor's counts and the model's; reduction operands
  = the model's; no stall cycles;
* with pauses: the same outputs and the same OU-read, conversion and reduction counters as
  without; stall cycles appear (and the cycles they add): ``cycles - stall_cycles <= free
  cycles <= cycles``.

Cost: one Verilator build of the 14-unit design (cached by digest), then two runs of two
images: measured on the loaded 2-core machine, build 476 s cold, run 175 s (free run 193,287
simulated cycles, held run 248,311 of which 39,883 stall cycles; 17 s of simulator CPU);
slow marker. Verilator only, like the other digits-design tests.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from bitline.hw.spec.timing import layer_cycles
from bitline.sim.executor import Counters, IdealDevice, LayerExecutor
from bitline.sim.rtl import DIGITS_CONFIG, design_unit_entries, job_capacity
from bitline.sw.integer import arith, graph

from support.e2e import report, verilator_only

pytestmark = [pytest.mark.cocotb, pytest.mark.slow, verilator_only]

BENCH = "bitline.sim.cocotb.tb_backpressure"
TOPLEVEL = "bitline_pauses"
BUDGET = "xbars:14"
IMAGES = 2
#: Pauses of the held run: a pause starts in ~1 cycle of 8 (program), 4 (inputs) and 3
#: (outputs) and lasts 1 .. 8, 16 and 4 cycles.
THROTTLE = {"seed": 2026, "rate": {"program": 32, "inputs": 64, "outputs": 85},
            "mask": {"program": 7, "inputs": 15, "outputs": 3}}


def compile_digits_with_copies(out_dir: Path):
    """The digits CNN on DIGITS_CONFIG with copies at :data:`BUDGET`; (bundle, program, x)."""
    from bitline.sw.bundle import write_bundle
    from bitline.sw.datasets import load_dataset
    from bitline.sw.flow import calibration_inputs, compile_model
    from bitline.sw.flow.compile import allocate_copies
    from bitline.sw.models import resolve_model

    model = resolve_model("digits-cnn")
    calib, _ = calibration_inputs(model, "digits")
    result = compile_model(model, "bwq", "bwq3", DIGITS_CONFIG, calib,
                           xbars=DIGITS_CONFIG.n_xbars)
    result, _ = allocate_copies(result, BUDGET, spread=False)
    x_test, _ = load_dataset("digits", "test")
    x_path = out_dir / "x.npy"
    np.save(x_path, np.asarray(x_test[:IMAGES], dtype=np.float32))
    bundle = write_bundle(out_dir / "digits-copies", result.program, result.qmodel)
    return bundle, result.program, x_path


def pauses_design(program):
    """Verilog of the regression top for ``program``'s config (cached by digest), its
    Verilator file making only the ports public, and the harness parameters."""
    from bitline.hw.toolchain.verilog import port_table
    from bitline.sim import rtl
    from bitline.sim.cocotb import tb_regression
    from bitline.sim.cocotb.runner import component_verilog

    config = program.config
    entries = design_unit_entries(config, [program])
    key = json.dumps({"config": config.to_dict(), "entries": entries, "top": TOPLEVEL,
                      "hardware": rtl._hardware_digest(), "throttle": hashlib.sha256(
                          Path(tb_regression.__file__).read_bytes()).hexdigest()},
                     sort_keys=True)
    folder = rtl._design_root() / f"pauses-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    verilog, vlt, harness = (folder / f"{TOPLEVEL}.v", folder / f"{TOPLEVEL}.vlt",
                             folder / "harness.json")
    if not (verilog.is_file() and vlt.is_file() and harness.is_file()):
        folder.mkdir(parents=True, exist_ok=True)
        top = tb_regression.RegressionTop(config, "external", unit_entries=entries)
        names = ["clk", "rst"] + [port["name"] for port in port_table(top)]
        texts = {vlt: "`verilator_config\n" + "".join(
                     f'public_flat_rw -module "{TOPLEVEL}" -var "{name}"\n' for name in names),
                 harness: json.dumps({name: getattr(top, name) for name in (
                     "source_depth", "sink_depth", "fill_lanes", "drain_lanes")}),
                 verilog: component_verilog(top, TOPLEVEL)}
        for path, text in texts.items():      # atomically: parallel sessions share the cache
            temporary = path.with_name(f".{path.name}.{os.getpid()}")
            temporary.write_text(text)
            temporary.replace(path)
    return verilog, vlt, json.loads(harness.read_text())


def executor_jobs(bundle, program, x_path, names, vectors):
    """Per job (in order): the executor's (OU reads, conversions, layer_cycles(copies))
    on the job's own input vectors -- the layer's columns, in the driver's chunks."""
    columns = {}

    def forward(qlayer, layer_inputs):
        if qlayer.layer.op in ("conv", "gemm"):
            columns[qlayer.layer.name] = arith.layer_columns(qlayer, layer_inputs[0])
        return graph.layer_forward(qlayer, layer_inputs)

    x = np.load(x_path)
    graph.walk(bundle.qmodel, arith.quantize_input(x, bundle.qmodel.input), forward)
    taken, counts = {}, []
    for name, count in zip(names, vectors):
        layer = program.layer(name)
        start = taken.get(name, 0)
        job_columns = np.asarray(columns[name][start:start + count], dtype=np.int64)
        taken[name] = start + count
        runner = LayerExecutor(layer, program.config)
        runner.run(job_columns, IdealDevice(program.config))
        tally = Counters()
        tally.record(runner, count)
        counts.append((tally.total_reads, tally.total_conversions, layer_cycles(
            program.config, layer.n_inputs, layer.n_outputs, count, runner.unit_reads,
            copies=layer.copies)))
    assert taken == {name: len(columns[name]) for name in taken}   # every vector, once
    return counts


def load_jobs(path):
    with np.load(path) as result:
        jobs = {key[len("jobs/"):]: result[key] for key in result.files
                if key.startswith("jobs/")}
        layers = {key: result[key] for key in result.files if key.startswith("layer/")}
    return jobs, layers


def test_digits_cnn_with_copies_counters_and_backpressure(tmp_path):
    from bitline.sim.cocotb.runner import build_and_test
    from bitline.sw.bundle import read_bundle
    from bitline.sw.perf import analyze_layer

    bundle_dir, program, x_path = compile_digits_with_copies(tmp_path)
    copied = {layer.name: layer.copies for layer in program.layers if layer.copies > 1}
    assert copied == {"/features/features.2/Conv": 3}, copied
    assert program.config.max_copies == 3 and program.config.n_xbars == 14
    verilog, vlt, harness = pauses_design(program)
    runs = [{"name": "free", "throttle": None, "result": str(tmp_path / "free.npz")},
            {"name": "held", "throttle": THROTTLE, "result": str(tmp_path / "held.npz")}]
    spec = {"design": {"config": program.config.to_dict(), "crossbar": "external",
                       "harness": harness},
            "bundle": str(bundle_dir), "input": str(x_path), "runs": runs,
            "max_vectors": job_capacity(SimpleNamespace(info={"harness": harness}), program)}
    spec_path = tmp_path / "run.json"
    spec_path.write_text(json.dumps(spec, indent=2))
    result = build_and_test(verilog, TOPLEVEL, BENCH, extra_env={"BITLINE_RUN": str(spec_path)},
                            verilator_args=["--no-public-flat-rw", str(vlt)])
    report("digits-cnn copies, free and held", result)
    assert result.tests == 1 and result.failed == 0

    free, free_layers = load_jobs(runs[0]["result"])
    held, held_layers = load_jobs(runs[1]["result"])
    names = free["name"].tolist()
    assert held["name"].tolist() == names and np.array_equal(held["n_vectors"],
                                                              free["n_vectors"])
    assert any(name in copied for name in names)
    for key, value in free_layers.items():
        assert np.array_equal(held_layers[key], value), key

    bundle = read_bundle(bundle_dir)
    executed = executor_jobs(bundle, program, x_path, names, free["n_vectors"].tolist())
    for index, name in enumerate(names):
        vectors = int(free["n_vectors"][index])
        model = analyze_layer(program.layer(name), program.config, vectors)
        reads, conversions, cycles = executed[index]
        job = f"job {index} ({name}, {vectors} vectors)"
        assert int(free["cycles"][index]) == model.cycles == cycles, job
        assert int(free["stall_cycles"][index]) == 0, job
        assert int(free["ou_reads"][index]) == model.ou_reads == reads, job
        assert int(free["adc_conversions"][index]) == model.adc_conversions == conversions, job
        assert int(free["reduction_operands"][index]) == model.reduction_transfers, job
        for counter in ("ou_reads", "adc_conversions", "reduction_operands"):
            assert held[counter][index] == free[counter][index], (job, counter)
        assert (held["cycles"][index] - held["stall_cycles"][index] <= free["cycles"][index]
                <= held["cycles"][index]), job
    assert int(held["stall_cycles"].sum()) > 0
