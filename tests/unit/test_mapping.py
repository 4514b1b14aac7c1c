"""Mapping compiler: round trip, exactness bound, hollow exemption, BWQ, model mapping."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitline.hw.spec.config import AcceleratorConfig, preset
from bitline.hw.spec.encoding import entry_layout, pack
from bitline.hw.spec.program import entry_columns
from bitline.sw.mapping import STRATEGIES, map_matrix, map_model, reconstruct_matrix
from bitline.sw.mapping.layout import balance, usable_row_groups
from bitline.sw.quant import level_set

from support.strategies import configs

SCHEMES = [("int", 8), ("int", 4), ("pot", 4), ("apot", 4), ("adaptivfloat", 6),
           ("ternary", 2), ("binary", 1)]

SMALL_CONFIGS = [
    preset("bwq"),
    preset("isaac"),
    AcceleratorConfig(rows=16, cols=16, ou_rows=4, ou_cols=3, adc_bits=3, adcs_per_xbar=3),
    AcceleratorConfig(rows=16, cols=16, ou_rows=5, ou_cols=4, adc_bits=4, cell_bits=2,
                      adcs_per_xbar=2),
    AcceleratorConfig(rows=20, cols=12, ou_rows=9, ou_cols=8, adc_bits=5, cell_bits=2,
                      dac_bits=2, adcs_per_xbar=4),
]


def random_matrix(rng, n_out, n_in, scheme="int", bits=8, zeros=0.3):
    """Signed weights drawn from a scheme's integer level set, some forced to zero."""
    levels = level_set(scheme, bits)
    values = rng.choice(levels, size=(n_out, n_in)) * rng.choice([-1, 1], size=(n_out, n_in))
    values[rng.random((n_out, n_in)) < zeros] = 0
    return values.astype(np.int64)


def check_program(layer, config, matrix):
    """Every invariant a mapper must keep (round trip, exactness, encoding)."""
    assert np.array_equal(reconstruct_matrix(layer, config), matrix)
    exact = config.exact_rows_per_ou
    entries = layer.entries
    desc = entry_columns(entries, config.ou_cols)
    keys = list(zip(entries["xbar"].tolist(), entries["row_group"].tolist(),
                    entries["col_group"].tolist()))
    assert len(set(keys)) == len(keys)
    assert keys == sorted(keys)
    assert np.all(entries["slice_lo"] < entries["slice_hi"])
    local = entries["xbar"] - layer.xbars[0] if len(layer.xbars) else entries["xbar"]
    covered = np.zeros(layer.cells.shape, dtype=bool)
    for index in range(len(entries)):
        rows = np.arange(entries["row_group"][index] * config.ou_rows,
                         min((entries["row_group"][index] + 1) * config.ou_rows, config.rows))
        for j in np.flatnonzero(desc["valid"][index]):
            col = entries["col_group"][index] * config.ou_cols + j
            assert col < config.cols
            cells = layer.cells[local[index], rows, col]
            driven = layer.row_maps[local[index], rows] >= 0
            assert np.count_nonzero(cells[driven]) <= exact
            assert np.all(cells[~driven] == 0)
            covered[local[index], rows, col] = True
    # no programmed cell is left out of every read
    assert not np.any((layer.cells != 0) & ~covered)
    assert layer.cells.max(initial=0) <= config.level_max
    sized = config.replace(n_xbars=max(1, int(entries["xbar"].max(initial=0)) + 1))
    pack(entry_layout(sized), entries)  # every field fits its width


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("config", SMALL_CONFIGS, ids=lambda c: f"{c.rows}x{c.cols}/{c.ou_rows}x{c.ou_cols}c{c.cell_bits}")
@pytest.mark.parametrize("scheme,bits", SCHEMES)
def test_round_trip_fixed(strategy, config, scheme, bits):
    rng = np.random.default_rng(abs(hash((strategy, scheme, bits, config.rows))) % 2**32)
    matrix = random_matrix(rng, 13, 47, scheme, bits)
    layer = map_matrix(matrix, config, strategy, act_bits=8, xbar_offset=3)
    check_program(layer, config, matrix)
    assert np.all(layer.xbars == 3 + np.arange(len(layer.xbars)))


@settings(max_examples=60, deadline=None)
@given(config=configs(max_act_bits=8), strategy=st.sampled_from(STRATEGIES),
       scheme=st.sampled_from(SCHEMES), n_out=st.integers(1, 24), n_in=st.integers(1, 60),
       seed=st.integers(0, 2**32 - 1), zeros=st.floats(0.0, 0.95))
