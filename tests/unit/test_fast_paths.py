"""The compiler's fast paths against simple reference implementations kept here.

Issue 12 made the compile flow faster without changing a bit of its output. Each fast path
is checked against the straightforward code it replaced (written out in this file) on
random inputs: the per-image conv GEMM of the float model, rerunning a model from a layer
(``run_float_from``), the shared float forward pass and the cached gain probes of the
quantizer, the row-blocked ``clip="mse"`` scale search and the strided OU-entry column
views. scripts/bench_compile.py measures the speed; these tests only pin equality.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.networks import conv_layer, mixed_ops_model, residual_dw_model

from bitline.hw.spec.config import AcceleratorConfig
from bitline.hw.spec.program import COLUMN_FIELDS, empty_entries, entry_columns
from bitline.sw.frontend.float_model import _conv, run_float, run_float_from
from bitline.sw.frontend.im2col import im2col
from bitline.sw.quant import forward, pipeline, schemes


# ------------------------------------------------------------------ float model conv
def _conv_stacked(layer, x):
    """The float conv before issue 12: one stacked (N, P, K) @ (K, O) matmul."""
    attrs = layer.attrs
    out_c, out_h, out_w = layer.output_shape
    kh, kw = layer.weight.shape[2:]
    cols = im2col(x, (kh, kw), attrs["stride"], attrs["pads"], attrs["dilation"])
    y = np.matmul(cols, layer.weight_matrix.T).transpose(0, 2, 1)
    y = y.reshape(x.shape[0], out_c, out_h, out_w)
    return y + layer.bias[:, None, None]


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 5), c=st.integers(1, 9),
       size=st.integers(3, 12), out_c=st.integers(1, 20), kernel=st.sampled_from([1, 3, 5]),
       stride=st.integers(1, 2))
def test_conv_per_image_equals_stacked_matmul(seed, n, c, size, out_c, kernel, stride):
    rng = np.random.default_rng(seed)
    pad = kernel // 2
    layer = conv_layer("c", "x", "y", rng, (c, size, size), out_c, kernel=kernel,
                       stride=stride, pad=pad)
    x = rng.normal(size=(n, c, size, size)).astype(np.float32)
    fast = _conv(layer, x)
    np.testing.assert_array_equal(fast, _conv_stacked(layer, x))
    exact = np.einsum("npk,ok->nop", im2col(x.astype(np.float64), (kernel, kernel),
                                             (stride, stride), (pad,) * 4, (1, 1)),
                      layer.weight_matrix.astype(np.float64))
    exact = exact.reshape(fast.shape) + layer.bias[:, None, None]
    np.testing.assert_allclose(fast, exact, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("build", [mixed_ops_model, residual_dw_model])
def test_run_float_from_every_layer_equals_a_full_run(build):
    model = build(3)
    x = np.random.default_rng(4).normal(size=(6, *model.input_shape)).astype(np.float32)
    full = run_float(model, x, return_all=True)
    for start in range(len(model.layers) + 1):
        # Tensors of later layers are stale garbage here: they must be recomputed.
        given_tensors = {name: (value if name == model.input_name else value + 7.0)
                         for name, value in full.items()}
        for layer in model.layers[:start]:
            given_tensors[layer.output] = full[layer.output]
        out = run_float_from(model, given_tensors, start, return_all=True)
        for name, value in full.items():
            np.testing.assert_array_equal(out[name], value, err_msg=f"start {start}: {name}")


# ------------------------------------------------------------------ shared forward pass
def test_float_tensors_equal_run_float_and_are_shared_read_only():
    forward.clear()
    model = mixed_ops_model(1)
    x = np.random.default_rng(2).normal(size=(4, *model.input_shape)).astype(np.float32)
    tensors = forward.float_tensors(model, x)
    reference = run_float(model, x, return_all=True)
    assert set(tensors) == set(reference)
    for name, value in reference.items():
        np.testing.assert_array_equal(tensors[name], value)
        assert not tensors[name].flags.writeable
    assert forward.float_tensors(model, x.copy()) is tensors          # same content: a hit
    assert x.flags.writeable                                           # caller's batch untouched
    x[0, 0, 0, 0] += 1.0                                               # another batch: a miss
    changed = forward.float_tensors(model, x)
    assert changed is not tensors
    np.testing.assert_array_equal(changed[model.output_name], run_float(model, x))


def test_float_tensors_miss_after_a_weight_is_edited_in_place():
    forward.clear()
    model = residual_dw_model(2)
    x = np.random.default_rng(5).normal(size=(3, *model.input_shape)).astype(np.float32)
    before = forward.float_tensors(model, x)[model.output_name].copy()
    model.layers[0].weight[0, 0, 0, 0] += 5.0
    after = forward.float_tensors(model, x)[model.output_name]
    assert not np.array_equal(before, after)
    np.testing.assert_array_equal(after, run_float(model, x))
    forward.clear()


def _gains_reference(model, calib_x, stats, probe_bits=4):
    """layer_gains before issue 12: a full float run per probe, nothing cached."""
    macs = sum(layer.macs for layer in model.compute_layers) * len(model.compute_layers)
    samples = max(pipeline.MIN_GAIN_SAMPLES, int(pipeline.GAIN_MAC_BUDGET // max(macs, 1)))
    calib_x = np.asarray(calib_x, dtype=np.float32)[:samples]
    reference = np.asarray(run_float(model, calib_x), dtype=np.float64)
    energy = float(np.mean(np.square(reference))) or 1.0
    gains = {}
    for index, layer in enumerate(model.layers):
        if not layer.is_compute:
            continue
        probe = schemes.quantize(layer.weight, "int", probe_bits, axis=0)
        dense = pipeline._dense_matrix(layer)
        probed = dataclasses.replace(layer, weight=probe.dequantize().astype(np.float32))
        entry = stats[layer.name]
        error = dense - pipeline._dense_matrix(probed)
        predicted = float((np.square(error) @ entry.input_power).sum()) / entry.output_power
        layers = list(model.layers)
        layers[index] = probed
        output = np.asarray(run_float(dataclasses.replace(model, layers=layers), calib_x),
                            dtype=np.float64)
        measured = float(np.mean(np.square(output - reference))) / energy
        gains[layer.name] = measured / predicted if predicted > 0 else 1.0
    return gains


@pytest.mark.parametrize("build", [mixed_ops_model, residual_dw_model])
def test_layer_gains_equal_the_full_run_reference_and_cache_by_content(build):
    model = build(6)
    x = np.random.default_rng(7).normal(size=(8, *model.input_shape)).astype(np.float32)
    stats = pipeline.layer_statistics(model, x)
    expected = _gains_reference(model, x, stats)
    assert pipeline.layer_gains(model, x, stats) == expected
    assert pipeline.layer_gains(model, x, stats) == expected           # the cached result
    other = {name: dataclasses.replace(entry, output_power=2 * entry.output_power)
             for name, entry in stats.items()}
    assert pipeline.layer_gains(model, x, other) == _gains_reference(model, x, other)


# ------------------------------------------------------------------ clip="mse" search
def _mse_scale_reference(magnitude, peak, levels):
    """The clip="mse" scale search before issue 12: whole-matrix temporaries per ratio."""
    top = int(levels[-1])
    samples = max(schemes._MSE_GROUP_SAMPLES, schemes._MSE_TOTAL_SAMPLES // magnitude.shape[0])
    if magnitude.shape[1] > samples:
        columns = np.sort(np.random.default_rng(0).choice(magnitude.shape[1], samples,
                                                          replace=False))
        magnitude = magnitude[:, columns]
    magnitude = magnitude.astype(np.float32)
    uniform = np.array_equal(levels, np.arange(len(levels)))
    if not uniform:
        table = schemes._level_index_table(np.ascontiguousarray(levels, np.int64).tobytes())
        value_table = levels.astype(np.float32)[table]
    best_scale = schemes._max_scale(peak, top)
    best_error = np.full(peak.shape, np.inf)
    for ratio in schemes._MSE_RATIOS:
        scale = schemes._max_scale(peak * ratio, top)
        inverse = np.minimum(1.0 / scale, np.finfo(np.float32).max).astype(np.float32)
        ratios = magnitude * inverse
        if uniform:
            rounded = np.minimum(np.rint(ratios), np.float32(top))
        else:
            doubled = np.minimum(2.0 * ratios, np.float32(len(table) - 1)).astype(np.int32)
            rounded = value_table[doubled]
        rounded -= ratios
        error = np.einsum("ij,ij->i", rounded, rounded)[:, None] * np.square(scale)
        better = error < best_error
        best_error = np.where(better, error, best_error)
        best_scale = np.where(better, scale, best_scale)
    return best_scale


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), rows=st.integers(1, 70),
       cols=st.sampled_from([1, 5, 64, 999, 1500, 3000]),
       scheme_bits=st.sampled_from([("int", 2), ("int", 4), ("int", 8), ("pot", 4),
                                    ("apot", 4), ("apot", 6)]),
       zero_rows=st.booleans(), block=st.sampled_from([1, 7, 4096, 1 << 16]))
def test_mse_scale_equals_the_whole_matrix_search(seed, rows, cols, scheme_bits, zero_rows,
                                                  block):
    rng = np.random.default_rng(seed)
    magnitude = np.abs(rng.standard_normal((rows, cols))) * rng.uniform(1e-3, 3, (rows, 1))
    if zero_rows:
        magnitude[::3] = 0.0
    peak = magnitude.max(axis=1, keepdims=True)
    levels = schemes.level_set(*scheme_bits)
    saved = schemes._MSE_BLOCK
    schemes._MSE_BLOCK = block          # small blocks exercise many row blocks
    try:
        fast = schemes._mse_scale(magnitude, peak, levels)
    finally:
        schemes._MSE_BLOCK = saved
    np.testing.assert_array_equal(fast, _mse_scale_reference(magnitude, peak, levels))


# ------------------------------------------------------------------ OU-entry columns
def _columns_reference(entries, ou_cols):
    return {key: np.stack([np.asarray(entries[f"cols.{j}.{key}"], dtype=np.int64)
                           for j in range(ou_cols)], axis=1) for key in COLUMN_FIELDS}


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), count=st.integers(1, 50),
       ou_cols=st.sampled_from([2, 4, 8, 16]), step=st.integers(1, 3))
def test_entry_columns_views_equal_the_stacked_fields(seed, count, ou_cols, step):
    config = AcceleratorConfig(ou_cols=ou_cols, adcs_per_xbar=min(ou_cols, 8))
    entries = empty_entries(config, count)
    rng = np.random.default_rng(seed)
    for name in entries.dtype.names:
        entries[name] = rng.integers(-5, 1000, count)
    entries = entries[::step]                         # a strided selection reads the same
    fast = entry_columns(entries, ou_cols)
    expected = _columns_reference(entries, ou_cols)
    for key in COLUMN_FIELDS:
        np.testing.assert_array_equal(fast[key], expected[key])
        assert fast[key].dtype == np.int64 and fast[key].shape == (len(entries), ou_cols)


def test_entry_columns_other_layouts_take_the_copying_path():
    # Fields in another order (column-major by key) are not one stride apart per key.
    names = [f"cols.{j}.{key}" for key in COLUMN_FIELDS for j in range(3)]
    dtype = np.dtype([("xbar", np.int64)] + [(name, np.int32) for name in names])
    entries = np.zeros(4, dtype=dtype)
    for index, name in enumerate(names):
        entries[name] = np.arange(4) * 100 + index
    fast = entry_columns(entries, 3)
    for key in COLUMN_FIELDS:
        np.testing.assert_array_equal(fast[key], _columns_reference(entries, 3)[key])
        assert fast[key].dtype == np.int64


# ------------------------------------------------------------------ mapping
@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_q=st.integers(0, 12), chunks=st.integers(0, 9),
       rows=st.integers(1, 16), density=st.floats(0.0, 1.0))
def test_any_row_equals_numpy_any(seed, n_q, chunks, rows, density):
    from bitline.sw.mapping.layout import _any_row

    rng = np.random.default_rng(seed)
    digits = np.where(rng.random((n_q, chunks, rows)) < density,
                      rng.integers(1, 4, (n_q, chunks, rows)), 0).astype(np.uint8)
    np.testing.assert_array_equal(_any_row(digits), digits.any(axis=2))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), bits=st.sampled_from([2, 4, 8, 9, 16, 17, 40]),
       size=st.integers(0, 50))
def test_narrowed_candidate_values_are_the_same_numbers(seed, bits, size):
    from bitline.sw.quant.varied import _narrow

    rng = np.random.default_rng(seed)
    values = rng.integers(-(2 ** (bits - 1)) + 1, 2 ** (bits - 1), size, dtype=np.int64)
    narrow = _narrow(values)
    np.testing.assert_array_equal(narrow.astype(np.int64), values)
    if size and bits <= 8:
        assert narrow.dtype == np.int8
