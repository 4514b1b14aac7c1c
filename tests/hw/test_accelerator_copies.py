"""Layer copies run by the Accelerator: lockstep lanes (docs/hardware.md, "Copies").

A layer with ``c`` copies splits a job's ``V`` vectors into contiguous shares, one input /
output lane per copy. Outputs must equal the integer golden arithmetic bit-exactly, the
counters the performance model (``layer_cycles(copies=c)``) and the crossbar executor's
counts of the same shares, and backpressure on either stream may only add stall cycles.
"""

import numpy as np
import pytest

from bitline.hw.spec.program import Program
from bitline.hw.spec.timing import copy_shares, layer_cycles
from bitline.sim.amaranth import lane_beats, lane_outputs
from bitline.sim.executor import Counters, LayerExecutor
from bitline.sim.executor import IdealDevice

from support.accelerator import assert_counters_match_model, expected_outputs, make_layer, run_jobs
from support.configs import TEST_CONFIGS, small_config


def copied_layer(config, strategy, copies, rng, **layer_options):
    """Return ``(config with room for the copies, the layer with copies, its weight)``."""
    layer, weight = make_layer(config, strategy, rng, **layer_options)
    program = Program(config=config, strategy=strategy, layers=[layer])
    program = program.with_copies({layer.name: copies})
    return program.config, program.layers[0], weight


def executor_counts(config, layer, vectors):
    """The crossbar executor's counts of the job: its Counters and reads per unit per vector."""
    runner = LayerExecutor(layer, config)
    runner.run(np.asarray(vectors, dtype=np.int64), IdealDevice(config))
    counters = Counters()
    counters.record(runner, len(vectors))
    return counters, runner.unit_reads


def test_lane_beats_round_trip():
    # the host-side split is the contiguous shares of timing.copy_shares
    vectors = np.arange(7 * 3).reshape(7, 3)
    beats = lane_beats(vectors, 3, 4)
    assert beats.shape == (3 * 3, 4)
    for lane, (start, stop) in enumerate(copy_shares(7, 3)):
        got = beats[:, lane].reshape(3, 3)[:stop - start]
        assert np.array_equal(got, vectors[start:stop])
    assert not beats[:, 3].any() and not beats[3:, 2].any()   # idle lanes carry zeros
    outputs = np.stack([beats.reshape(3, 3, 4)[:, :2, lane].reshape(-1) for lane in range(4)],
                       axis=1)   # pretend each output is the vector's first two codes
    assert np.array_equal(lane_outputs(outputs, 7, 3, 2), vectors[:, :2])


#: Each case simulates the whole accelerator with every copy's units (a few seconds each in
#: the Amaranth simulator); the first three are the quick set, the rest run with ``slow``.
SLOW = pytest.mark.slow


@pytest.mark.parametrize("strategy, name, copies, vectors", [
    ("bwq", "full-adc", 3, 5),             # shares 2, 2, 1
    ("isaac", "full-adc", 2, 4),
    ("ivq-spatial", "ragged-2bit", 2, 3),  # shares 2, 1
    pytest.param("ivq-temporal", "shared-adc", 3, 7, marks=SLOW),  # shares 3, 3, 1
    pytest.param("bwq", "shared-adc", 3, 2, marks=SLOW),   # shares 1, 1, 0: an idle lane
    pytest.param("isaac", "full-adc", 1, 3, marks=SLOW),   # one copy on a two-lane machine
])
def test_copies_bit_exact_and_counters_equal_model(strategy, name, copies, vectors):
    base = small_config(**TEST_CONFIGS[name], max_copies=max(2, copies))
    rng = np.random.default_rng(sum(map(ord, strategy + name)) + copies)
    config, layer, weight = copied_layer(base, strategy, copies, rng, n_outputs=3, n_inputs=9)
    assert layer.copies == copies and config.max_copies >= copies
    x = rng.integers(0, 16, (vectors, layer.n_inputs))
    ((outputs, counters, status),) = run_jobs(config, [layer], [(0, x, layer.n_outputs)],
                                              copies=copies)
    assert np.array_equal(outputs, expected_outputs(config, layer, weight, x))
    assert_counters_match_model(config, layer, vectors, counters)
    # the cycle formula with copies, and the executor's counts of the same shares
    executed, unit_reads = executor_counts(config, layer, x)
    assert counters["ou_reads"] == executed.total_reads
    assert counters["adc_conversions"] == executed.total_conversions
    assert counters["cycles"] == layer_cycles(config, layer.n_inputs, layer.n_outputs, vectors,
                                              unit_reads, copies=copies)
    # a second count: each copy's units read their share, all shares on the same entries
    per_vector = int(np.sum(unit_reads))
    assert counters["ou_reads"] == per_vector * vectors


@SLOW
def test_copies_beside_a_layer_without_copies():
    base = small_config(n_xbars=2, max_copies=3)
    rng = np.random.default_rng(5)
    first, w1 = make_layer(base, "ivq-spatial", rng, n_outputs=4, n_inputs=9, name="a")
    second, w2 = make_layer(base, "bwq", rng, n_outputs=6, n_inputs=7, name="b",
                            xbar_offset=int(first.xbars.max()) + 1)
    program = Program(config=base.replace(n_xbars=4), strategy="mixed",
                      layers=[first, second]).with_copies({"b": 3})
    config = program.config
    first, second = program.layers
    x1 = rng.integers(0, 16, (3, 9))
    x2 = rng.integers(0, 16, (4, 7))
    results = run_jobs(config, program.layers, [(1, x2, 6)], copies=3)
    results += run_jobs(config, program.layers, [(0, x1, 4)])
    assert np.array_equal(results[0][0], expected_outputs(config, second, w2, x2))
    assert np.array_equal(results[1][0], expected_outputs(config, first, w1, x1))
    assert_counters_match_model(config, second, 4, results[0][1])
    assert_counters_match_model(config, first, 3, results[1][1])


