"""Whole layer jobs through the Accelerator (digital emulator crossbars).

Outputs must equal the integer golden arithmetic bit-exactly for every mapping strategy, and
the performance counters must equal the performance model (docs/contract.md section 5).
"""

import numpy as np
import pytest

from bitline.hw.core.memories import program_memories
from bitline.hw.core.top import Accelerator
from bitline.hw.spec.registers import ErrorCode, Register, Status
from bitline.hw.spec.timing import layer_cycles, pipeline_latency
from bitline.hw.spec.validate import check_config
from bitline.sim.amaranth import csr_read, csr_write
from bitline.sw.mapping import STRATEGIES
from bitline.sw.perf import analyze_layer

from support.configs import TEST_CONFIGS, small_config
from support.accelerator import assert_counters_match_model, expected_outputs, make_layer, run_jobs
from support.simulation import simulate


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("name", ["full-adc", "ragged-2bit", "shared-adc"])
def test_layer_bit_exact_and_counters_equal_model(strategy, name):
    config = small_config(**TEST_CONFIGS[name])
    rng = np.random.default_rng(sum(map(ord, strategy + name)))
    layer, weight = make_layer(config, strategy, rng)
    vectors = rng.integers(0, 16, (3, layer.n_inputs))
    ((outputs, counters, status),) = run_jobs(config, [layer],
                                              [(0, vectors, layer.n_outputs)])
    assert np.array_equal(outputs, expected_outputs(config, layer, weight, vectors))
    assert status & Status.DONE and not status & Status.ERROR
    assert_counters_match_model(config, layer, len(vectors), counters)


@pytest.mark.parametrize("strategy", ["bwq", "ivq-temporal"])
def test_bwq_activation_widths_and_raw_mode(strategy):
    config = small_config()
    rng = np.random.default_rng(8)
    # 3 row blocks of ou_rows inputs with 4, 2 and 1 activation bits
    act_block_bits = np.array([4, 2, 1])
    layer, weight = make_layer(config, strategy, rng, n_inputs=12, mode="raw",
                               act_block_bits=act_block_bits)
    vectors = rng.integers(0, 16, (2, 12))
    ((outputs, counters, _),) = run_jobs(config, [layer], [(0, vectors, layer.n_outputs)])
    assert np.array_equal(outputs, expected_outputs(config, layer, weight, vectors,
                                                    act_block_bits))
    assert_counters_match_model(config, layer, len(vectors), counters)


def test_two_layers_on_separate_units():
    config = small_config(n_xbars=4)
    rng = np.random.default_rng(17)
    first, w1 = make_layer(config, "ivq-spatial", rng, n_outputs=4, n_inputs=9, name="a")
    second, w2 = make_layer(config, "bwq", rng, n_outputs=6, n_inputs=7, name="b",
                            xbar_offset=int(first.xbars.max()) + 1)
    x1 = rng.integers(0, 16, (2, 9))
    x2 = rng.integers(0, 16, (1, 7))
    results = run_jobs(config, [first, second], [(1, x2, 6), (0, x1, 4), (1, x2, 6)])
    assert np.array_equal(results[0][0], expected_outputs(config, second, w2, x2))
    assert np.array_equal(results[1][0], expected_outputs(config, first, w1, x1))
    assert np.array_equal(results[2][0], results[0][0])
    assert_counters_match_model(config, second, 1, results[2][1])


def test_sustained_one_read_per_cycle_per_unit():
    # adcs_per_xbar == ou_cols: every unit must issue one OU read per cycle, all in parallel
    config = small_config(n_xbars=2)
    assert config.conversions_per_read == 1
    rng = np.random.default_rng(23)
    # 32 inputs = 8 chunks of 4 = two full crossbars: equal unit loads (isaac reads only
    # populated row groups, so a ragged last row tile would load the units unequally)
    layer, weight = make_layer(config, "isaac", rng, n_outputs=2, n_inputs=32)
    unit_reads = program_memories(config, [layer]).layer_reads[0]
    assert np.count_nonzero(unit_reads) == 2 and unit_reads.max() > 32  # compute-bound
    assert unit_reads[0] == unit_reads[1]
    jobs = [(0, rng.integers(0, 16, (v, 32)), 2) for v in (1, 2, 4)]
    results = run_jobs(config, [layer], jobs)
    cycles = [counters["cycles"] for _, counters, _ in results]
    # each extra vector costs C_comp + O + P cycles; C_comp is the busiest unit's reads
    per_vector = (cycles[2] - cycles[1]) // 2
    assert cycles[1] - cycles[0] == per_vector
    compute = per_vector - 2 - pipeline_latency(config)
    assert compute == unit_reads.max()
    for (outputs, counters, _), (_, vectors, _) in zip(results, jobs):
        assert counters["ou_reads"] == len(vectors) * unit_reads.sum()
        assert np.array_equal(outputs, expected_outputs(config, layer, weight, vectors))
    # both units read in the same cycles: reads per compute cycle == active units
    assert results[2][1]["ou_reads"] == 4 * unit_reads.sum() and unit_reads.sum() == 2 * compute


