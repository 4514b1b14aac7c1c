"""Layer jobs on the whole Accelerator in the Amaranth simulator, and their expected outputs."""

from __future__ import annotations

import numpy as np

from bitline.hw.core.memories import program_memories
from bitline.hw.core.top import Accelerator
from bitline.sim.amaranth import run_job
from bitline.sw.mapping import map_matrix
from bitline.sw.perf import analyze_layer
from bitline.sw.integer.arith import apply_act_block_bits, output_unit

from support.simulation import simulate

__all__ = ["assert_counters_match_model", "expected_outputs", "make_layer", "run_jobs",
           "set_output_unit"]


def make_layer(config, strategy, rng, n_outputs=5, n_inputs=11, *, act_bits=4, mode="requant",
               act_block_bits=None, xbar_offset=0, name="layer"):
    weight_max = (1 << (config.max_weight_bits - 1)) - 1
    weight = rng.integers(-weight_max, weight_max + 1, (n_outputs, n_inputs))
    weight[rng.random(weight.shape) < 0.3] = 0  # some sparsity, so hollow OUs appear
    layer = map_matrix(weight, config, strategy, act_bits=act_bits,
                       act_block_bits=act_block_bits, xbar_offset=xbar_offset, name=name)
    return set_output_unit(layer, config, rng, mode), weight


def set_output_unit(layer, config, rng, mode="requant"):
    """Give ``layer`` seeded random output-unit parameters (bias, multiplier, shift) in
    ``mode``, clamped to the config's activation range; return it."""
    n_outputs = layer.n_outputs
    layer.bias = rng.integers(-60, 60, n_outputs)
    layer.mult = rng.integers(1 << 14, 1 << 15, n_outputs)
    layer.shift = rng.integers(15, 19, n_outputs)
    layer.mode = mode
    layer.zero_point, layer.clamp_lo = 0, 0
    layer.clamp_hi = (1 << config.max_act_bits) - 1
    return layer


def expected_outputs(config, layer, weight, vectors, act_block_bits=None):
    """The integer golden arithmetic of one layer: ``output_unit(x @ W.T)`` per vector.

    With BWQ ``act_block_bits`` the inputs are first cut to each row block's width
    (blocks of ``config.ou_rows`` inputs).
    """
    x = np.asarray(vectors, dtype=np.int64)
    if act_block_bits is not None:
        x = apply_act_block_bits(x, act_block_bits, layer.act_bits, config.ou_rows)
    return output_unit(x @ weight.T, layer.bias, layer.mult, layer.shift, layer.zero_point,
                       layer.clamp_lo, layer.clamp_hi, mode=layer.mode)


def run_jobs(config, layers, jobs, **run_options):
    """Run ``jobs`` = [(layer index, vectors, n_outputs)]; return [(outputs, counters, status)].

    The layers are preloaded into the Accelerator's memories (no loader); ``run_options`` go
    to :func:`bitline.sim.amaranth.run_job` (input gaps, output stalls, ...).
    """
    dut = Accelerator(config, memories=program_memories(config, layers))
    results = []

    async def testbench(ctx):
        for layer_index, vectors, n_outputs in jobs:
            results.append(await run_job(ctx, dut, layer_index, vectors, n_outputs,
                                         **run_options))

    simulate(dut, testbench)
    return results


def assert_counters_match_model(config, layer, n_vectors, counters):
    perf = analyze_layer(layer, config, n_vectors)
    assert counters["cycles"] == perf.cycles
    assert counters["ou_reads"] == perf.ou_reads
    assert counters["adc_conversions"] == perf.adc_conversions
    assert counters["reduction_operands"] == perf.reduction_transfers
    assert counters["stall_cycles"] == 0
