"""The compile flow of bitline.sw.flow: sizing is one step before mapping, and its records
say what it chose."""

from __future__ import annotations

import pytest

from bitline.hw.spec.config import preset
from bitline.sw.flow import COMPILE_STEPS, calibration_inputs, compile_model, size_hardware
from bitline.sw.models import resolve_model


@pytest.fixture(scope="module")
def digits():
    model = resolve_model("digits-cnn")
    return model, calibration_inputs(model, "digits")[0]


def test_sizing_is_reported_and_the_program_runs_on_the_sized_config(digits):
    model, calib_x = digits
    small = preset("bwq").replace(max_in_features=8, max_out_channels=4, max_entries=16)
    result = compile_model(model, "bwq", "bwq3", small, calib_x)
    chosen = {record.field: record for record in result.sizing}
    assert {"max_in_features", "max_out_channels", "max_entries", "n_xbars"} <= set(chosen)
    for record in result.sizing:
        assert record.requested == getattr(small, record.field)
        assert record.chosen == getattr(result.config, record.field)
        assert record.reason and record.note.startswith(record.field)
    assert result.program.config == result.config          # nothing changed after mapping
    entries = sum(len(layer.entries) for layer in result.program.layers)
    assert chosen["max_entries"].chosen == entries
    assert chosen["n_xbars"].chosen == result.program.xbars_used


def test_a_unit_count_changes_only_n_xbars(digits):
    model, calib_x = digits
    plan = size_hardware(model, "int8", calib_x, preset("bwq"), "bwq", xbars=40)
    assert [(r.field, r.requested, r.chosen) for r in plan.sizing] == [("n_xbars", 16, 40)]
    assert plan.config == preset("bwq").replace(n_xbars=40)


def test_declared_steps():
    assert [name for name, _ in COMPILE_STEPS] == [
        "resolve model", "calibration inputs", "size hardware", "quantize", "map",
        "validate", "bundle"]


@pytest.mark.parametrize("strategy,spec", [("isaac", "int8"), ("ivq-naive", "varied4"),
                                           ("ivq-spatial", "pot4"), ("ivq-temporal", "varied4"),
                                           ("bwq", "bwq3")])
def test_the_sizing_mapping_is_the_mapping_of_the_sized_config(digits, strategy, spec):
    # compile_model reuses the layers the sizing step mapped to measure; mapping again onto
    # exactly the sized config must give the same program, field by field.
    from bitline.sw.flow.compile import map_program

    model, calib_x = digits
    small = preset("bwq").replace(max_entries=16, n_xbars=2)
    plan = size_hardware(model, spec, calib_x, small, strategy)
    assert plan.layers is not None and plan.qmodel is not None
    again = map_program(plan.qmodel, plan.config, strategy)
    assert len(again.layers) == len(plan.layers)
    for measured, mapped in zip(plan.layers, again.layers):
        assert measured.name == mapped.name
        for field in ("xbars", "row_maps", "cells", "entries", "bias", "mult", "shift"):
            assert (getattr(measured, field) == getattr(mapped, field)).all(), field
        assert (measured.act_bits, measured.mode, measured.zero_point, measured.clamp_lo,
                measured.clamp_hi) == (mapped.act_bits, mapped.mode, mapped.zero_point,
                                       mapped.clamp_lo, mapped.clamp_hi)
    result = compile_model(model, strategy, spec, small, calib_x)
    assert result.program.config == plan.config
