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
