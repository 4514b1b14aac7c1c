"""Shift-and-add: back-to-back updates of one accumulator never stall or get lost."""

import numpy as np
import pytest

from bitline.hw.spec.timing import ACCUMULATE_CYCLES, DRAIN_STAGES
from bitline.hw.unit.adc_mux import total_shift_bits
from bitline.hw.unit.shift_add import ShiftAdd

from support.configs import TEST_CONFIGS, small_config
from support.simulation import simulate


def random_updates(rng, config, cycles, channels, hot=0.6):
    """Per cycle, per lane: (valid, sign, shift, dest, code); ``hot`` repeats the last dest."""
    updates = []
    last = [0] * config.adcs_per_xbar
    max_shift = min((1 << total_shift_bits(config)) - 1,
                    config.max_weight_bits - 1 + (config.max_slices - 1) * config.dac_bits)
    for _ in range(cycles):
        lanes = []
        for lane in range(config.adcs_per_xbar):
            dest = last[lane] if rng.random() < hot else int(rng.integers(channels))
            last[lane] = dest
            lanes.append((int(rng.random() < 0.9), int(rng.integers(2)),
                          int(rng.integers(max_shift + 1)), dest,
                          int(rng.integers(config.adc_max + 1))))
        updates.append(lanes)
    return updates


def accumulate_model(config, updates, channels):
    """acc[dest] += (-1)**sign * code << shift over every valid lane; touched per channel."""
    acc = np.zeros(channels, dtype=np.int64)
    touched = np.zeros(channels, dtype=bool)
    for lanes in updates:
        for valid, sign, shift, dest, code in lanes:
            if valid:
                acc[dest] += (-1) ** sign * (code << shift)
                touched[dest] = True
    return acc, touched


def run_batches(config, batches, channels):
    dut = ShiftAdd(config, channels)
    drained = []

    async def testbench(ctx):
        for updates in batches:
            for lanes in updates:  # one update per lane per cycle, no gaps
                ctx.set(dut.updates.valid, 1)
                for lane, (valid, sign, shift, dest, code) in enumerate(lanes):
                    payload = dut.updates.payload[lane]
                    ctx.set(payload.valid, valid)
                    ctx.set(payload.sign, sign)
                    ctx.set(payload.shift, shift)
                    ctx.set(payload.dest, dest)
                    ctx.set(payload.code, code)
                await ctx.tick()
            ctx.set(dut.updates.valid, 0)
            for _ in range(ACCUMULATE_CYCLES):  # the last update's input and write stages
                await ctx.tick()
            values = []
            for channel in range(channels + DRAIN_STAGES.index("unit_sum")):
                ctx.set(dut.drain.valid, int(channel < channels))
                ctx.set(dut.drain.payload, min(channel, channels - 1))
                if ctx.get(dut.drained.valid):
                    values.append((ctx.get(dut.drained.payload.value),
                                   ctx.get(dut.drained.payload.touched)))
                await ctx.tick()
            ctx.set(dut.drain.valid, 0)
            drained.append(values)

    simulate(dut, testbench)
    return drained


@pytest.mark.parametrize("name", sorted(TEST_CONFIGS))
def test_accumulates_with_forwarding_and_drains(name):
    config = small_config(**TEST_CONFIGS[name])
    rng = np.random.default_rng(13)
    channels = 6
    batches = [random_updates(rng, config, 40, channels),
               random_updates(rng, config, 25, channels, hot=0.9)]
    drained = run_batches(config, batches, channels)
    for updates, values in zip(batches, drained):
        acc, touched = accumulate_model(config, updates, channels)
        # the drain cleared the previous batch: each batch starts from zero
        assert [v for v, _ in values] == acc.tolist()
        assert [bool(t) for _, t in values] == touched.tolist()


def test_same_accumulator_every_cycle_on_every_lane():
    config = small_config()
    updates = [[(1, 0, 0, 3, 1)] * config.adcs_per_xbar for _ in range(20)]
    (values,) = run_batches(config, [updates], 4)
    assert values[3] == (20 * config.adcs_per_xbar, 1)
    assert values[0] == (0, 0)
