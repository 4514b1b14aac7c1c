"""The named rows of ``compare``: ISAAC baselines, the BWQ-A variant and ratio naming."""

from __future__ import annotations

import numpy as np
import pytest

from bitline.hw.spec.config import preset
from bitline.hw.spec.program import STRATEGIES
from bitline.sw.flow import compile_model
from bitline.sw.flow.baselines import BASELINES, VARIANTS, accumulator_bits, baseline, variant
from bitline.sw.flow.compare import DEFAULT_ROWS, compare_strategies, strategy_specs
from bitline.sw.perf import analyze
from bitline.sw.quant import load_spec

from support.networks import mixed_ops_model

LABELS = ["isaac-ou-16b", "isaac-ou-8b", "isaac-paper"]


def test_records_are_complete_and_documented():
    assert [run.label for run in BASELINES] == LABELS
    for run in (*BASELINES, *VARIANTS.values()):
        assert run.strategy in STRATEGIES and run.encoding in ("differential", "offset")
        assert len(run.description) > 20
        load_spec(run.spec)                            # every spec parses
        assert run.to_dict()["spec"] == run.spec
    assert baseline("isaac-paper").spec == "int16-a16"
    assert baseline("isaac-paper").encoding == "offset"          # ISAAC's biased weights
    assert {run.encoding for run in BASELINES[:2]} == {"differential"}
    assert baseline("isaac-ou-8b").spec == "int8"
    assert variant("bwq-a").spec == "bwq3-a4" and variant("bwq-a").strategy == "bwq"
    with pytest.raises(ValueError, match="unknown baseline 'isaac-9b'.*isaac-paper"):
        baseline("isaac-9b")
    with pytest.raises(ValueError, match="unknown row 'ivq-a'"):
        variant("ivq-a")


def test_baseline_hardware():
    bwq = preset("bwq")
    geometry = ("rows", "cols", "cell_bits", "dac_bits", "ou_rows", "ou_cols", "adc_bits",
                "adcs_per_xbar", "clock_mhz")
    wide = baseline("isaac-ou-16b").config(bwq)
    assert all(getattr(wide, f) == getattr(bwq, f) for f in geometry)   # the same OU hardware
    assert (wide.max_weight_bits, wide.max_act_bits, wide.acc_bits) == (16, 16, 48)
    assert baseline("isaac-ou-16b").config_name(bwq, "bwq") == "bwq+w16a16"
    assert baseline("isaac-ou-8b").config(bwq) == bwq                    # today's isaac row
    assert baseline("isaac-ou-8b").config_name(bwq, "bwq") == "bwq"
    paper = baseline("isaac-paper").config(bwq)
    assert paper == preset("isaac")
    # ISAAC as published: 128 rows per read, 2-bit cells, one 8-bit ADC per 128 columns
    assert (paper.ou_rows, paper.ou_cols, paper.cell_bits, paper.adc_bits) == (128, 128, 2, 8)
    assert paper.adcs_per_xbar == 1 and paper.conversions_per_read == 128
    assert (paper.max_weight_bits, paper.max_act_bits) == (16, 16)
    # accumulators: 16-bit weights (15 magnitude bits) x 16-bit codes x 2**16 inputs + sign
    assert accumulator_bits(16, 16) == 15 + 16 + 16 + 1
    assert variant("bwq-a").config(bwq) == bwq


def test_activation_suffix_of_shorthands():
    spec = load_spec("int16-a16")
    assert (spec.mode, spec.weights.bits, spec.activations.bits) == ("fixed", 16, 16)
    bwq_a = load_spec("bwq3-a4")
    assert bwq_a.bwq.act_budget == 4.0 and bwq_a.activations.bits == 8
    from pathlib import Path

    example = Path(__file__).parents[2] / "examples" / "quant" / "bwq3-act4.toml"
    assert load_spec(example).bwq == bwq_a.bwq
    assert load_spec("varied4-a6").activations.bits == 6
    with pytest.raises(ValueError, match=r"spec int8-a17: activations.bits: must be between "
                                         r"1 and 16, not 17"):
        load_spec("int8-a17")
    with pytest.raises(ValueError, match="must be an integer, not 4.5"):
        load_spec("int8-a4.5")


def test_strategy_specs_of_variants():
    assert DEFAULT_ROWS == (*STRATEGIES, "bwq-a")
    assert strategy_specs(["bwq", "bwq-a"]) == {"bwq": "bwq3", "bwq-a": "bwq3-a4"}
    assert strategy_specs(["bwq-a"], ["bwq-a=bwq2-a3"]) == {"bwq-a": "bwq2-a3"}


