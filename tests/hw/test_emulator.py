"""The digital crossbar emulator answers OU reads as docs/contract.md section 4 defines them."""

import numpy as np
import pytest

from bitline.hw.unit.emulator import CrossbarEmulator

from support.configs import TEST_CONFIGS, small_config
from support.simulation import simulate


def port_model(config, levels, row_group, col_group, phase, dac, wordline_en, adc_en):
    """Codes of one conversion cycle, from the port definition (xbar_port docstring)."""
    codes = []
    for adc in range(config.adcs_per_xbar):
        column_in_ou = phase * config.adcs_per_xbar + adc
        column = col_group * config.ou_cols + column_in_ou
        total = 0
        if adc_en[adc] and column_in_ou < config.ou_cols and column < config.cols:
            for k in range(config.ou_rows):
                row = row_group * config.ou_rows + k
                if row < config.rows and wordline_en[k]:
                    total += int(dac[k]) * int(levels[row, column])
        codes.append(min(config.adc_max, total))
    return codes


def drive_read(ctx, port, config, request):
    row_group, col_group, phase, dac, wordline_en, adc_en = request
    ctx.set(port.read.strobe, 1)
    ctx.set(port.read.row_group, row_group)
    ctx.set(port.read.col_group, col_group)
    ctx.set(port.read.phase, phase)
    ctx.set(port.read.dac, [int(v) for v in dac])
    ctx.set(port.read.wordline_en, int(sum(int(v) << k for k, v in enumerate(wordline_en))))
    ctx.set(port.read.adc_en, int(sum(int(v) << a for a, v in enumerate(adc_en))))


def random_request(rng, config):
    return (int(rng.integers(config.row_groups)), int(rng.integers(config.col_groups)),
            int(rng.integers(config.conversions_per_read)),
            rng.integers(0, config.dac_max + 1, config.ou_rows),
            rng.integers(0, 2, config.ou_rows), rng.integers(0, 2, config.adcs_per_xbar))


#: Geometries of the OU-word cell memory (``emulator_ou_words = 1``, which needs
#: ``ou_cols * cell_bits >= 8``): the ragged 2-bit crossbar (3 column groups in 4 address
#: slots, a partial last phase), one column group, and the 36 x 128 crossbar of the small
#: end-to-end config (16 column groups, 9-row OU, shared ADCs).
OU_WORD_CONFIGS = {
    "ou-words-ragged": dict(TEST_CONFIGS["ragged-2bit"], emulator_ou_words=1),
    "ou-words-one-group": dict(rows=16, cols=8, ou_rows=4, ou_cols=8, adcs_per_xbar=8,
                               adc_bits=3, emulator_ou_words=1),
    "ou-words-e2e": dict(rows=36, cols=128, ou_rows=9, ou_cols=8, adcs_per_xbar=4,
                         adc_bits=4, adc_latency=2, emulator_ou_words=1),
}
CONFIGS = {**TEST_CONFIGS, **OU_WORD_CONFIGS}


@pytest.mark.parametrize("name, latency", [(name, None) for name in sorted(CONFIGS)]
                         + [("full-adc", 2), ("full-adc", 3), ("ragged-2bit", 3),
                            ("ou-words-one-group", 3)])
def test_reads_back_to_back_with_latency(name, latency):
    """Every latency: 0 (combinational), 1, 2 (the split column-select stage), 3 (one more)."""
    config = small_config(**CONFIGS[name])
    if latency is not None:
        config = config.replace(adc_latency=latency)
    rng = np.random.default_rng(7)
    levels = rng.integers(0, config.level_max + 1, (config.rows, config.cols))
    dut = CrossbarEmulator(config, levels)
    requests = [random_request(rng, config) for _ in range(40)]
    expected = [port_model(config, levels, *request) for request in requests]
    got = []

    async def testbench(ctx):
        port = dut.port
        for cycle in range(len(requests) + config.adc_latency + 1):
            if cycle < len(requests):
                drive_read(ctx, port, config, requests[cycle])
            else:
                ctx.set(port.read.strobe, 0)
            if ctx.get(port.result.valid):
                got.append([ctx.get(port.result.codes[a]) for a in range(config.adcs_per_xbar)])
                # codes arrive exactly adc_latency cycles after their strobe
                assert cycle - config.adc_latency == len(got) - 1
            await ctx.tick()

    simulate(dut, testbench)
    assert got == expected