def test_round_trip_random(config, strategy, scheme, n_out, n_in, seed, zeros):
    matrix = random_matrix(np.random.default_rng(seed), n_out, n_in, *scheme, zeros=zeros)
    layer = map_matrix(matrix, config, strategy, act_bits=8)
    check_program(layer, config, matrix)


def test_isaac_reads_only_populated_row_and_column_groups():
    """K = 200 is not a multiple of the 9-row OU: 23 chunks over two row tiles (14 + 9)."""
    config = preset("bwq")
    n_out, n_in = 20, 200
    matrix = random_matrix(np.random.default_rng(1), n_out, n_in, "pot", 4, zeros=0.8)
    layer = map_matrix(matrix, config, "isaac", act_bits=8)
    # expected count, by plain arithmetic: 9-row chunks, (channel, sign, digit) columns
    digits = int(np.abs(matrix).max()).bit_length()       # 1-bit cells
    columns = 2 * digits * n_out
    chunks = (n_in + 8) // 9                               # 23; 14 fit in 128 rows
    col_groups = 0
    for start in range(0, columns, 128):                   # one 128-column tile at a time
        width = min(128, columns - start)
        col_groups += (width + 7) // 8
    assert chunks == 23
    assert len(layer.entries) == chunks * col_groups
    assert layer.stats["ou_reads_per_vector"] == 8 * chunks * col_groups
    # before the fix every OU of every crossbar was read: 15 row groups x 16 column groups
    assert len(layer.entries) < len(layer.xbars) * config.row_groups * config.col_groups
    # no entry in a row group past the chunks, every entry drives rows, columns are valid
    row_tile = (layer.entries["xbar"] - layer.xbars[0]) // (-(-columns // 128))
    populated = np.where(row_tile == 0, 14, chunks - 14)
    assert np.all(layer.entries["row_group"] < populated)
    desc = entry_columns(layer.entries, config.ou_cols)
    assert np.all(desc["valid"].any(axis=1))
    local = layer.entries["xbar"] - layer.xbars[0]
    rows = layer.entries["row_group"] * config.ou_rows
    assert np.all(layer.row_maps[local, rows] >= 0)
    assert np.all(layer.entries["slice_lo"] == 0)
    assert np.all(layer.entries["slice_hi"] == 8)
    check_program(layer, config, matrix)
    # the isaac preset drives 85 of its 128 rows (exact 8-bit ADC with 2-bit cells)
    isaac = preset("isaac")
    layer = map_matrix(matrix, isaac, "isaac", act_bits=8)
    assert np.all(layer.row_maps[:, 85:] == -1)
    assert np.count_nonzero(layer.row_maps[0] >= 0) == 85


def test_isaac_reads_only_the_filled_part_of_a_crossbar(digits_int8):
    """The digits CNN's first conv (K = 9, 16 channels) fills one row group of two crossbars."""
    config = preset("bwq")
    layer = map_model(digits_int8, config, "isaac", xbars="auto").layers[0]
    assert layer.n_inputs == 9 and len(layer.xbars) == 2
    # brute force over the cell image: the OUs that hold a nonzero cell
    holding = set()
    for x in range(len(layer.xbars)):
        for g in range(config.row_groups):
            for cg in range(config.col_groups):
                block = layer.cells[x, g * config.ou_rows:(g + 1) * config.ou_rows,
                                    cg * config.ou_cols:(cg + 1) * config.ou_cols]
                if block.any():
                    holding.add((int(layer.xbars[x]), g, cg))
    read = set(zip(layer.entries["xbar"].tolist(), layer.entries["row_group"].tolist(),
                   layer.entries["col_group"].tolist()))
    assert layer.stats["hollow_entries"] == 0
    assert read == holding
    assert len(holding) < 2 * config.row_groups * config.col_groups
    assert layer.stats["ou_reads_per_vector"] == 8 * len(holding)


