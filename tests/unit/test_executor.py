"""Crossbar-level executor: bit-exact with the golden model for every mapping strategy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_mapping import SCHEMES, SMALL_CONFIGS, configs, random_matrix

from bitline.hw.spec.config import AcceleratorConfig, preset
from bitline.sim.executor import (
    Counters,
    IdealDevice,
    LayerExecutor,
    execute_layer,
    run_executor,
)
from bitline.sim.golden import run_golden
from bitline.sw.frontend.ir import Layer
from bitline.sw.integer import arith
from bitline.sw.integer.qmodel import ActParams, QuantLayer
from bitline.sw.mapping import STRATEGIES, map_layer, map_matrix, map_model
from bitline.sw.quant.tensor import QuantizedTensor

EXACT = IdealDevice  # readability: IdealDevice(config, shortcut=...)


def reference(matrix, x, act_bits, act_block_bits=None, block_rows=None):
    """The golden accumulator: BWQ slice dropping, then the exact integer product."""
    if act_block_bits is not None:
        x = arith.apply_act_block_bits(x, act_block_bits, act_bits, block_rows)
    return x @ matrix.T


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("config", SMALL_CONFIGS, ids=lambda c: f"{c.rows}x{c.cols}/{c.ou_rows}x{c.ou_cols}c{c.cell_bits}d{c.dac_bits}")
@pytest.mark.parametrize("shortcut", [False, True])
def test_layer_exact(strategy, config, shortcut):
    rng = np.random.default_rng(5)
    for (scheme, bits), act_bits in zip(SCHEMES, [8, 4, 6, 8, 7, 2, 8]):
        matrix = random_matrix(rng, 11, 40, scheme, bits)
        x = rng.integers(0, 1 << act_bits, size=(17, 40))
        layer = map_matrix(matrix, config, strategy, act_bits=act_bits)
        acc = execute_layer(layer, config, x, device=EXACT(config, shortcut=shortcut))
        assert acc.dtype == np.int64
        assert np.array_equal(acc, reference(matrix, x, act_bits))


@settings(max_examples=40, deadline=None)
@given(config=configs(), strategy=st.sampled_from(STRATEGIES),
       scheme=st.sampled_from(SCHEMES), n_out=st.integers(1, 20), n_in=st.integers(1, 50),
       act_bits=st.integers(1, 8), seed=st.integers(0, 2**32 - 1),
       zeros=st.floats(0.0, 0.9), bwq_acts=st.booleans(), shortcut=st.booleans())
def test_layer_exact_random(config, strategy, scheme, n_out, n_in, act_bits, seed, zeros,
                            bwq_acts, shortcut):
    rng = np.random.default_rng(seed)
    matrix = random_matrix(rng, n_out, n_in, *scheme, zeros=zeros)
    x = rng.integers(0, 1 << act_bits, size=(9, n_in))
    block_rows = int(rng.integers(1, 12))
    act_block_bits = None
    if bwq_acts:
        # widths whose dropped bits are whole DAC slices (docs/contract.md section 2)
        step = config.dac_bits
        choices = [0] + [w for w in range(1, act_bits + 1) if (act_bits - w) % step == 0]
        act_block_bits = rng.choice(choices, size=-(-n_in // block_rows))
    layer = map_matrix(matrix, config, strategy, act_bits=act_bits,
                       act_block_bits=act_block_bits, block_rows=block_rows)
    acc = execute_layer(layer, config, x, device=EXACT(config, shortcut=shortcut))
    assert np.array_equal(acc, reference(matrix, x, act_bits, act_block_bits, block_rows))


def _depthwise_layer(rng, channels=6, kernel=3, act_bits=8):
    values = rng.integers(-7, 8, size=(channels, 1, kernel, kernel))
    layer = Layer(
        name="dw", op="conv", inputs=["x"], output="y", input_shape=(channels, 5, 5),
        output_shape=(channels, 5, 5),
        attrs={"stride": (1, 1), "pads": (1, 1, 1, 1), "dilation": (1, 1),
               "groups": channels},
        weight=values.astype(np.float32), activation="relu",
    )
    return QuantLayer(
        layer=layer, inputs=[ActParams(act_bits, 0.1)], output=ActParams(8, 0.1),
        weight=QuantizedTensor(values=values, scale=np.ones((channels, 1, 1, 1))),
        bias=np.zeros(channels, dtype=np.int64), mult=np.ones(channels, dtype=np.int64),
        shift=np.zeros(channels, dtype=np.int64), clamp_lo=0, clamp_hi=255,
    )


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_depthwise(strategy):
    rng = np.random.default_rng(2)
    qlayer = _depthwise_layer(rng)
    config = AcceleratorConfig(rows=32, cols=32, ou_rows=9, ou_cols=4, adc_bits=4,
                               adcs_per_xbar=4)
    program = map_layer(qlayer, config, strategy)
    codes = rng.integers(0, 256, size=(3, 6, 5, 5))
    cols = arith.layer_columns(qlayer, codes)
    for shortcut in (False, True):
        acc = execute_layer(program, config, cols, device=EXACT(config, shortcut=shortcut))
        assert np.array_equal(acc, arith.compute_acc(qlayer, cols))
    if strategy in ("ivq-temporal", "bwq"):
        # the block-diagonal zeros take no cells and no reads
        dense = map_layer(qlayer, config, "ivq-naive")
        assert program.stats["ou_reads_per_vector"] < dense.stats["ou_reads_per_vector"]


def test_counters_match_contract():
    config = preset("bwq")
    rng = np.random.default_rng(4)
    matrix = random_matrix(rng, 30, 100, "pot", 4)
    act_block_bits = rng.choice([2, 5, 8], size=12)
    layer = map_matrix(matrix, config, "bwq", act_bits=8, act_block_bits=act_block_bits,
                       xbar_offset=10, name="fc")
    counters = Counters()
    x = rng.integers(0, 256, size=(7, 100))
    execute_layer(layer, config, x, counters=counters)
    execute_layer(layer, config, x[:3], counters=counters)
    slices = layer.entries["slice_hi"] - layer.entries["slice_lo"]
    assert counters.vectors["fc"] == 10
    assert counters.ou_reads["fc"] == 10 * layer.stats["ou_reads_per_vector"] == 10 * slices.sum()
    assert counters.adc_conversions["fc"] == 10 * layer.stats["adc_conversions_per_vector"]
    assert counters.busy_cycles["fc"] == counters.ou_reads["fc"] * config.conversions_per_read
    assert sum(counters.unit_reads.values()) == counters.ou_reads["fc"]
    assert set(counters.unit_reads) <= set(layer.xbars.tolist())
    assert counters.job_compute_cycles("fc") == 10 * layer.stats["busiest_unit_reads"] * \
        config.conversions_per_read
    assert counters.total_reads == counters.ou_reads["fc"]


class RecordingDevice:
    """An ideal device that checks the interface shapes and counts calls."""

    def __init__(self, config):
        self.config = config
        self.calls = 0

    def read(self, xbar, rows, cols, slice_inputs, levels):
        n_rows, n_cols = levels.shape
        assert xbar.shape == (n_cols,) and cols.shape == (n_cols,)
        assert rows.shape == (n_rows, n_cols)
        assert slice_inputs.shape[1] == n_rows
        assert slice_inputs.max(initial=0) <= self.config.dac_max
        assert np.all(cols < self.config.cols) and np.all(rows < self.config.rows)
        self.calls += 1
        return np.minimum(slice_inputs @ levels, self.config.adc_max)


class SaturatingDevice(RecordingDevice):
    """A broken ADC that never outputs more than 1: the executor must show it."""

    def read(self, xbar, rows, cols, slice_inputs, levels):
        return np.minimum(super().read(xbar, rows, cols, slice_inputs, levels), 1)


def test_device_interface_and_non_ideal_device():
    config = preset("bwq")
    rng = np.random.default_rng(9)
    matrix = random_matrix(rng, 16, 60, "int", 8, zeros=0.0)
    layer = map_matrix(matrix, config, "ivq-temporal", act_bits=8)
    x = rng.integers(0, 256, size=(5, 60))
    device = RecordingDevice(config)
    assert np.array_equal(execute_layer(layer, config, x, device=device), x @ matrix.T)
    assert device.calls == len(LayerExecutor(layer, config).batches)
    broken = execute_layer(layer, config, x, device=SaturatingDevice(config))
    assert not np.array_equal(broken, x @ matrix.T)


def test_executor_rejects_foreign_entries():
    config = preset("bwq")
    layer = map_matrix(np.ones((4, 9), dtype=np.int64), config, "ivq-naive", act_bits=8)
    layer.entries["xbar"] = 5
    with pytest.raises(ValueError, match="does not own"):
        LayerExecutor(layer, config)
    good = map_matrix(np.ones((4, 9), dtype=np.int64), config, "ivq-naive", act_bits=8)
    with pytest.raises(ValueError, match=r"must be \(M, 9\)"):
        execute_layer(good, config, np.zeros((2, 8), dtype=np.int64))


# --------------------------------------------------------------------------- whole networks
@pytest.fixture(scope="module")
def digits():
    from bitline.sw.datasets import load_dataset
    from bitline.sw.models import resolve_model

    calib, _ = load_dataset("digits", "calib")
    test_x, test_y = load_dataset("digits", "test")
    return resolve_model, calib, test_x, test_y


def _quantized(digits, model_name, spec):
    from bitline.sw.quant.pipeline import quantize_model

    resolve_model, calib, _, _ = digits
    return quantize_model(resolve_model(model_name), spec, calib, preset("bwq"))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_digits_cnn_int8(digits, strategy):
    qmodel = _quantized(digits, "digits-cnn", "int8")
    x = digits[2][:96]
    golden = run_golden(qmodel, x, return_all=True)
    program = map_model(qmodel, preset("bwq"), strategy, xbars="auto")
    counters = Counters()
    result = run_executor(program, qmodel, x, return_all=True, counters=counters)
    for name, expected in golden.layers.items():
        assert np.array_equal(result.layers[name], expected), name
    assert np.array_equal(result.output_int, golden.output_int)
    for layer in program.layers:
        assert counters.ou_reads[layer.name] == \
            counters.vectors[layer.name] * layer.stats["ou_reads_per_vector"]
    # the per-slice read path on a few images
    few = run_executor(program, qmodel, x[:4], device=IdealDevice(program.config,
                                                                   shortcut=False))
    assert np.array_equal(few.output_int, golden.output_int[:4])


#: BWQ weights (3 bits on average) and activations (6 bits on average per row block).
BWQ_ACTS = {"name": "bwq3a6", "mode": "bwq", "bwq": {"budget": 3, "act_budget": 6}}


@pytest.mark.parametrize("model_name,spec,config", [
    ("digits-cnn", "pot4", "bwq"), ("digits-cnn", "bwq3", "bwq"),
    ("digits-cnn", BWQ_ACTS, "bwq"), ("digits-cnn", BWQ_ACTS, "isaac"),
    ("digits-resnet", "int8", "bwq"), ("digits-resnet", "apot4", "isaac"),
], ids=lambda v: v["name"] if isinstance(v, dict) else str(v))
def test_digits_networks_other_specs(digits, model_name, spec, config):
    qmodel = _quantized(digits, model_name, spec)
    x = digits[2][:48]
    golden = run_golden(qmodel, x)
    for strategy in STRATEGIES:
        program = map_model(qmodel, preset(config), strategy, xbars="auto")
        result = run_executor(program, qmodel, x)
        assert np.array_equal(result.output_int, golden.output_int), strategy
        few = run_executor(program, qmodel, x[:1], device=IdealDevice(program.config,
                                                                       shortcut=False))
        assert np.array_equal(few.output_int, golden.output_int[:1]), strategy
    if isinstance(spec, dict):
        assert any(q.act_block_bits is not None and q.act_block_bits.min() < 8
                   for q in qmodel.compute_layers)


@pytest.mark.slow
def test_digits_cnn_full_test_set(digits):
    qmodel = _quantized(digits, "digits-cnn", "int8")
    test_x, test_y = digits[2], digits[3]
    golden = run_golden(qmodel, test_x)
    program = map_model(qmodel, preset("bwq"), "ivq-temporal", xbars="auto")
    result = run_executor(program, qmodel, test_x)
    assert np.array_equal(result.output_int, golden.output_int)
    assert np.mean(result.output.argmax(axis=1) == test_y) > 0.95


def test_run_executor_checks_program(digits):
    qmodel = _quantized(digits, "digits-cnn", "int8")
    program = map_model(qmodel, preset("bwq"), "ivq-naive", xbars="auto")
    program.layers.pop()
    with pytest.raises(ValueError, match="program has no layer"):
        run_executor(program, qmodel, digits[2][:2])
