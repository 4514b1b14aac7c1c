"""OU controller: entry walk, BWQ slice ranges, zero-bubble issue and busy timing."""

import numpy as np
import pytest

from bitline.hw.core.memories import pack_words
from bitline.hw.spec.encoding import entry_layout, numpy_dtype
from bitline.hw.spec.timing import ENTRY_FETCH_CYCLES
from bitline.hw.unit.ou_controller import OUController

from support.configs import TEST_CONFIGS, small_config
from support.simulation import simulate


def random_entries(rng, config, count, n_outputs=8):
    entries = np.zeros(count, dtype=numpy_dtype(entry_layout(config)))
    entries["row_group"] = rng.integers(0, config.row_groups, count)
    entries["col_group"] = rng.integers(0, config.col_groups, count)
    lo = rng.integers(0, config.max_slices, count)
    entries["slice_lo"] = lo
    entries["slice_hi"] = [int(rng.integers(low + 1, config.max_slices + 1)) for low in lo]
    for j in range(config.ou_cols):
        entries[f"cols.{j}.valid"] = rng.integers(0, 2, count)
        entries[f"cols.{j}.sign"] = rng.integers(0, 2, count)
        entries[f"cols.{j}.shift"] = rng.integers(0, config.max_weight_bits, count)
        entries[f"cols.{j}.dest"] = rng.integers(0, n_outputs, count)
    return entries


def command_model(config, entries):
    """The OU reads an entry list asks for, in order: one per slice in [slice_lo, slice_hi)."""
    commands = []
    for entry in entries:
        for t in range(int(entry["slice_lo"]), int(entry["slice_hi"])):
            cols = [(int(entry[f"cols.{j}.valid"]), int(entry[f"cols.{j}.sign"]),
                     int(entry[f"cols.{j}.shift"]), int(entry[f"cols.{j}.dest"]))
                    for j in range(config.ou_cols)]
            commands.append((int(entry["row_group"]), int(entry["col_group"]), t, cols))
    return commands


def read_command(ctx, payload, config):
    cols = [(ctx.get(payload.cols[j].valid), ctx.get(payload.cols[j].sign),
             ctx.get(payload.cols[j].shift), ctx.get(payload.cols[j].dest))
            for j in range(config.ou_cols)]
    return (ctx.get(payload.row_group), ctx.get(payload.col_group),
            ctx.get(payload.slice_index), cols)


def run(config, entries, ready_pattern=None, runs=2):
    """Issue the entries ``runs`` times; return per run (commands, cycles busy after go).

    Without ``ready_pattern`` the consumer behaves like the ADC mux: it holds a command for
    ``conversions_per_read`` cycles and accepts it in the last one.
    """
    dut = OUController(config, depth=32, init=pack_words(entry_layout(config), entries))
    results = []

    async def testbench(ctx):
        ctx.set(dut.n_entries, len(entries))
        for _ in range(runs):
            commands, busy_cycles = [], 0
            ctx.set(dut.go, 1)
            cycle = phase = 0
            while True:
                if ready_pattern is None:
                    ready = int(phase == config.conversions_per_read - 1)
                    if ctx.get(dut.reads.valid):
                        phase = 0 if ready else phase + 1
                else:
                    ready = ready_pattern(cycle)
                ctx.set(dut.reads.ready, ready)
                if not ctx.get(dut.busy):
                    break
                busy_cycles += 1
                if ctx.get(dut.reads.valid) and ready:
                    commands.append(read_command(ctx, dut.reads.payload, config))
                await ctx.tick()
                ctx.set(dut.go, 0)
                cycle += 1
            results.append((commands, busy_cycles))
            await ctx.tick()

    simulate(dut, testbench)
    return results


@pytest.mark.parametrize("name", sorted(TEST_CONFIGS))
def test_issues_every_slice_without_bubbles(name):
    config = small_config(**TEST_CONFIGS[name])
    rng = np.random.default_rng(2)
    entries = random_entries(rng, config, 12)
    expected = command_model(config, entries)
    for commands, busy_cycles in run(config, entries):
        assert commands == expected
        # busy from go through the last command: the fetch (memory read, entry register),
        # then back to back
        assert busy_cycles == ENTRY_FETCH_CYCLES + len(expected) * config.conversions_per_read


def test_one_read_per_cycle_when_always_ready():
    config = small_config()
    rng = np.random.default_rng(4)
    entries = random_entries(rng, config, 10)
    expected = command_model(config, entries)
    (commands, busy_cycles), = run(config, entries, runs=1)
    assert commands == expected
    assert busy_cycles == ENTRY_FETCH_CYCLES + len(expected)


@pytest.mark.parametrize("count", [1, 2, 5])
def test_first_command_after_the_fetch_then_no_gap(count):
    """reads.valid rises ENTRY_FETCH_CYCLES after go and stays high until the last read."""
    config = small_config()
    entries = random_entries(np.random.default_rng(count), config, count)
    reads = len(command_model(config, entries))
    dut = OUController(config, depth=8, init=pack_words(entry_layout(config), entries))
    trace = []

    async def testbench(ctx):
        ctx.set(dut.n_entries, count)
        ctx.set(dut.reads.ready, 1)
        ctx.set(dut.go, 1)
        for _ in range(ENTRY_FETCH_CYCLES + reads + 3):
            trace.append(ctx.get(dut.reads.valid))
            await ctx.tick()
            ctx.set(dut.go, 0)

    simulate(dut, testbench)
    assert trace == [0] * ENTRY_FETCH_CYCLES + [1] * reads + [0] * 3


def test_random_backpressure():
    config = small_config(**TEST_CONFIGS["ragged-2bit"])
    rng = np.random.default_rng(9)
    entries = random_entries(rng, config, 8)
    pattern = rng.integers(0, 2, 10_000)
    results = run(config, entries, lambda cycle: int(pattern[cycle]))
    for commands, _ in results:
        assert commands == command_model(config, entries)


def test_no_entries_is_idle_after_go():
    config = small_config()
    (commands, busy_cycles), = run(config, random_entries(np.random.default_rng(0), config, 0),
                                   runs=1)
    assert commands == [] and busy_cycles == 1