def test_hollow_exemption_and_ordering():
    config = preset("bwq")
    rng = np.random.default_rng(7)
    for scheme, bits in [("pot", 4), ("apot", 4), ("ternary", 2), ("int", 4)]:
        matrix = random_matrix(rng, 48, 300, scheme, bits, zeros=0.5)
        layers = {s: map_matrix(matrix, config, s, act_bits=8) for s in STRATEGIES}
        reads = {s: layer.stats["ou_reads_per_vector"] for s, layer in layers.items()}
        for strategy in ("ivq-spatial", "ivq-temporal", "bwq"):
            layer = layers[strategy]
            assert layer.stats["hollow_entries"] == 0
            # every valid column holds a nonzero cell in its row group
            desc = entry_columns(layer.entries, config.ou_cols)
            local = layer.entries["xbar"] - layer.xbars[0]
            for index in range(len(layer.entries)):
                rows = slice(layer.entries["row_group"][index] * config.ou_rows,
                             (layer.entries["row_group"][index] + 1) * config.ou_rows)
                for j in np.flatnonzero(desc["valid"][index]):
                    col = layer.entries["col_group"][index] * config.ou_cols + j
                    assert layer.cells[local[index], rows, col].any()
            # hollow crossbars are never allocated
            assert all(layer.cells[x].any() for x in range(len(layer.xbars)))
        if scheme == "pot":
            assert layers["ivq-naive"].stats["hollow_entries"] > 0
        assert reads["ivq-spatial"] <= reads["ivq-naive"] <= reads["isaac"]
        assert reads["ivq-temporal"] <= reads["ivq-spatial"]
        assert layers["ivq-temporal"].stats["xbars"] <= layers["ivq-spatial"].stats["xbars"]
        # same cells everywhere, only placement differs
        nonzero = {layer.stats["nonzero_cells"] for layer in layers.values()}
        assert len(nonzero) == 1


def test_temporal_beats_spatial_on_sparse_bits():
    config = preset("bwq")
    matrix = random_matrix(np.random.default_rng(3), 64, 576, "pot", 4, zeros=0.2)
    spatial = map_matrix(matrix, config, "ivq-spatial", act_bits=8)
    temporal = map_matrix(matrix, config, "ivq-temporal", act_bits=8)
    assert temporal.stats["ou_reads_per_vector"] < spatial.stats["ou_reads_per_vector"]
    # temporal reaches the per-chunk minimum: ceil(nonzero segments / ou_cols)
    desc = entry_columns(temporal.entries, config.ou_cols)
    assert desc["valid"].sum() / len(temporal.entries) > 0.9 * config.ou_cols


