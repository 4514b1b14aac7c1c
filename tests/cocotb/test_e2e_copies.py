"""cocotb end to end with layer copies: lockstep lanes on the generated Verilog.

The random CNN of the small design (:data:`support.configs.E2E_SMALL_CONFIG`, bwq) gets two
copies of its first layer and three of its last (``Program.with_copies``: fresh units,
``max_copies = 3``), is written as a bundle and run through the host driver on the Verilog
of that config (external crossbar ports, the Python crossbar model): every layer equals the
golden model and every job's counters the performance model with copies (checked in the
bench), and -- a second, independent count -- the jobs' cycle counters equal
``layer_cycles(copies=c)`` from the executor's per-unit reads and their OU-read counters the
executor's counts of the same shares. The digits CNN is not used here: its design takes
minutes to build, and this test needs a second build (a config with lanes).
"""

from __future__ import annotations

import numpy as np
import pytest

from bitline.hw.spec.timing import layer_cycles
from bitline.sim.executor import Counters, IdealDevice, LayerExecutor
from bitline.sim.rtl import bench_design, run_spec
from bitline.sw.bundle import read_bundle, write_bundle
from bitline.sw.integer import arith

from support.e2e import report, spec_for

pytestmark = [pytest.mark.cocotb, pytest.mark.slow]


def test_random_cnn_with_copies_bit_exact_and_counters(workloads, tmp_path):
    bundle_dir, program, x_path = workloads.random("small", "bwq")
    bundle = read_bundle(bundle_dir)
    names = [layer.name for layer in program.layers]
    copies = {names[0]: 2, names[-1]: 3}
    copied = program.with_copies(copies)
    assert copied.config.max_copies == 3 and copied.config.n_xbars > program.config.n_xbars
    out = write_bundle(tmp_path / "copies", copied, bundle.qmodel)
    design = bench_design(copied.config, "external")
    spec = spec_for(design, [(out, copied, x_path)], "golden")
    spec["runs"][0]["result"] = str(tmp_path / "result.npz")
    report("random CNN with copies", run_spec(design, spec, work_dir=tmp_path))

    with np.load(tmp_path / "result.npz") as result:
        jobs = {key[len("jobs/"):]: result[key] for key in result.files
                if key.startswith("jobs/")}
    # the executor's view of every job: the layer's input columns, run on its copies
    x = np.load(x_path)
    inputs = {}

    def forward(qlayer, layer_inputs):
        from bitline.sw.integer import graph

        if qlayer.layer.op in ("conv", "gemm"):
            inputs[qlayer.layer.name] = arith.layer_columns(qlayer, layer_inputs[0])
        return graph.layer_forward(qlayer, layer_inputs)

    from bitline.sw.integer import graph
    graph.walk(bundle.qmodel, arith.quantize_input(x, bundle.qmodel.input), forward)
    seen = set()
    for index, name in enumerate(jobs["name"].tolist()):
        layer = copied.layer(name)
        vectors = int(jobs["n_vectors"][index])
        runner = LayerExecutor(layer, copied.config)
        columns = inputs[name]
        assert len(columns) == vectors   # one job per layer (the input fits the bench)
        runner.run(np.asarray(columns, dtype=np.int64), IdealDevice(copied.config))
        counts = Counters()
        counts.record(runner, vectors)
        assert int(jobs["ou_reads"][index]) == counts.total_reads
        assert int(jobs["adc_conversions"][index]) == counts.total_conversions
        assert int(jobs["cycles"][index]) == layer_cycles(
            copied.config, layer.n_inputs, layer.n_outputs, vectors, runner.unit_reads,
            copies=layer.copies)
        seen.add(name)
    assert set(copies) <= seen
