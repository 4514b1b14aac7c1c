"""The whole-network performance model (bitline.sw.perf.network) counted a second way.

The model takes every node's cycles from ``hw.spec.net_timing`` (the formula the RTL's
counters equal, checked on the Verilog in tests/cocotb/test_e2e_network.py) and its events
from ``perf.analyze_layer``. Here the same figures come from other sources: the output
pixels of each compute node from the golden model's layer outputs (not from the node's
window), the OU reads per unit and conversions from the crossbar-level executor's own
reading of the layer's entries, the pool elements from the im2col matrix of the pool's
input map, and the run's cycles from the sequencer's phases walked one by one
(docs/hardware.md, "Whole-network mode"). The pipeline model's figures are compared with
``perf.pipeline_report`` of the same program.
"""

from __future__ import annotations

import numpy as np
import pytest

from bitline.hw.spec import net_timing
from bitline.hw.spec.network import NodeKind
from bitline.hw.spec.timing import layer_cycles
from bitline.sim.executor import Counters, LayerExecutor
from bitline.sim.golden import run_golden
from bitline.sim.rtl import DIGITS_CONFIG
from bitline.sw.flow import calibration_inputs, compile_model
from bitline.sw.frontend.im2col import im2col
from bitline.sw.models import resolve_model
from bitline.sw.perf import analyze, pipeline_report
from bitline.sw.perf.network import (
    format_network_report, network_report, pipeline_comparison,
)


@pytest.fixture(scope="module", params=["digits-cnn", "digits-resnet"])
def compiled(request):
    model = resolve_model(request.param)
    calib, _ = calibration_inputs(model, "digits")
    result = compile_model(model, "bwq", "bwq3", DIGITS_CONFIG, calib, xbars="auto",
                           network=True)
    golden = run_golden(result.qmodel, calib[:1], return_all=True)
    return result.program, result.qmodel, golden


def walked_run_cycles(input_codes: int, node_cycles: list[int]) -> int:
    """CYCLES of a run, one sequencer phase at a time (not net_timing.run_cycles)."""
    cycles = 0
    for _ in ("FETCH", "LOAD", "SETUP"):            # node 0's record
        cycles += 1
    assert cycles == net_timing.INPUT_SETUP_CYCLES
    cycles += sum(1 for _ in range(input_codes))   # one input code per cycle
    for index, node in enumerate(node_cycles):
        phases = ("SETUP", "START") if index == 0 else ("FETCH", "LOAD", "SETUP", "START")
        cycles += len(phases) + node
    return cycles


def test_node_cycles_and_events_counted_a_second_way(compiled):
    program, qmodel, golden = compiled
    config = program.config
    report = network_report(program)
    by_name = {layer.name: layer for layer in qmodel.model.layers}
    assert [node.name for node in report.nodes] == [node.name for node in program.nodes]
    reads = conversions = 0
    for node, perf in zip(program.nodes, report.nodes):
        layer = by_name[node.name]
        output = golden.layers[node.name][0]          # the golden model's output map
        pixels = int(np.prod(output.shape[1:])) if output.ndim == 3 else 1
        start = net_timing.READER_START_CYCLES
        if perf.kind == NodeKind.COMPUTE:
            mapped = program.layer(node.name)
            runner = LayerExecutor(mapped, config)
            tally = Counters()
            tally.record(runner, pixels)
            want = start + layer_cycles(config, mapped.n_inputs, mapped.n_outputs, pixels,
                                        runner.unit_reads)
            assert perf.ou_reads == tally.total_reads
            assert perf.adc_conversions == tally.total_conversions
            reads += tally.total_reads
            conversions += tally.total_conversions
        elif perf.kind in (NodeKind.POOL_MAX, NodeKind.POOL_AVG):
            source = golden.layers[next(item.name for item in qmodel.model.layers
                                        if item.output == layer.inputs[0])][0]
            if layer.op == "gap":
                elements = source.size
            else:
                kernel = layer.attrs["kernel"]
                windows = im2col(source[None], kernel, layer.attrs["stride"],
                                 layer.attrs["pads"], (1, 1), 0)
                elements = windows.size
            want = start + elements + config.max_act_bits + 1
            assert perf.ou_reads == perf.adc_conversions == 0
        else:
            assert perf.kind == NodeKind.ADD and layer.op == "add"
            want = start + output.size + net_timing.RESIDUAL_LATENCY
        assert perf.cycles == want, node.name
        assert perf.outputs == output.size
        assert perf.counters() == {"node_cycles": want, "node_input_stall": start,
                                   "node_output_stall": 0}
    input_codes = int(np.prod(qmodel.model.input_shape))
    assert report.cycles == walked_run_cycles(input_codes, [n.cycles for n in report.nodes])
    assert report.run_counters() == {
        "cycles": report.cycles, "ou_reads": reads, "adc_conversions": conversions,
        "stall_cycles": 0, "reduction_operands": report.total("reduction_operands")}
    # latency and images/s at a clock
    assert report.latency_us(100.0) == pytest.approx(report.cycles / 100.0)
    assert report.images_per_second(25.0) == pytest.approx(25e6 / report.cycles)


def test_pipeline_figures_are_the_pipeline_models(compiled):
    program, qmodel, _ = compiled
    figures = pipeline_comparison(program)
    pipeline = pipeline_report(analyze(program, qmodel), program.config.n_xbars)
    assert figures.bottleneck_cycles == pipeline.bottleneck_cycles
    assert figures.latency_cycles == pipeline.latency_cycles
    text = format_network_report(network_report(program), 100.0, figures)
    assert "stage model (with --pipeline)" in text and "one node at a time" in text
    assert f"{network_report(program).cycles:,} cycles" in text


def test_a_program_without_nodes_is_refused(compiled):
    from dataclasses import replace

    program = replace(compiled[0], nodes=None)
    with pytest.raises(ValueError, match="no network nodes \\(compile with --network\\)"):
        network_report(program)
    with pytest.raises(ValueError, match="clock_mhz must be positive, not 0"):
        network_report(compiled[0]).images_per_second(0)