def test_bwq_skips_zero_blocks_and_issues_requested_slices():
    config = preset("bwq")
    rng = np.random.default_rng(11)
    n_out, n_in = 24, 90
    block_shape = (-(-n_out // config.ou_cols), -(-n_in // config.ou_rows))
    block_bits = rng.choice([0, 2, 4, 8], size=block_shape)
    matrix = random_matrix(rng, n_out, n_in, "int", 8, zeros=0.1)
    pruned = np.repeat(np.repeat(block_bits == 0, config.ou_cols, 0), config.ou_rows, 1)
    matrix[pruned[:n_out, :n_in]] = 0
    act_block_bits = rng.choice([0, 3, 5, 8], size=block_shape[1])
    layer = map_matrix(matrix, config, "bwq", act_bits=8, block_bits=block_bits,
                       act_block_bits=act_block_bits)
    truncated = matrix.copy()
    truncated[:, np.repeat(act_block_bits == 0, config.ou_rows)[:n_in]] = 0
    check_program(layer, config, truncated)
    local = layer.entries["xbar"] - layer.xbars[0]
    for index in range(len(layer.entries)):
        rows = slice(layer.entries["row_group"][index] * config.ou_rows,
                     (layer.entries["row_group"][index] + 1) * config.ou_rows)
        inputs = layer.row_maps[local[index], rows]
        widths = np.unique(act_block_bits[inputs[inputs >= 0] // config.ou_rows])
        assert len(widths) == 1          # one row group, one activation width
        width = widths[0]
        assert width > 0
        assert layer.entries["slice_lo"][index] == 8 - width
        assert layer.entries["slice_hi"][index] == 8
        # one significance per OU
        desc = entry_columns(layer.entries[index:index + 1], config.ou_cols)
        assert len(np.unique(desc["shift"][desc["valid"] == 1])) == 1
    # no row maps an input of a dropped row block, no cell of a pruned block is programmed
    mapped = layer.row_maps[layer.row_maps >= 0]
    assert not np.any(act_block_bits[mapped // config.ou_rows] == 0)
    assert layer.stats["nonzero_cells"] == sum(
        int(np.count_nonzero((np.abs(truncated) >> k) & 1)) for k in range(8))


def test_bwq_rejects_inconsistent_block_bits():
    config = preset("bwq")
    matrix = np.ones((8, 9), dtype=np.int64)
    with pytest.raises(ValueError, match="block_bits 0"):
        map_matrix(matrix, config, "bwq", act_bits=8, block_bits=np.zeros((1, 1)),
                   name="fc")
    with pytest.raises(ValueError, match="fc: block_bits has shape"):
        map_matrix(matrix, config, "bwq", act_bits=8, block_bits=np.ones((2, 2)), name="fc")
    with pytest.raises(ValueError, match="act_block_bits"):
        map_matrix(matrix, config, "ivq-naive", act_bits=8, act_block_bits=np.array([9]),
                   name="fc")
    two_bit_dac = AcceleratorConfig(dac_bits=2, adc_bits=4, ou_rows=5)
    with pytest.raises(ValueError, match="DAC slices"):
        map_matrix(matrix, two_bit_dac, "bwq", act_bits=8, act_block_bits=np.array([5, 5]),
                   name="fc")


def test_user_errors_name_layer_and_value():
    config = preset("bwq")
    with pytest.raises(ValueError, match="unknown mapping strategy 'best'"):
        map_matrix(np.ones((2, 2), dtype=np.int64), config, "best", act_bits=8)
    with pytest.raises(ValueError, match="conv9: weights need 10 bits"):
        map_matrix(np.full((2, 2), 300), config, "ivq-naive", act_bits=8, name="conv9")
    with pytest.raises(ValueError, match="conv9: 2000 output channels"):
        map_matrix(np.ones((2000, 2), dtype=np.int64), config, "isaac", act_bits=8,
                   name="conv9")


def test_balance_is_minimal_and_even():
    loads = np.array([9, 9, 8, 7, 3, 3, 2, 2, 1, 1, 1])
    xbar, slot, n_xbars = balance(loads, capacity=4)
    assert n_xbars == 3
    assert np.all(np.bincount(xbar) <= 4)
    per_unit = np.bincount(xbar, weights=loads)
    assert per_unit.max() <= -(-loads.sum() // n_xbars) + loads.max()
    pairs = set(zip(xbar.tolist(), slot.tolist()))
    assert len(pairs) == len(loads)


def test_bwq_widths_regroup_rows_on_large_ous():
    """With an OU taller than the BWQ block, equal-width row blocks share row groups."""
    config = preset("isaac")                  # 85 exact rows, BWQ blocks of 9 inputs
    rng = np.random.default_rng(12)
    matrix = random_matrix(rng, 8, 180, "int", 4)
    act_block_bits = np.tile([8, 6], 10)      # alternating widths, 20 blocks of 9
    layer = map_matrix(matrix, config, "ivq-temporal", act_bits=8,
                       act_block_bits=act_block_bits, block_rows=9)
    check_program(layer, config, matrix)
    driven = (layer.row_maps >= 0).sum(axis=1)
    assert sorted(driven.tolist()) == [5, 5, 85, 85]   # 90 inputs per width
    assert sorted(layer.entries["slice_lo"].tolist()) == [0, 0, 2, 2]


def test_usable_row_groups():
    assert usable_row_groups(preset("bwq")) == 14          # 128 = 14 * 9 + 2
    assert usable_row_groups(preset("isaac")) == 1
    assert usable_row_groups(AcceleratorConfig(rows=18, ou_rows=9)) == 2


# --------------------------------------------------------------------------- whole models
@pytest.fixture(scope="module")
def digits_int8():
    from bitline.sw.datasets import load_dataset
    from bitline.sw.models import resolve_model
    from bitline.sw.quant.build import quantize_model_int

    calib, _ = load_dataset("digits", "calib")
    return quantize_model_int(resolve_model("digits-cnn"), calib)


def test_map_model_auto_and_config(digits_int8):
    config = preset("bwq")
    for strategy in STRATEGIES:
        program = map_model(digits_int8, config, strategy, xbars="auto")
        assert program.config.n_xbars == program.xbars_used
        offset = 0
        for layer, qlayer in zip(program.layers, digits_int8.compute_layers):
            assert layer.name == qlayer.layer.name
            assert np.all(layer.xbars == offset + np.arange(len(layer.xbars)))
            assert set(layer.entries["xbar"].tolist()) <= set(layer.xbars.tolist())
            assert np.array_equal(layer.bias, qlayer.bias)
            assert layer.mode == qlayer.mode
            offset += len(layer.xbars)
            pack(entry_layout(program.config), layer.entries)
        big = config.replace(n_xbars=program.xbars_used)
        assert map_model(digits_int8, big, strategy).config == big


def test_map_model_not_fitting(digits_int8):
    config = preset("bwq").replace(n_xbars=4)
    with pytest.raises(ValueError, match=r"network needs \d+ crossbar units, the configuration "
                                         r"has 4; use --xbars auto or raise n_xbars"):
        map_model(digits_int8, config, "ivq-naive")
    with pytest.raises(ValueError, match="xbars must be"):
        map_model(digits_int8, config, "ivq-naive", xbars="many")
    program = map_model(digits_int8, config, "ivq-temporal", xbars=64)
    assert program.config.n_xbars == 64