@pytest.fixture(scope="module")
def small():
    model = mixed_ops_model(3)
    calib = np.random.default_rng(0).random((16, *model.input_shape)).astype(np.float32)
    rows = compare_strategies(model, ["isaac", "bwq", "bwq-a"], calib_x=calib)
    return model, calib, {row["strategy"]: row for row in rows}


def test_rows_and_ratio_names(small):
    _, _, rows = small
    assert list(rows) == ["isaac", "bwq", "bwq-a", *LABELS]
    assert all(row["error"] is None for row in rows.values())
    for row in rows.values():
        for reference in ("isaac", *LABELS):
            base = rows[reference]
            assert row[f"speedup_vs_{reference}"] == base["cycles"] / row["cycles"]
            assert row[f"energy_saving_vs_{reference}"] == base["energy_pj"] / row["energy_pj"]
            assert f"throughput_speedup_vs_{reference}" in row
        assert not any("isaac_paper" in key for key in row)
    assert rows["isaac-paper"]["config"] == "isaac" and rows["isaac-paper"]["quant"] == "int16-a16"
    assert rows["isaac-ou-16b"]["config"] == "bwq+w16a16"
    assert rows["isaac-paper"]["encoding"] == "offset"
    assert {rows[name]["encoding"] for name in rows if name != "isaac-paper"} == {"differential"}
    # with the default specs the isaac strategy row and isaac-ou-8b are one run
    for key in ("cycles", "energy_pj", "ou_reads", "crossbars"):
        assert rows["isaac"][key] == rows["isaac-ou-8b"][key]
    # BWQ-A streams fewer activation slices than BWQ on the same weights
    assert rows["bwq-a"]["ou_reads"] < rows["bwq"]["ou_reads"]
    assert rows["bwq-a"]["crossbars"] == rows["bwq"]["crossbars"]


def test_16_bit_baseline_counted_independently(small):
    # Cross-check of isaac-ou-16b: the same int16 weights at 8-bit activations on the same
    # hardware issue exactly half the OU reads (every isaac entry issues all act_bits
    # slices at 1-bit DACs: 16 instead of 8), with the same crossbars.
    model, calib, rows = small
    config = baseline("isaac-ou-16b").config(preset("bwq"))
    eight = compile_model(model, "isaac", "int16", config, calib)
    report = analyze(eight.program, eight.qmodel)
    assert rows["isaac-ou-16b"]["ou_reads"] == 2 * report.ou_reads
    assert rows["isaac-ou-16b"]["adc_conversions"] == 2 * report.adc_conversions
    assert rows["isaac-ou-16b"]["crossbars"] == report.crossbars
    # and 16-bit weights need more magnitude planes than 8-bit ones: more reads than 8/8
    assert rows["isaac-ou-16b"]["ou_reads"] > 2 * rows["isaac-ou-8b"]["ou_reads"]


def test_paper_baseline_uses_the_offset_encoding(small):
    # The offset encoding stores one column set per weight digit instead of a positive and
    # a negative one: the same weights in differential form convert about twice as many
    # columns (a few more than twice: one column group may be split unevenly).
    model, calib, rows = small
    paper = baseline("isaac-paper")
    differential = compile_model(model, "isaac", paper.spec, paper.config(preset("bwq")), calib)
    report = analyze(differential.program, differential.qmodel)
    assert 1.5 * rows["isaac-paper"]["adc_conversions"] < report.adc_conversions
    assert report.adc_conversions <= 2.5 * rows["isaac-paper"]["adc_conversions"]


def test_baselines_ignore_spec_overrides_and_can_be_chosen():
    model = mixed_ops_model(1)
    calib = np.random.default_rng(1).random((8, *model.input_shape)).astype(np.float32)
    rows = compare_strategies(model, ["isaac"], {"isaac": "int4"}, calib_x=calib,
                              baselines=["isaac-ou-8b"])
    assert [row["strategy"] for row in rows] == ["isaac", "isaac-ou-8b"]
    assert rows[1]["quant"] == "int8" and rows[0]["quant"] == "int4"
    assert rows[0]["speedup_vs_isaac-ou-8b"] == rows[1]["cycles"] / rows[0]["cycles"]
    assert "speedup_vs_isaac-paper" not in rows[0]
    with pytest.raises(ValueError, match="unknown baseline"):
        compare_strategies(model, ["isaac"], calib_x=calib, baselines=["isaac-16"])
