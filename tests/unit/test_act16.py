"""Activations up to 16 bits (ISAAC's 16-bit inputs): config, spec, quantizer, executor.

The crossbar-level executor must equal the integer reference ``x @ W.T`` bit-exactly at
every activation width up to 16 (its per-slice path sums ADC codes shifted by up to
``15 * dac_bits``, beyond float32's exact range when the ADC is wide), and the quantized
network must run the same on golden and executor.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_mapping import SCHEMES, random_matrix

from bitline.hw.spec.config import AcceleratorConfig, preset
from bitline.hw.spec.validate import validate_program
from bitline.sim.executor import IdealDevice, execute_layer, run_executor
from bitline.sim.golden import run_golden
from bitline.sw.bundle import read_bundle, write_bundle
from bitline.sw.integer import arith
from bitline.sw.mapping import STRATEGIES, map_matrix, map_model
from bitline.sw.quant import load_spec


@st.composite
def wide_configs(draw):
    """Small geometries with 16-bit activations and ADCs up to 12 bits."""
    rows, cols = draw(st.integers(4, 32)), draw(st.integers(4, 32))
    cell_bits = draw(st.integers(1, 4))
    dac_bits = draw(st.sampled_from([1, 2, 4]))       # divides 16
    ou_cols = draw(st.integers(1, cols))
    need = ((1 << cell_bits) - 1) * ((1 << dac_bits) - 1)
    return AcceleratorConfig(
        rows=rows, cols=cols, cell_bits=cell_bits, dac_bits=dac_bits,
        ou_rows=draw(st.integers(1, rows)), ou_cols=ou_cols,
        adc_bits=draw(st.integers(need.bit_length(), 12)),
        adcs_per_xbar=draw(st.integers(1, ou_cols)), max_act_bits=16, acc_bits=48,
    )


def reference(matrix, x, act_bits, act_block_bits=None, block_rows=None):
    if act_block_bits is not None:
        x = arith.apply_act_block_bits(x, act_block_bits, act_bits, block_rows)
    return x @ matrix.T


@settings(max_examples=40, deadline=None)
@given(config=wide_configs(), strategy=st.sampled_from(STRATEGIES),
       scheme=st.sampled_from(SCHEMES), n_out=st.integers(1, 12), n_in=st.integers(1, 40),
       act_bits=st.integers(9, 16), seed=st.integers(0, 2**32 - 1),
       bwq_acts=st.booleans(), shortcut=st.booleans())
def test_executor_exact_at_wide_activations(config, strategy, scheme, n_out, n_in, act_bits,
                                            seed, bwq_acts, shortcut):
    rng = np.random.default_rng(seed)
    matrix = random_matrix(rng, n_out, n_in, *scheme)
    x = rng.integers(0, 1 << act_bits, size=(7, n_in))
    x[0] = (1 << act_bits) - 1                      # every slice at dac_max
    block_rows = int(rng.integers(1, 10))
    act_block_bits = None
    if bwq_acts:
        choices = [0] + [w for w in range(1, act_bits + 1) if (act_bits - w) % config.dac_bits == 0]
        act_block_bits = rng.choice(choices, size=-(-n_in // block_rows))
    layer = map_matrix(matrix, config, strategy, act_bits=act_bits,
                       act_block_bits=act_block_bits, block_rows=block_rows)
    acc = execute_layer(layer, config, x, device=IdealDevice(config, shortcut=shortcut))
    assert np.array_equal(acc, reference(matrix, x, act_bits, act_block_bits, block_rows))


def test_per_slice_sums_beyond_float32():
    # 128 rows of 4-bit cells read at once into a 12-bit ADC: codes up to 1920 shifted by
    # up to 15 bits. A float32 sum of the slices loses low bits there; the executor must not.
    config = AcceleratorConfig(rows=128, cols=8, cell_bits=4, dac_bits=1, ou_rows=128,
                               ou_cols=8, adc_bits=12, adcs_per_xbar=8, max_act_bits=16,
                               acc_bits=48, max_weight_bits=8)
    rng = np.random.default_rng(4)
    matrix = rng.integers(64, 128, size=(2, 128)) * rng.choice([-1, 1], size=(2, 128))
    x = rng.integers(1 << 15, 1 << 16, size=(32, 128)) | 1      # odd: the low bit matters
    layer = map_matrix(matrix, config, "isaac", act_bits=16)
    acc = execute_layer(layer, config, x, device=IdealDevice(config, shortcut=False))
    assert np.array_equal(acc, x @ matrix.T)
    assert np.abs(acc).max() > 1 << 24


def test_config_bound_names_field_and_value():
    assert AcceleratorConfig(max_act_bits=16).max_slices == 16
    with pytest.raises(ValueError, match=r"max_act_bits must be between 1 and 16, not 17"):
        AcceleratorConfig(max_act_bits=17)
    with pytest.raises(ValueError, match=r"max_act_bits must be between 1 and 16, not 17"):
        AcceleratorConfig.from_dict({"max_act_bits": 17})
    assert preset("bwq").max_act_bits == 8          # the BWQ paper's 8-bit activations
    assert preset("isaac").max_act_bits == 16       # ISAAC streams 16-bit inputs


def test_spec_activation_width_bound():
    assert load_spec({"weights": {"bits": 8}, "activations": {"bits": 16}}).activations.bits == 16
    with pytest.raises(ValueError, match=r"activations.bits: must be between 1 and 16, not 17"):
        load_spec({"weights": {"bits": 8}, "activations": {"bits": 17}})


@pytest.fixture(scope="module")
def digits():
    from bitline.sw.datasets import load_dataset
    from bitline.sw.models import resolve_model

    calib, _ = load_dataset("digits", "calib")
    return resolve_model("digits-cnn"), calib, load_dataset("digits", "test")[0][:24]


def test_quantizer_refuses_wider_activations_than_the_config(digits):
    from bitline.sw.quant import quantize_model

    model, calib, _ = digits
    spec = {"name": "a16", "weights": {"bits": 8}, "activations": {"bits": 16}}
    with pytest.raises(ValueError, match=r"activations.bits: 16 exceeds the config's "
                                         r"max_act_bits \(8\)"):
        quantize_model(model, spec, calib, preset("bwq"))


def test_digits_cnn_16_bit_activations_golden_equals_executor(digits, tmp_path):
    from bitline.sw.quant import quantize_model

    model, calib, x = digits
    config = preset("bwq").replace(max_act_bits=16, acc_bits=48)
    spec = {"name": "int8-a16", "weights": {"bits": 8}, "activations": {"bits": 16}}
    qmodel = quantize_model(model, spec, calib, config)
    assert {q.inputs[0].bits for q in qmodel.compute_layers} == {16}
    golden = run_golden(qmodel, x)
    assert golden.output_int.max() > 255            # 16-bit codes reach the output
    for strategy in ("isaac", "bwq"):
        program = map_model(qmodel, config, strategy, xbars="auto")
        validate_program(program, program.config)
        assert {layer.act_bits for layer in program.layers} == {16}
        result = run_executor(program, qmodel, x)
        assert np.array_equal(result.output_int, golden.output_int), strategy
        # the bundle carries 16-bit act_bits, zero points and clamps and reads back whole
        bundle = read_bundle(write_bundle(tmp_path / strategy, program, qmodel))
        assert [layer.act_bits for layer in bundle.program.layers] == [16] * len(program.layers)
        assert max(q.clamp_hi for q in bundle.qmodel.compute_layers) == (1 << 16) - 1
        again = run_executor(bundle.program, bundle.qmodel, x)
        assert np.array_equal(again.output_int, golden.output_int), strategy
        few = run_executor(program, qmodel, x[:2],
                           device=IdealDevice(program.config, shortcut=False))
        assert np.array_equal(few.output_int, golden.output_int[:2]), strategy
    # 16-bit activations are closer to the float model than 8-bit ones
    from bitline.sw.frontend.float_model import run_float

    reference_out = run_float(model, x)
    eight = run_golden(quantize_model(model, "int8", calib, config), x).output
    assert np.abs(golden.output - reference_out).mean() < np.abs(eight - reference_out).mean()


def test_isaac_paper_baseline_is_bit_exact(digits):
    # ISAAC as published (sw/flow/baselines.py): isaac preset, 16-bit weights and inputs,
    # offset encoding; its program runs equal to golden on both executor paths.
    from bitline.sw.flow import compile_model
    from bitline.sw.flow.baselines import baseline

    model, calib, x = digits
    paper = baseline("isaac-paper")
    result = compile_model(model, paper.strategy, paper.spec, paper.config(preset("bwq")),
                           calib, encoding=paper.encoding)
    assert {layer.act_bits for layer in result.program.layers} == {16}
    golden = run_golden(result.qmodel, x[:8])
    assert np.array_equal(run_executor(result.program, result.qmodel, x[:8]).output_int,
                          golden.output_int)
    few = run_executor(result.program, result.qmodel, x[:2],
                       device=IdealDevice(result.program.config, shortcut=False))
    assert np.array_equal(few.output_int, golden.output_int[:2])