@pytest.mark.parametrize("copies, vectors", [(3, 4), pytest.param(2, 5, marks=SLOW)])
def test_backpressure_changes_only_stall_cycles(copies, vectors):
    base = small_config(n_xbars=2, max_copies=3)
    rng = np.random.default_rng(31 + copies)
    config, layer, weight = copied_layer(base, "bwq", copies, rng, mode="raw", n_outputs=3,
                                         n_inputs=9)
    x = rng.integers(0, 16, (vectors, layer.n_inputs))
    job = [(0, x, layer.n_outputs)]
    ((free, free_counters, _),) = run_jobs(config, [layer], job, copies=copies)
    gaps = {int(c) for c in np.flatnonzero(rng.random(600) < 0.3)}
    stalls = {int(c) for c in np.flatnonzero(rng.random(600) < 0.4)}
    ((held, held_counters, _),) = run_jobs(config, [layer], job, copies=copies,
                                           input_gaps=gaps, output_stalls=stalls)
    assert np.array_equal(free, expected_outputs(config, layer, weight, x))
    assert np.array_equal(held, free)
    assert held_counters["stall_cycles"] > 0
    for name in ("ou_reads", "adc_conversions", "reduction_operands"):
        assert held_counters[name] == free_counters[name]
    # every stall cycle is an extra busy cycle, nothing else is
    assert (held_counters["cycles"] - held_counters["stall_cycles"]
            <= free_counters["cycles"] <= held_counters["cycles"])


def test_memories_refuse_more_copies_than_lanes():
    base = small_config(n_xbars=2, max_copies=3)
    rng = np.random.default_rng(2)
    config, layer, _ = copied_layer(base, "isaac", 3, rng)
    from bitline.hw.core.memories import program_memories
    from bitline.hw.spec.program import ProgramError
    with pytest.raises(ProgramError, match=r"field lanes: 3 copies, the hardware runs at most "
                                           r"max_copies = 2"):
        program_memories(config.replace(max_copies=2), [layer])


@SLOW
def test_loaded_image_runs_copies():
    """Through the loader: the CELLS records' source gives each copy unit its entries, the
    LAYERS lanes its lane (the preloaded memories of the other tests skip the loader).

    ``slow``: streaming the image byte by byte takes most of its ~5-9 s.
    """
    from bitline.hw.core.top import Accelerator
    from bitline.hw.spec.registers import Status
    from bitline.sim.amaranth import load_image, run_job
    from bitline.sw.bundle import encode_image

    from support.simulation import simulate

    base = small_config(n_xbars=2, max_copies=2)
    rng = np.random.default_rng(12)
    config, layer, weight = copied_layer(base, "ivq-temporal", 2, rng, n_outputs=3,
                                         n_inputs=9)
    program = Program(config=config, strategy="ivq-temporal", layers=[layer])
    dut = Accelerator(config)
    x = rng.integers(0, 16, (3, layer.n_inputs))
    got = []

    async def testbench(ctx):
        status = await load_image(ctx, dut, encode_image(program))
        assert status & Status.PROGRAMMED and not status & Status.ERROR, hex(status)
        got.append(await run_job(ctx, dut, 0, x, layer.n_outputs, copies=2))

    simulate(dut, testbench)
    ((outputs, counters, _),) = got
    assert np.array_equal(outputs, expected_outputs(config, layer, weight, x))
    assert_counters_match_model(config, layer, len(x), counters)


def test_offset_encoding_correction_per_lane():
    """Offset weight encoding (cells hold w + B): each lane subtracts B * sum(x) of its own
    vector; different vectors per lane and host pauses move swaps along the drain."""
    from bitline.sw.mapping import map_matrix

    from support.accelerator import set_output_unit

    config = small_config(n_xbars=2, max_copies=3)
    rng = np.random.default_rng(21)
    weight_max = (1 << (config.max_weight_bits - 1)) - 1
    weight = rng.integers(-weight_max, weight_max + 1, (3, 7))
    weight[0, 0] = -weight_max
    layer = set_output_unit(map_matrix(weight, config, "isaac", act_bits=config.max_act_bits,
                                       encoding="offset", name="offset"), config, rng, "raw")
    assert layer.weight_offset > 0
    program = Program(config=config, strategy="isaac", layers=[layer]).with_copies(
        {"offset": 3})
    config, layer = program.config, program.layers[0]
    x = rng.integers(0, 1 << config.max_act_bits, (5, 7))   # shares 2, 2, 1
    x[3] = (1 << config.max_act_bits) - 1                  # the largest correction, lane 1
    ((outputs, counters, _),) = run_jobs(config, [layer], [(0, x, 3)], copies=3,
                                         input_gaps={2, 3, 9}, output_stalls={20, 21, 30})
    assert np.array_equal(outputs, expected_outputs(config, layer, weight, x))
    assert counters["ou_reads"] == executor_counts(config, layer, x)[0].total_reads
