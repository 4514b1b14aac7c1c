"""ADC-sharing mux: conversion phases, ADC gating, code routing and counters."""

import numpy as np
import pytest

from bitline.hw.spec.timing import ROW_SELECT_CYCLES
from bitline.hw.unit.adc_mux import ADCMux

from support.configs import TEST_CONFIGS, small_config
from support.simulation import simulate


def random_commands(rng, config, count):
    commands = []
    for _ in range(count):
        cols = [(int(rng.integers(2)), int(rng.integers(2)),
                 int(rng.integers(config.max_weight_bits)), int(rng.integers(16)))
                for _ in range(config.ou_cols)]
        commands.append((int(rng.integers(config.row_groups)), int(rng.integers(config.col_groups)),
                         int(rng.integers(config.max_slices)), cols))
    return commands


def conversion_model(config, command):
    """Per phase: (adc_en bits, per-ADC update descriptor or None) from the spec."""
    row_group, col_group, slice_index, cols = command
    phases = []
    for phase in range(config.conversions_per_read):
        enables, lanes = [], []
        for adc in range(config.adcs_per_xbar):
            j = phase * config.adcs_per_xbar + adc
            on = (j < config.ou_cols and cols[j][0] == 1
                  and col_group * config.ou_cols + j < config.cols)
            enables.append(int(on))
            lanes.append((cols[j][1], cols[j][2] + slice_index * config.dac_bits, cols[j][3])
                         if on else None)
        phases.append((enables, lanes))
    return phases


def set_command(ctx, dut, command, valid=True):
    row_group, col_group, slice_index, cols = command
    ctx.set(dut.reads.valid, int(valid))
    payload = dut.reads.payload
    ctx.set(payload.row_group, row_group)
    ctx.set(payload.col_group, col_group)
    ctx.set(payload.slice_index, slice_index)
    for j, (valid_bit, sign, shift, dest) in enumerate(cols):
        ctx.set(payload.cols[j].valid, valid_bit)
        ctx.set(payload.cols[j].sign, sign)
        ctx.set(payload.cols[j].shift, shift)
        ctx.set(payload.cols[j].dest, dest)


@pytest.mark.parametrize("name", sorted(TEST_CONFIGS))
def test_phases_gating_and_routing(name):
    config = small_config(**TEST_CONFIGS[name])
    rng = np.random.default_rng(21)
    commands = random_commands(rng, config, 10)
    adcs = config.adcs_per_xbar
    dut = ADCMux(config)
    codes_seen = []       # (cycle, codes) the fake crossbar returned
    updates_seen = []     # per result cycle: lanes
    port_seen = []        # per strobe: (row_group, col_group, phase, adc_en, wordline_en, dac)
    counters = {"reads": 0, "conversions": 0}

    async def testbench(ctx):
        in_flight = []  # (due cycle, codes)
        asked = []      # (row_group, slice_index) requested per cycle
        index = 0
        cycle = 0
        # in_flight: conversions still on their way to the port
        while index < len(commands) or in_flight or ctx.get(dut.in_flight) or cycle < 3:
            if index < len(commands):
                set_command(ctx, dut, commands[index])
            else:
                ctx.set(dut.reads.valid, 0)
            # a fake row driver: wordline_en / dac depend on the group and slice requested
            # ROW_SELECT_CYCLES earlier (the row drivers' pipeline)
            asked.append((ctx.get(dut.rows.row_group), ctx.get(dut.rows.slice_index)))
            group, t = asked[-1 - ROW_SELECT_CYCLES] if cycle >= ROW_SELECT_CYCLES else (0, 0)
            ctx.set(dut.rows.wordline_en, (group * 5 + t) % (1 << config.ou_rows))
            ctx.set(dut.rows.dac, [(group + t + k) % (config.dac_max + 1)
                                   for k in range(config.ou_rows)])
            # a fake crossbar with the configured latency
            due = [codes for at, codes in in_flight if at == cycle]
            in_flight = [(at, codes) for at, codes in in_flight if at != cycle]
            ctx.set(dut.result.valid, int(bool(due)))
            if due:
                ctx.set(dut.result.codes, due[0])
            if ctx.get(dut.read.strobe):
                port_seen.append((
                    ctx.get(dut.read.row_group), ctx.get(dut.read.col_group),
                    ctx.get(dut.read.phase),
                    [(ctx.get(dut.read.adc_en) >> a) & 1 for a in range(adcs)],
                    ctx.get(dut.read.wordline_en),
                    [ctx.get(dut.read.dac[k]) for k in range(config.ou_rows)]))
                codes = [int(rng.integers(config.adc_max + 1)) for _ in range(adcs)]
                if config.adc_latency == 0:
                    ctx.set(dut.result.valid, 1)
                    ctx.set(dut.result.codes, codes)
                    due = [codes]
                else:
                    in_flight.append((cycle + config.adc_latency, codes))
                codes_seen.append(codes)
            if due:
                lanes = dut.updates.payload
                assert ctx.get(dut.updates.valid)
                updates_seen.append([
                    (ctx.get(lanes[a].valid), ctx.get(lanes[a].sign), ctx.get(lanes[a].shift),
                     ctx.get(lanes[a].dest), ctx.get(lanes[a].code)) for a in range(adcs)])
            assert not ctx.get(dut.protocol_error)
            counters["reads"] += ctx.get(dut.read_issued)
            counters["conversions"] += ctx.get(dut.conversions)
            advance = ctx.get(dut.reads.valid) and ctx.get(dut.reads.ready)
            await ctx.tick()
            ctx.set(dut.result.valid, 0)
            if advance:
                index += 1
            cycle += 1

    simulate(dut, testbench)

    expected_port, expected_updates = [], []
    for command in commands:
        group, col_group, t, _ = command
        for phase, (enables, lanes) in enumerate(conversion_model(config, command)):
            expected_port.append((group, col_group, phase, enables,
                                  (group * 5 + t) % (1 << config.ou_rows),
                                  [(group + t + k) % (config.dac_max + 1)
                                   for k in range(config.ou_rows)]))
            expected_updates.append(lanes)
    # one strobe per conversion cycle, back to back
    assert port_seen == expected_port
    assert len(updates_seen) == len(expected_updates)
    for got, lanes, codes in zip(updates_seen, expected_updates, codes_seen):
        for adc, lane in enumerate(lanes):
            if lane is None:
                assert got[adc][0] == 0
            else:
                assert got[adc] == (1, *lane, codes[adc])
    assert counters["reads"] == len(commands)
    assert counters["conversions"] == sum(sum(e) for p in expected_port for e in [p[3]])


def test_protocol_error_on_unexpected_codes():
    config = small_config()
    dut = ADCMux(config)

    async def testbench(ctx):
        ctx.set(dut.result.valid, 1)  # codes without a strobe adc_latency cycles earlier
        assert ctx.get(dut.protocol_error)
        await ctx.tick()

    simulate(dut, testbench)
