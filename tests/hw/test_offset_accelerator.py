"""The offset weight encoding on the Accelerator (Amaranth simulator, emulated crossbars).

The cells hold ``w + B`` and the output path subtracts ``B * sum(x)`` of each vector
(docs/contract.md section 4): the outputs must equal the integer arithmetic of the true
weights, bit-exactly, in both output modes, with vectors whose loads overlap the previous
vector's drain (the correction must follow its own vector down the drain pipeline) and
next to a differential layer (no correction). The cycle counters still equal the model.
"""

import numpy as np
import pytest

from bitline.sw.mapping import map_matrix
from bitline.sw.perf import analyze_layer

from support.configs import TEST_CONFIGS, small_config
from support.accelerator import expected_outputs, run_jobs, set_output_unit


def offset_layer(config, rng, n_outputs, n_inputs, *, encoding="offset", mode="requant",
                 xbar_offset=0, name="layer"):
    """A random isaac layer with the given encoding; weights use the full width."""
    weight_max = (1 << (config.max_weight_bits - 1)) - 1
    weight = rng.integers(-weight_max, weight_max + 1, (n_outputs, n_inputs))
    weight[0, 0] = -weight_max             # the widest magnitude: B = 2**(max_weight_bits-1)
    weight[rng.random(weight.shape) < 0.2] = 0
    layer = map_matrix(weight, config, "isaac", act_bits=config.max_act_bits,
                       encoding=encoding, xbar_offset=xbar_offset, name=name)
    return set_output_unit(layer, config, rng, mode), weight


@pytest.mark.parametrize("name,mode", [("full-adc", "requant"), ("ragged-2bit", "raw")])
def test_offset_layer_bit_exact_and_counters_equal_model(name, mode):
    config = small_config(**TEST_CONFIGS[name])
    rng = np.random.default_rng(len(name) + len(mode))
    layer, weight = offset_layer(config, rng, 6, 11, mode=mode)
    assert layer.weight_offset == 1 << (config.max_weight_bits - 1)
    # the differential mapping of the same weights needs more columns
    differential, _ = offset_layer(config, np.random.default_rng(len(name) + len(mode)), 6, 11)
    assert layer.stats["ou_reads_per_vector"] <= differential.stats["ou_reads_per_vector"]
    vectors = rng.integers(0, 1 << config.max_act_bits, (4, 11))
    vectors[0] = (1 << config.max_act_bits) - 1          # the largest correction
    ((outputs, counters, _),) = run_jobs(config, [layer], [(0, vectors, 6)])
    assert np.array_equal(outputs, expected_outputs(config, layer, weight, vectors))
    perf = analyze_layer(layer, config, len(vectors))
    assert counters["cycles"] == perf.cycles
    assert counters["ou_reads"] == perf.ou_reads
    assert counters["adc_conversions"] == perf.adc_conversions


def test_offset_next_to_differential_with_host_gaps_and_stalls():
    """Jobs alternate between an offset and a differential layer; the host pauses inputs and
    outputs, so swaps land at every point of the drain pipeline."""
    config = small_config(n_xbars=4)
    rng = np.random.default_rng(5)
    offset, w_offset = offset_layer(config, rng, 8, 7, mode="raw", name="offset")
    plain, w_plain = offset_layer(config, rng, 5, 9, encoding="differential", name="plain",
                                  xbar_offset=int(offset.xbars.max()) + 1)
    assert plain.weight_offset == 0
    x_offset = rng.integers(0, 16, (3, 7))
    x_plain = rng.integers(0, 16, (1, 9))
    jobs = [(0, x_offset, 8), (1, x_plain, 5), (0, x_offset[::-1], 8)]
    results = run_jobs(config, [offset, plain], jobs,
                       input_gaps={3, 4, 20, 21, 22, 40}, output_stalls={26, 27, 35, 44})
    assert np.array_equal(results[0][0], expected_outputs(config, offset, w_offset, x_offset))
    assert np.array_equal(results[1][0], expected_outputs(config, plain, w_plain, x_plain))
    assert np.array_equal(results[2][0], expected_outputs(config, offset, w_offset, x_offset[::-1]))
