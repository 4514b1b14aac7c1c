"""A whole (tiny) compiled model through the Accelerator: image.bin -> loader -> layer jobs.

The model is quantized and mapped by the compiler, the image is streamed through the
hardware loader, and every compute layer's outputs must equal the integer golden model's
(``bitline.sim.golden.run_golden``) bit-exactly; the counters must equal the performance
model's.
"""

import numpy as np
import pytest

from bitline.hw.core.top import Accelerator
from bitline.hw.spec.registers import Status
from bitline.sim.amaranth import load_image, run_job
from bitline.sim.golden import run_golden
from bitline.sw.bundle import encode_image
from bitline.sw.flow import compile_model
from bitline.sw.frontend.onnx_import import load_onnx
from bitline.sw.integer.arith import layer_columns, quantize_input
from bitline.sw.perf import analyze_layer

from support.configs import TINY_MLP_CONFIG
from support.networks import tiny_mlp_onnx
from support.simulation import simulate


@pytest.mark.parametrize("strategy,spec", [("bwq", "bwq3"), ("ivq-temporal", "varied4"),
                                           ("isaac", "int8")])
def test_compiled_model_through_loader_matches_golden(tmp_path, strategy, spec):
    model = load_onnx(tiny_mlp_onnx(tmp_path / "tiny.onnx"))
    rng = np.random.default_rng(1)
    calib = rng.random((16, 8))
    result = compile_model(model, strategy, spec, TINY_MLP_CONFIG, calib, xbars="auto")
    program, qmodel = result.program, result.qmodel
    image = encode_image(program)
    x = rng.random((3, 8))
    golden = run_golden(qmodel, x, return_all=True)

    # per compute layer: its input codes (the golden producer's output) as im2col vectors
    codes = {model.input_name: quantize_input(x, qmodel.input)}
    for layer in model.layers:
        codes[layer.output] = golden.layers[layer.name]
    jobs = []
    for index, layer_program in enumerate(program.layers):
        layer = next(l for l in model.layers if l.name == layer_program.name)
        qlayer = qmodel.layers[layer.name]
        vectors = layer_columns(qlayer, codes[layer.inputs[0]])
        jobs.append((index, vectors, golden.layers[layer.name].reshape(len(vectors), -1)))

    dut = Accelerator(program.config)
    results = []

    async def testbench(ctx):
        status = await load_image(ctx, dut, image)
        assert status & Status.PROGRAMMED and not status & Status.ERROR, hex(status)
        for index, vectors, expected in jobs:
            results.append(await run_job(ctx, dut, index, vectors, expected.shape[1]))

    simulate(dut, testbench)
    for (index, vectors, expected), (outputs, counters, _) in zip(jobs, results):
        assert np.array_equal(outputs, expected), program.layers[index].name
        perf = analyze_layer(program.layers[index], program.config, len(vectors))
        assert counters["cycles"] == perf.cycles
        assert counters["ou_reads"] == perf.ou_reads
        assert counters["adc_conversions"] == perf.adc_conversions
