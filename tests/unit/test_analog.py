"""The behavioral analog crossbar model (bitline.sim.analog) behind the executor."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bitline.hw.spec.config import AcceleratorConfig, preset
from bitline.hw.spec.program import entry_columns
from bitline.sim.analog import NOISE_TAIL, AnalogDevice, hashed_normal
from bitline.sim.analog_params import AnalogParams
from bitline.sim.executor import IdealDevice, execute_layer, run_executor
from bitline.sw.mapping import STRATEGIES, map_matrix

BWQ = preset("bwq")
#: 2-bit cells and 2-bit DAC slices: multi-level conductances, exact_rows_per_ou = 7.
MULTI = AcceleratorConfig(rows=32, cols=32, cell_bits=2, dac_bits=2, ou_rows=9, ou_cols=8,
                          adc_bits=6, adcs_per_xbar=4, n_xbars=64)
TYPICAL = AnalogParams.load("typical")


def random_layer(config, strategy, *, n_out=12, n_in=40, act_bits=8, seed=3):
    """Map a random sparse INT6 matrix; return ``(layer, matrix, x)`` with 20 input vectors."""
    rng = np.random.default_rng(seed)
    matrix = rng.integers(-31, 32, size=(n_out, n_in)) * (rng.random((n_out, n_in)) < 0.7)
    x = rng.integers(0, 1 << act_bits, size=(20, n_in))
    return map_matrix(matrix, config, strategy, act_bits=act_bits), matrix, x


def single_cell_reads(device, level, n_cells, *, drive=1, xbar=0):
    """Read cells ``(r, c)`` of one crossbar one at a time: ``(n_cells,)`` analog sums."""
    config = device.config
    flat = np.arange(n_cells)
    rows = (flat % config.rows)[None, :]
    cols = flat // config.rows
    return device.analog_sums(np.full(n_cells, xbar), rows, cols, np.array([[drive]]),
                              np.full((1, n_cells), level))[0]


# ------------------------------------------------------------------------ parameters
def test_examples_load():
    ideal = AnalogParams.load("examples/analog/ideal.toml")
    assert ideal.is_ideal and ideal == AnalogParams.load("ideal")
    assert not TYPICAL.is_ideal
    assert TYPICAL.on_off_ratio == pytest.approx(20.0)
    assert TYPICAL.g_off_us == pytest.approx(5.0)


@pytest.mark.parametrize("text, message", [
    ("[analog]\nvariation = -0.1\n", "variation must be in [0.0, 10.0], not -0.1"),
    ("[analog]\nstuck_at_0 = 0.7\nstuck_at_1 = 0.6\n", "stuck_at_0 + stuck_at_1"),
    ("[analog]\ng_on_us = 10.0\ng_off_us = 20.0\n", "g_off_us must be in [0.0, 10.0)"),
    ("[analog]\nread_nosie = 0.1\n", "unknown field(s) read_nosie"),
    ("[analog]\non_off_ratio = 10\ng_off_us = 1.0\n", "not both"),
    ("[analog]\non_off_ratio = 0.5\n", "on_off_ratio must be in (1.0, inf]"),
    ("[analog]\nir_drop = 1.0\n", "ir_drop must be in [0.0, 1.0), not 1.0"),
    ("[analog]\nadc_gain_error = -1\n", "adc_gain_error must be in (-1.0, inf]"),
    ("[analog]\nread_noise = \"high\"\n", "read_noise must be a finite number, not 'high'"),
    ("[analog]\nvariation = [0.1, -1]\n", "variation[1] must be in"),
    ("[analog\n", "not valid TOML"),
])
def test_param_file_errors_name_file_field_and_value(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError) as error:
        AnalogParams.load(path)
    assert str(path) in str(error.value)
    assert message in str(error.value)


def test_missing_file_and_device_errors(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        AnalogParams.load(tmp_path / "nope.toml")
    with pytest.raises(ValueError, match="variation lists 3 sigmas, the crossbar has 2"):
        AnalogDevice(BWQ, AnalogParams(variation=[0.1, 0.1, 0.1]))
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        AnalogDevice(BWQ, TYPICAL, seed=-1)


def test_on_off_ratio_alias_and_per_level_variation():
    params = AnalogParams.from_dict({"g_on_us": 50.0, "on_off_ratio": 10.0,
                                     "variation": [0.0, 0.1, 0.2, 0.3]})
    assert params.g_off_us == pytest.approx(5.0)
    assert list(params.level_sigmas(4)) == [0.0, 0.1, 0.2, 0.3]
    assert AnalogDevice(MULTI, params).sigmas.tolist() == [0.0, 0.1, 0.2, 0.3]


# ------------------------------------------------------------------------ ideal = exact
@pytest.mark.parametrize("config", [BWQ, MULTI], ids=["bwq", "2b-cells-2b-dac"])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_ideal_params_equal_exact_layer(config, strategy):
    layer, matrix, x = random_layer(config, strategy)
    device = AnalogDevice(config, AnalogParams.ideal(), seed=11)
    acc = execute_layer(layer, config, x, device=device)
    assert np.array_equal(acc, x @ matrix.T)


def test_ideal_adc_clips_like_the_ideal_device():
    rng = np.random.default_rng(0)
    rows = np.tile(np.arange(9)[:, None], (1, 8))
    levels = rng.integers(0, 2, size=(9, 8))
    drive = rng.integers(0, 2, size=(50, 9))
    analog = AnalogDevice(BWQ.replace(adc_bits=2), AnalogParams.ideal())
    ideal = IdealDevice(BWQ.replace(adc_bits=2))
    got = analog.read(np.zeros(8, int), rows, np.arange(8), drive, levels)
    assert np.array_equal(got, ideal.read(np.zeros(8, int), rows, np.arange(8), drive, levels))
    assert got.max() == 3


@pytest.fixture(scope="module")
def digits_cnn():
    pytest.importorskip("sklearn")
    from bitline.sw.flow import DEFAULT_SPECS, calibration_inputs, compile_model
    from bitline.sw.datasets import load_dataset
    from bitline.sw.models import resolve_model

    model = resolve_model("digits-cnn")
    calib_x, _ = calibration_inputs(model, "digits")
    x, _ = load_dataset("digits", "test")
    compiled = {strategy: compile_model(model, strategy, DEFAULT_SPECS[strategy], BWQ,
                                        calib_x[:32])
                for strategy in ("isaac", "ivq-temporal", "bwq")}
    return compiled, x[::90]  # 5 images of 5 classes


@pytest.mark.parametrize("strategy", ["isaac", "ivq-temporal", "bwq"])
def test_ideal_params_run_the_model_bit_exactly(digits_cnn, strategy):
    from bitline.sim.golden import run_golden

    compiled, x = digits_cnn
    result = compiled[strategy]
    device = AnalogDevice(result.program.config, AnalogParams.ideal(), seed=5)
    got = run_executor(result.program, result.qmodel, x, device=device, return_all=True)
    want = run_golden(result.qmodel, x, return_all=True)
    for name, value in want.layers.items():
        assert np.array_equal(got.layers[name], value), name
    assert np.array_equal(got.output_int, want.output_int)


def test_typical_chip_seeds_on_the_model(digits_cnn):
    compiled, x = digits_cnn
    result = compiled["bwq"]

    def run(seed):
        device = AnalogDevice(result.program.config, TYPICAL.replace(variation=0.15),
                              seed=seed)
        return run_executor(result.program, result.qmodel, x, device=device).output_int

    first = run(1)
    assert np.array_equal(first, run(1))
    assert not np.array_equal(first, run(2))


# ------------------------------------------------------------------------ seeds
def test_same_seed_same_codes_different_seed_different():
    layer, _, x = random_layer(BWQ, "ivq-spatial")
    params = TYPICAL.replace(variation=0.2, read_noise=0.05, stuck_at_1=0.01)
    runs = [execute_layer(layer, BWQ, x, device=AnalogDevice(BWQ, params, seed=seed))
            for seed in (7, 7, 8)]
    assert np.array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


def test_chip_draws_are_common_random_numbers_across_severities():
    mild = AnalogDevice(BWQ, AnalogParams(stuck_at_0=0.01, stuck_at_1=0.01), seed=3)
    severe = AnalogDevice(BWQ, AnalogParams(stuck_at_0=0.05, stuck_at_1=0.05), seed=3)
    mild_faults, severe_faults = mild.faults(4), severe.faults(4)
    # Faults nest: the mild chip's stuck-at-0 cells are stuck at 0 on the severe chip too.
    assert np.all(severe_faults[mild_faults == 1] == 1)
    assert np.array_equal(mild.tables(4).z, severe.tables(4).z)
    assert not np.array_equal(mild.tables(4).z, mild.tables(5).z)


# ------------------------------------------------------------------------ non-idealities
def test_stuck_at_rates_and_effect():
    params = AnalogParams(stuck_at_0=0.02, stuck_at_1=0.03)
    device = AnalogDevice(BWQ, params, seed=0)
    faults = np.stack([device.faults(unit) for unit in range(8)])
    cells = faults.size
    for code, rate in ((1, 0.02), (2, 0.03)):
        sigma = math.sqrt(rate * (1 - rate) / cells)
        assert abs(np.mean(faults == code) - rate) < 5 * sigma
    # A stuck-at-1 cell programmed to 0 reads as 1, a stuck-at-0 cell programmed to 1 as 0.
    n_cells = BWQ.rows * BWQ.cols
    flat = faults[0].T.reshape(-1)            # single_cell_reads walks rows fastest
    zeros = single_cell_reads(device, 0, n_cells)
    ones = single_cell_reads(device, 1, n_cells)
    assert np.array_equal(zeros, np.where(flat == 2, 1.0, 0.0))
    assert np.array_equal(ones, np.where(flat == 1, 0.0, 1.0))


def test_variation_spread_matches_the_lognormal_sigma():
    sigma = 0.1
    params = AnalogParams(g_on_us=100.0, g_off_us=5.0, variation=sigma)
    device = AnalogDevice(BWQ, params, seed=1)
    n_cells = BWQ.rows * BWQ.cols
    values = single_cell_reads(device, 1, n_cells)
    # level 1 is g0 + 1 = g_on / (g_on - g_off) LSB currents; the reference is g0.
    g_on, g_0 = 100.0 / 95.0, 5.0 / 95.0
    want = math.sqrt((g_on ** 2 + g_0 ** 2) * (math.exp(sigma ** 2) - 1) * math.exp(sigma ** 2))
    assert np.std(values) == pytest.approx(want, rel=0.05)
    assert np.median(values) == pytest.approx(1.0, abs=0.01)
    # Codes flip where |value - 1| > 0.5: the expected rate from the same lognormal model.
    flips = np.mean(device.adc(values) != 1)
    assert 0.0 < flips < 0.01


def test_read_noise_is_fresh_per_read_and_bounded():
    params = AnalogParams(read_noise=0.2)
    device = AnalogDevice(BWQ, params, seed=2)
    rows = np.tile(np.arange(9)[:, None], (1, 8))
    levels = np.ones((9, 8), dtype=int)
    drive = np.ones((400, 9), dtype=int)
    index = np.arange(400)[:, None]
    sums = device.analog_sums(np.zeros(8, int), rows, np.arange(8), drive, levels,
                              read_index=index)
    noise = sums - 9.0
    g_1, g_0 = 1.0 + 1.0 / 99.0, 1.0 / 99.0
    sigma = 0.2 * math.sqrt(9 * (g_1 ** 2 + g_0 ** 2))
    assert np.std(noise) == pytest.approx(sigma, rel=0.1)
    assert np.abs(noise).max() <= NOISE_TAIL * sigma
    assert len(np.unique(noise)) > 0.99 * noise.size      # float32: rare ties
    # Same read index -> same noise; the fast path of read() equals adc(analog_sums()).
    again = device.analog_sums(np.zeros(8, int), rows, np.arange(8), drive, levels,
                               read_index=index)
    assert np.array_equal(sums, again)
    codes = device.read(np.zeros(8, int), rows, np.arange(8), drive, levels, read_index=index)
    assert np.array_equal(codes, device.adc(sums))


def test_hashed_normal_is_standard_normal():
    values = hashed_normal(9, np.arange(100)[None, :], np.arange(100)[None, :] % 7,
                           np.arange(2000)[:, None])
    assert abs(values.mean()) < 0.01
    assert values.std() == pytest.approx(1.0, abs=0.01)
    assert np.mean(np.abs(values) > 1.96) == pytest.approx(0.05, abs=0.005)


def test_ir_drop_scales_with_active_rows():
    device = AnalogDevice(BWQ, AnalogParams(ir_drop=0.02))
    rows = np.tile(np.arange(9)[:, None], (1, 1))
    levels = np.ones((9, 1), dtype=int)
    drive = np.tril(np.ones((9, 9), dtype=int))          # 1 .. 9 active rows
    sums = device.analog_sums(np.zeros(1, int), rows, np.zeros(1, int), drive, levels)[:, 0]
    active = np.arange(1, 10)
    assert np.allclose(sums, active * (1 - 0.02 * active), atol=1e-5)


def test_adc_offset_gain_and_clipping():
    device = AnalogDevice(BWQ, AnalogParams(adc_offset=0.6))
    assert device.adc(np.array([0.0, 3.0, 14.2, 20.0])).tolist() == [1, 4, 15, 15]
    device = AnalogDevice(BWQ, AnalogParams(adc_offset=-0.6))
    assert device.adc(np.array([0.0, 3.0, 13.9])).tolist() == [0, 2, 13]
    device = AnalogDevice(BWQ, AnalogParams(adc_gain_error=0.1))
    assert device.adc(np.array([4.0, 5.0, 9.0, 14.0])).tolist() == [4, 6, 10, 15]
    device = AnalogDevice(BWQ, AnalogParams())
    assert device.adc(np.array([-3.0, 2.5, 3.49, 100.0])).tolist() == [0, 3, 3, 15]


# ------------------------------------------------------------------------ cycle-level reads
def hardware_order_replay(layer, config, x, device):
    """Run a layer the way the RTL does: per vector, entries in order, slices in order.

    Every OU read goes through :meth:`AnalogDevice.read_ou` with the unit's running read
    count, as a cocotb bench at the crossbar port would; the shift-and-add follows
    docs/contract.md section 4.
    """
    device.program_all(type("P", (), {"layers": [layer]})())
    desc = entry_columns(layer.entries, config.ou_cols)
    local = {int(unit): index for index, unit in enumerate(layer.xbars)}
    reads: dict[int, int] = {}
    acc = np.zeros((len(x), layer.n_outputs), dtype=np.int64)
    for vector in range(len(x)):
        for e, entry in enumerate(layer.entries):
            unit = int(entry["xbar"])
            rows = int(entry["row_group"]) * config.ou_rows + np.arange(config.ou_rows)
            rows = rows[rows < config.rows]
            inputs = layer.row_maps[local[unit], rows]
            driven = inputs >= 0
            cols = int(entry["col_group"]) * config.ou_cols + np.arange(config.ou_cols)
            for t in range(int(entry["slice_lo"]), int(entry["slice_hi"])):
                slices = (x[vector, inputs[driven]] >> (t * config.dac_bits)) & config.dac_max
                codes = device.read_ou(unit, rows[driven], slices, cols, reads.get(unit, 0))
                reads[unit] = reads.get(unit, 0) + 1
                for j in np.flatnonzero(desc["valid"][e]):
                    term = int(codes[j]) << int(desc["shift"][e, j] + t * config.dac_bits)
                    acc[vector, desc["dest"][e, j]] += -term if desc["sign"][e, j] else term
    return acc


@pytest.mark.parametrize("strategy", ["isaac", "ivq-temporal", "bwq"])
def test_cycle_level_reads_match_the_executor(strategy):
    layer, _, x = random_layer(BWQ, strategy, n_out=5, n_in=24)
    params = TYPICAL.replace(variation=0.2, read_noise=0.08, stuck_at_1=0.02)
    fast = execute_layer(layer, BWQ, x[:4], device=AnalogDevice(BWQ, params, seed=4))
    slow = hardware_order_replay(layer, BWQ, x[:4], AnalogDevice(BWQ, params, seed=4))
    assert np.array_equal(fast, slow)


def test_port_read_matches_read_ou():
    device = AnalogDevice(BWQ, TYPICAL.replace(read_noise=0.1), seed=6)
    rng = np.random.default_rng(6)
    device.program(2, rng.integers(0, 2, size=(BWQ.rows, BWQ.cols)))
    wordline_en = np.array([1, 1, 0, 1, 1, 1, 0, 1, 1])
    dac = rng.integers(0, 2, size=9) * wordline_en
    codes = device.port_read(2, row_group=3, col_group=5, phase=0, dac=dac,
                             wordline_en=wordline_en, adc_en=np.ones(8, int), read_index=17)
    rows = 27 + np.flatnonzero(wordline_en)
    want = device.read_ou(2, rows, dac[wordline_en == 1], 40 + np.arange(8), 17)
    assert np.array_equal(codes, want)
    gated = device.port_read(2, 3, 5, 0, dac, wordline_en, np.array([1, 0] * 4), 17)
    assert np.array_equal(gated, want * np.array([1, 0] * 4))
    with pytest.raises(ValueError, match="never programmed"):
        device.read_ou(9, rows, dac[wordline_en == 1], np.arange(8), 0)
