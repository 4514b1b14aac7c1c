"""OU entry / layer / output-parameter encodings: widths derive from the config; pack round-trips."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitline.hw.spec import encoding
from bitline.hw.spec.config import AcceleratorConfig, clog2, preset

CONFIGS = [
    preset("bwq"),
    preset("isaac"),
    AcceleratorConfig(rows=16, cols=16, ou_rows=4, ou_cols=4, adcs_per_xbar=2, n_xbars=3),
]


@pytest.mark.parametrize("config", CONFIGS)
def test_entry_width_is_derived(config):
    column = clog2(config.max_weight_bits) + clog2(config.max_out_channels) + 2
    header = (clog2(config.n_xbars) + clog2(config.row_groups) + clog2(config.col_groups)
              + 2 * clog2(config.max_slices + 1))
    assert encoding.entry_layout(config).size == header + config.ou_cols * column


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("which", ["entry_layout", "layer_layout", "output_param_layout"])
def test_pack_unpack_round_trip(config, which):
    layout = getattr(encoding, which)(config)
    rng = np.random.default_rng(0)
    records = np.zeros(17, dtype=encoding.numpy_dtype(layout))
    for name, _, width in encoding.flatten_fields(layout):
        records[name] = rng.integers(0, 1 << width, size=17, dtype=np.uint64).astype(np.int64)
    blob = encoding.pack(layout, records)
    assert len(blob) == 17 * encoding.record_bytes(layout)
    assert np.array_equal(encoding.unpack(layout, blob), records)


def test_pack_rejects_values_that_do_not_fit():
    layout = encoding.entry_layout(preset("bwq"))
    records = np.zeros(2, dtype=encoding.numpy_dtype(layout))
    records["cols.3.dest"] = [5, 1024]
    with pytest.raises(ValueError, match=r"field cols.3.dest value 1024 does not fit 10 bits"):
        encoding.pack(layout, records)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, (1 << 140) - 1))
def test_bit_positions_are_lsb_first(value):
    """Packing matches an integer built by shifting each field to its offset."""
    layout = encoding.entry_layout(preset("bwq"))
    records = encoding.unpack(layout, value.to_bytes(encoding.record_bytes(layout), "little"))
    rebuilt = 0
    for name, offset, _ in encoding.flatten_fields(layout):
        rebuilt |= int(records[name][0]) << offset
    assert rebuilt == value
