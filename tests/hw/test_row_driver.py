"""Row drivers: loads into the shadow bank, swap, and the slices an OU read sees (pipelined)."""

import numpy as np
import pytest

from bitline.hw.spec.timing import ROW_SELECT_CYCLES
from bitline.hw.unit.row_driver import RowDriver

from support.configs import TEST_CONFIGS, small_config
from support.simulation import simulate


def slice_model(config, row_map, vector, row_group, slice_index):
    """(wordline_en, dac) of one row group: slice_t(x[in(r)]), 0 for unmapped rows."""
    enables, dacs = [], []
    for k in range(config.ou_rows):
        row = row_group * config.ou_rows + k
        mapped = row < config.rows and row_map[row] >= 0
        code = int(vector[row_map[row]]) if mapped else 0
        enables.append(int(mapped))
        dacs.append((code >> (slice_index * config.dac_bits)) & config.dac_max if mapped else 0)
    return enables, dacs


def random_row_map(rng, config, n_inputs):
    row_map = np.full(config.rows, -1)
    used = rng.choice(config.rows, size=min(config.rows, n_inputs + 2), replace=False)
    row_map[used] = rng.integers(0, n_inputs, len(used))  # an input may drive several rows
    return row_map


async def load_vector(ctx, dut, vector):
    for index, code in enumerate(vector):
        ctx.set(dut.load.valid, 1)
        ctx.set(dut.load.payload.index, index)
        ctx.set(dut.load.payload.code, int(code))
        await ctx.tick()
    ctx.set(dut.load.valid, 0)


async def observe(ctx, dut, config):
    """Ask for every (group, slice), one request per cycle; each answer ROW_SELECT_CYCLES later."""
    requests = [(group, t) for group in range(config.row_groups)
                for t in range(config.max_slices)]
    out = {}
    for cycle in range(len(requests) + ROW_SELECT_CYCLES):
        if cycle < len(requests):
            ctx.set(dut.select.row_group, requests[cycle][0])
            ctx.set(dut.select.slice_index, requests[cycle][1])
        if cycle >= ROW_SELECT_CYCLES:
            enables = [ctx.get(dut.select.wordline_en[k]) for k in range(config.ou_rows)]
            dacs = [ctx.get(dut.select.dac[k]) for k in range(config.ou_rows)]
            out[requests[cycle - ROW_SELECT_CYCLES]] = (enables, dacs)
        await ctx.tick()
    return out


@pytest.mark.parametrize("name", sorted(TEST_CONFIGS))
def test_double_buffered_load_and_slices(name):
    config = small_config(**TEST_CONFIGS[name])
    rng = np.random.default_rng(11)
    n_inputs = 9
    row_map = random_row_map(rng, config, n_inputs)
    vectors = rng.integers(0, 1 << config.max_act_bits, (3, n_inputs))
    dut = RowDriver(config, row_map)

    def expected(vector):
        return {(g, t): slice_model(config, row_map, vector, g, t)
                for g in range(config.row_groups) for t in range(config.max_slices)}

    async def testbench(ctx):
        await load_vector(ctx, dut, vectors[0])
        ctx.set(dut.swap, 1)
        await ctx.tick()
        ctx.set(dut.swap, 0)
        assert await observe(ctx, dut, config) == expected(vectors[0])
        # loading the next vector into the shadow bank leaves the active one untouched
        await load_vector(ctx, dut, vectors[1])
        assert await observe(ctx, dut, config) == expected(vectors[0])
        ctx.set(dut.swap, 1)
        await ctx.tick()
        ctx.set(dut.swap, 0)
        assert await observe(ctx, dut, config) == expected(vectors[1])
        # the last code of a vector and the swap may share a cycle
        await load_vector(ctx, dut, vectors[2][:-1])
        ctx.set(dut.load.valid, 1)
        ctx.set(dut.load.payload.index, n_inputs - 1)
        ctx.set(dut.load.payload.code, int(vectors[2][-1]))
        ctx.set(dut.swap, 1)
        await ctx.tick()
        ctx.set(dut.load.valid, 0)
        ctx.set(dut.swap, 0)
        assert await observe(ctx, dut, config) == expected(vectors[2])

    simulate(dut, testbench)


def test_row_map_write_port():
    config = small_config()
    rng = np.random.default_rng(5)
    n_inputs = 12
    row_map = random_row_map(rng, config, n_inputs)
    vector = rng.integers(0, 16, n_inputs)
    dut = RowDriver(config)  # nothing mapped at reset

    async def testbench(ctx):
        for row, index in enumerate(row_map):
            ctx.set(dut.map_write.valid, 1)
            ctx.set(dut.map_write.payload.row, row)
            ctx.set(dut.map_write.payload.entry.valid, int(index >= 0))
            ctx.set(dut.map_write.payload.entry.index, max(int(index), 0))
            await ctx.tick()
        ctx.set(dut.map_write.valid, 0)
        await load_vector(ctx, dut, vector)
        ctx.set(dut.swap, 1)
        await ctx.tick()
        ctx.set(dut.swap, 0)
        got = await observe(ctx, dut, config)
        for (group, t), value in got.items():
            assert value == slice_model(config, row_map, vector, group, t)

    simulate(dut, testbench)


def test_rejects_bad_row_map():
    config = small_config()
    with pytest.raises(ValueError, match="shape"):
        RowDriver(config, np.zeros(3))
    with pytest.raises(ValueError, match="indices"):
        RowDriver(config, np.full(16, config.max_in_features))
