"""AcceleratorConfig: presets, validation messages, TOML round trip, derived widths."""

import pytest

from bitline.hw.spec.config import PRESETS, AcceleratorConfig, clog2, preset


def test_presets_match_the_papers():
    bwq = preset("bwq")
    assert (bwq.rows, bwq.cols, bwq.cell_bits, bwq.dac_bits) == (128, 128, 1, 1)
    assert (bwq.ou_rows, bwq.ou_cols, bwq.adc_bits, bwq.adcs_per_xbar) == (9, 8, 4, 8)
    assert bwq.conversions_per_read == 1 and bwq.exact_rows_per_ou == 9
    isaac = preset("isaac")
    assert (isaac.cell_bits, isaac.ou_rows, isaac.ou_cols, isaac.adc_bits) == (2, 128, 128, 8)
    assert isaac.adcs_per_xbar == 1 and isaac.conversions_per_read == 128
    # 8-bit ADC, 2-bit cells: 255 // 3 rows per read stay exact.
    assert isaac.exact_rows_per_ou == 85


def test_unknown_preset_names_the_choices():
    with pytest.raises(ValueError, match="unknown preset 'foo'.*bwq.*isaac"):
        preset("foo")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"ou_rows": 200}, r"ou_rows must be between 1 and rows \(128\), not 200"),
        ({"adcs_per_xbar": 9}, r"adcs_per_xbar must be between 1 and ou_cols \(8\), not 9"),
        ({"cell_bits": 0}, r"cell_bits must be between 1 and 4, not 0"),
        ({"rows": 2.5}, r"rows must be an integer, not 2.5"),
        ({"n_xbars": True}, r"n_xbars must be an integer, not True"),
        ({"adc_bits": 1, "cell_bits": 2}, r"adc_bits \(1\) cannot resolve"),
    ],
)
def test_validation_quotes_field_value_and_range(changes, message):
    with pytest.raises(ValueError, match=message):
        AcceleratorConfig(**changes)


def test_toml_round_trip(tmp_path):
    config = PRESETS["isaac"].replace(n_xbars=3, clock_mhz=800)
    path = tmp_path / "cfg.toml"
    config.save(path)
    again = AcceleratorConfig.load(path)
    assert again == config and again.digest == config.digest


def test_toml_preset_base_and_errors(tmp_path):
    path = tmp_path / "cfg.toml"
    path.write_text('[accelerator]\npreset = "bwq"\nn_xbars = 4\n')
    assert AcceleratorConfig.load(path) == preset("bwq").replace(n_xbars=4)
    path.write_text("[accelerator]\nou_rowz = 4\n")
    with pytest.raises(ValueError, match=r"cfg.toml: unknown field\(s\) ou_rowz"):
        AcceleratorConfig.load(path)
    path.write_text("[accelerator]\nou_rows = 500\n")
    with pytest.raises(ValueError, match=r"cfg.toml: ou_rows must be between"):
        AcceleratorConfig.load(path)
    path.write_text("[accelerator\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        AcceleratorConfig.load(path)
    with pytest.raises(ValueError, match="config file not found"):
        AcceleratorConfig.load(tmp_path / "missing.toml")


def test_derived_quantities():
    config = AcceleratorConfig(rows=64, cols=32, ou_rows=5, ou_cols=6, adcs_per_xbar=4)
    assert config.row_groups == 13 and config.col_groups == 6
    assert config.conversions_per_read == 2
    assert config.max_slices == 8
    assert [clog2(v) for v in (1, 2, 3, 4, 5, 128, 129)] == [1, 1, 2, 2, 3, 7, 8]
    assert config.digest != config.replace(n_xbars=2).digest