@pytest.mark.parametrize("name", ["full-adc", "ragged-2bit", *OU_WORD_CONFIGS])
def test_write_port_programs_rows(name):
    """Rows written in a shuffled order, as fast as the loader may deliver them (every
    cycle; with OU words every ``col_groups`` cycles, a cell row's bytes or fewer), over
    cells that start at other levels: every read then sees only the written levels."""
    config = small_config(**CONFIGS[name])
    rng = np.random.default_rng(3)
    levels = rng.integers(0, config.level_max + 1, (config.rows, config.cols))
    stale = config.level_max - levels   # every cell changes
    dut = CrossbarEmulator(config, stale)
    requests = [random_request(rng, config) for _ in range(30)]
    pace = config.col_groups if config.emulator_ou_words else 1
    assert pace <= -(-config.cols * config.cell_bits // 8) or pace == 1
    got = []

    async def testbench(ctx):
        port = dut.port
        for row in rng.permutation(config.rows):
            ctx.set(port.write.en, 1)
            ctx.set(port.write.row, int(row))
            ctx.set(port.write.levels, [int(v) for v in levels[row]])
            await ctx.tick()
            ctx.set(port.write.en, 0)
            for _ in range(pace - 1):
                await ctx.tick()
        ctx.set(port.write.en, 0)
        await ctx.tick()   # the last row's last column group
        for request in requests:
            drive_read(ctx, port, config, request)
            await ctx.tick()
            ctx.set(port.read.strobe, 0)
            for _ in range(config.adc_latency - 1):
                await ctx.tick()
            assert ctx.get(port.result.valid)
            got.append([ctx.get(port.result.codes[a]) for a in range(config.adcs_per_xbar)])

    simulate(dut, testbench)
    assert got == [port_model(config, levels, *request) for request in requests]


def test_saturates_at_adc_max():
    config = small_config(adc_bits=2)  # 4 rows of level 1 can reach 4 > adc_max 3
    levels = np.ones((config.rows, config.cols), dtype=np.int64)
    dut = CrossbarEmulator(config, levels)

    async def testbench(ctx):
        drive_read(ctx, dut.port, config, (0, 0, 0, [1] * 4, [1] * 4, [1] * 4))
        await ctx.tick()
        assert [ctx.get(dut.port.result.codes[a]) for a in range(4)] == [3] * 4

    simulate(dut, testbench)


def test_ou_words_config_rules():
    """The OU-word memory needs a synchronous read and rows no faster than its writes."""
    with pytest.raises(ValueError, match="adc_latency >= 1"):
        small_config(**dict(OU_WORD_CONFIGS["ou-words-one-group"], adc_latency=0))
    # 4 column groups per row, but a 16 x 1-bit row is 2 bytes: the loader is faster
    with pytest.raises(ValueError, match=r"col_groups \(4\) cycles.*every 2 cycles"):
        small_config(emulator_ou_words=1)
    base = small_config(**OU_WORD_CONFIGS["ou-words-e2e"])
    assert base.digest != base.replace(emulator_ou_words=0).digest


def test_rejects_bad_levels():
    config = small_config()
    with pytest.raises(ValueError, match="shape"):
        CrossbarEmulator(config, np.zeros((3, 3)))
    with pytest.raises(ValueError, match="levels must be in"):
        CrossbarEmulator(config, np.full((16, 16), 2))
