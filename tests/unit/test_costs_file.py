"""Cost-model options: the ADC energy switch (table | pow2) and TOML costs files.

Every expected energy below is recomputed from the report's event counts and the prices,
not read back from the changed report.
"""

from __future__ import annotations

import pytest

from bitline.hw.spec.config import preset
from bitline.sw.perf import (
    ADC_ENERGY_PJ,
    ISAAC_COSTS,
    CostModel,
    adc_energy_pow2_pj,
    analyze,
    cost_keys,
    cost_model,
    load_costs,
    unit_area_mm2,
)


@pytest.fixture(scope="module")
def digits_bwq():
    """The digits CNN mapped with ``bwq`` (program and quantized model; INT8 weights, which
    quantize in a fraction of the time of bwq3 and exercise the same prices)."""
    from bitline.sw.flow import calibration_inputs, compile_model, resolve_target

    model = resolve_target("digits-cnn").require("model", "test")
    calib_x, _ = calibration_inputs(model, None, model_name="digits-cnn")
    result = compile_model(model, "bwq", "int8", preset("bwq"), calib_x)
    return result.program, result.qmodel


def _sum(report, key):
    return sum(getattr(layer, key) for layer in report.layers)


def test_pow2_model_doubles_per_bit_from_the_reference():
    pow2 = cost_model(adc_model="pow2")
    assert pow2.adc_pj(8) == pytest.approx(ADC_ENERGY_PJ[8])
    for bits in range(1, 13):
        assert pow2.adc_pj(bits) == pytest.approx(1.667 * 2.0 ** (bits - 8))
        assert pow2.adc_pj(bits + 1) == pytest.approx(2 * pow2.adc_pj(bits))
    assert adc_energy_pow2_pj(4, ref_bits=4, ref_pj=0.79) == pytest.approx(0.79)
    assert ISAAC_COSTS.adc_pj(4) == ADC_ENERGY_PJ[4]         # the default stays the table
    with pytest.raises(ValueError, match="adc model must be one of table, pow2, not 'cubic'"):
        CostModel(adc_model="cubic")


def test_adc_switch_changes_only_the_adc_energy_and_area(digits_bwq):
    program, qmodel = digits_bwq
    table = analyze(program, qmodel)
    pow2 = analyze(program, qmodel, costs=cost_model(adc_model="pow2"))
    bits = program.config.adc_bits
    conversions = _sum(table, "adc_conversions")
    assert pow2.energy_pj["adc"] == pytest.approx(conversions * 1.667 * 2.0 ** (bits - 8))
    assert table.energy_pj["adc"] == pytest.approx(conversions * ADC_ENERGY_PJ[bits])
    for key in table.energy_pj:
        if key != "adc":
            assert pow2.energy_pj[key] == pytest.approx(table.energy_pj[key])
    # ADC area scales by the model's resolution ratio: 2**(4 - 8) against 0.79 / 1.667.
    ratio = pow2.area_mm2["adc"] / table.area_mm2["adc"]
    assert ratio == pytest.approx((2.0 ** -4) / (0.79 / 1.667))
    assert pow2.to_dict()["adc"] == {"bits": bits, "model": "pow2",
                                     "pj_per_conversion": pytest.approx(0.1041875)}


def test_costs_file_changes_energy_by_the_expected_amount(digits_bwq, tmp_path):
    program, qmodel = digits_bwq
    path = tmp_path / "costs.toml"
    path.write_text("[energy]\ndac = 0.834\nedram_bit = 0\n[area]\nadc = 0.0024\n"
                    "[adc.table]\n4 = 1.0\n")
    costs = load_costs(path)
    base = analyze(program, qmodel)
    ours = analyze(program, qmodel, costs=costs)
    # A second way: the difference is (new price - old price) x the events it prices.
    dac_events = _sum(base, "dac_conversions")
    conversions = _sum(base, "adc_conversions")
    expected = (base.total_energy_pj + dac_events * (0.834 - 0.417)
                + conversions * (1.0 - 0.79) - base.energy_pj["edram"])
    assert ours.total_energy_pj == pytest.approx(expected)
    assert ours.energy_pj["edram"] == 0.0
    assert ours.energy_pj["dac"] == pytest.approx(2 * base.energy_pj["dac"])
    assert ours.energy_pj["crossbar"] == pytest.approx(base.energy_pj["crossbar"])
    unit = unit_area_mm2(program.config, costs)
    assert unit["adc"] == pytest.approx(8 * 0.0024 * 1.0 / 1.667)   # 8 ADCs at 4 bits
    assert ours.cycles == base.cycles


def test_every_price_is_a_file_key():
    keys = cost_keys()
    assert keys["energy.dac"] == "dac_pj" and keys["area.adc"] == "area_adc_mm2"
    fields = set(CostModel.__dataclass_fields__)
    assert set(keys.values()) == fields            # nothing left that a file cannot set


def test_file_adc_model_and_cli_switch(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[adc]\nmodel = "pow2"\nref_bits = 4\nref_pj = 0.5\n')
    assert load_costs(path).adc_pj(6) == pytest.approx(2.0)
    assert cost_model(path, "table").adc_pj(6) == ADC_ENERGY_PJ[6]   # the switch wins
    assert cost_model(None, None) is ISAAC_COSTS


@pytest.mark.parametrize("text, message", [
    ("[energy]\ndacc = 1.0\n", r"unknown key energy.dacc = 1.0; \[energy\] knows .*dac"),
    ("[power]\ndac = 1.0\n", "unknown section 'power'"),
    ("[energy]\ndac = -0.5\n", "energy.dac must be non-negative, not -0.5"),
    ("[area]\nadc = -1\n", "area.adc must be non-negative, not -1"),
    ("[energy]\ndac = \"cheap\"\n", "energy.dac must be a number, not 'cheap'"),
    ("[adc]\nmodel = \"cubic\"\n", "adc.model must be one of table, pow2, not 'cubic'"),
    ("[adc]\nref_pj = 0\n", "adc.ref_pj must be positive, not 0"),
    ("[adc.table]\n13 = 5.0\n", "adc table must cover .* consecutive resolutions"),
    ("[energy\n", "not valid TOML"),
])
def test_bad_costs_file_is_refused_naming_file_key_and_value(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as error:
        load_costs(path)
    assert str(path) in str(error.value)


def test_missing_costs_file(tmp_path):
    with pytest.raises(ValueError, match="nope.toml: costs file not found"):
        load_costs(tmp_path / "nope.toml")


def test_sensitivity_script_matches_linear_repricing(digits_bwq):
    """scripts/cost_sensitivity.py's scaling, checked a second way: scaling one price by f
    moves the energy by (f - 1) x that component, nothing else."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "scripts" / "cost_sensitivity.py"
    spec = importlib.util.spec_from_file_location("cost_sensitivity", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    program, qmodel = digits_bwq
    base = analyze(program, qmodel)
    for price, components in module.PRICES.items():
        for factor in module.FACTORS:
            ours = analyze(program, qmodel, costs=module.scaled(ISAAC_COSTS, price, factor))
            moved = sum(base.energy_pj[c] for c in components) * (factor - 1)
            transfers = _sum(base, "reduction_transfers")
            if price == "shift_add_pj":     # also the add of every reduction transfer
                moved += transfers * ISAAC_COSTS.shift_add_pj * (factor - 1)
            if price == "router_bit_pj":    # the router part of the reduction only
                moved = (transfers * program.config.acc_bits * ISAAC_COSTS.router_bit_pj
                         * (factor - 1))
            assert ours.total_energy_pj == pytest.approx(base.total_energy_pj + moved), price