def test_host_stalls_are_counted_and_harmless():
    config = small_config(**TEST_CONFIGS["shared-adc"])
    rng = np.random.default_rng(31)
    layer, weight = make_layer(config, "bwq", rng)
    vectors = rng.integers(0, 16, (3, layer.n_inputs))
    gaps = {0, 1, 5, 6, 7, 40}
    stalls = set(range(60, 75)) | {120, 121}
    ((outputs, counters, _),) = run_jobs(config, [layer], [(0, vectors, layer.n_outputs)],
                                         input_gaps=gaps, output_stalls=stalls)
    assert np.array_equal(outputs, expected_outputs(config, layer, weight, vectors))
    model = analyze_layer(layer, config, len(vectors)).cycles
    assert counters["stall_cycles"] > 0
    assert model < counters["cycles"] <= model + counters["stall_cycles"]


def test_job_errors():
    config = small_config()
    rng = np.random.default_rng(2)
    layer, _ = make_layer(config, "bwq", rng)
    memories = program_memories(config, [layer])

    async def bench_unprogrammed(ctx):
        dut = unprogrammed
        await csr_write(ctx, dut.csr, Register.CTRL, 1)
        status = await csr_read(ctx, dut.csr, Register.STATUS)
        assert status & Status.ERROR and status >> 8 == ErrorCode.NOT_PROGRAMMED
        assert not status & Status.BUSY

    async def bench_bad_layer(ctx):
        dut = programmed
        assert await csr_read(ctx, dut.csr, Register.ID) == int.from_bytes(b"BTLN", "little")
        await csr_write(ctx, dut.csr, Register.LAYER, 3)
        await csr_write(ctx, dut.csr, Register.N_VECTORS, 1)
        await csr_write(ctx, dut.csr, Register.CTRL, 1)
        status = await csr_read(ctx, dut.csr, Register.STATUS)
        assert status >> 8 == ErrorCode.BAD_LAYER and not status & Status.BUSY
        await csr_write(ctx, dut.csr, Register.CTRL, 4)  # clear the error
        assert await csr_read(ctx, dut.csr, Register.STATUS) & Status.ERROR == 0

    unprogrammed = Accelerator(config)
    programmed = Accelerator(config, memories=memories)
    for dut, bench in ((unprogrammed, bench_unprogrammed), (programmed, bench_bad_layer)):
        simulate(dut, bench)


def test_generation_rejects_out_of_range_programs_and_configs():
    config = small_config()
    rng = np.random.default_rng(3)
    big = small_config(n_xbars=8)
    layer, _ = make_layer(big, "isaac", rng, n_outputs=16, n_inputs=40, xbar_offset=4)
    with pytest.raises(ValueError, match=r"needs crossbar unit \d+ \(\d+ units\), the "
                                         r"hardware has n_xbars = 2"):
        program_memories(config, [layer])
    # a 20-bit accumulator cannot hold 48 inputs of 8 bits times 8-bit weights
    narrow = small_config(acc_bits=20, max_act_bits=8, max_weight_bits=8, n_xbars=64)
    wide_layer, _ = make_layer(narrow, "isaac", np.random.default_rng(4), n_outputs=2,
                               n_inputs=48, act_bits=8)
    wide_layer.bias[:] = 0
    with pytest.raises(ValueError, match="overflows acc_bits = 20"):
        program_memories(narrow, [wide_layer])
    # a datapath whose single shift-and-add term does not fit acc_bits
    with pytest.raises(ValueError, match="acc_bits \\(16\\) cannot hold one shift-and-add"):
        check_config(small_config(acc_bits=16, adc_bits=8, max_act_bits=8,
                                  max_weight_bits=2))
    with pytest.raises(ValueError, match="entry memory holds 2"):
        program_memories(config, [make_layer(config, "isaac", rng)[0]], unit_entries=2)


def test_timing_formula():
    config = small_config()
    p = pipeline_latency(config)
    assert p == 2 + 3 + 1 + 2  # entry fetch, row select, adc_latency, accumulate (input, write)
    # load-bound: K dominates the per-vector period (Q = 10 drain stages)
    assert layer_cycles(config, 100, 2, 3, [10]) == 100 + 2 * 100 + (10 + 2 + p) + 10
    # compute-bound
    assert layer_cycles(config, 4, 2, 3, [50, 20]) == 4 + 3 * (50 + 2 + p) + 10
    with pytest.raises(ValueError):
        layer_cycles(config, 4, 2, 0, [1])
