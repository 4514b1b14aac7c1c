"""Tests of bitline.sw.perf: event counts, cycles, energy and the lower bound.

The hand-built program below is small enough to count by hand; the expected numbers in
the comments are those hand counts, not values read back from the model.
"""

import numpy as np
import pytest

from bitline.hw.spec.config import AcceleratorConfig, preset
from bitline.hw.spec.program import LayerProgram, Program, empty_entries
from bitline.hw.spec.timing import drain_latency, pipeline_latency
from bitline.sw.frontend.ir import Layer, Model
from bitline.sw.perf import (
    ADC_ENERGY_PJ,
    AREA_COMPONENTS,
    ENERGY_COMPONENTS,
    ISAAC_COSTS,
    adc_energy_pj,
    analyze,
    analyze_layer,
    layer_vectors,
    unit_area_mm2,
)

CONFIG = AcceleratorConfig(
    rows=16, cols=16, cell_bits=1, dac_bits=1, ou_rows=4, ou_cols=4, adc_bits=3,
    adcs_per_xbar=2, n_xbars=4, max_act_bits=4, max_weight_bits=4, max_out_channels=8,
    max_in_features=64,
)


def set_column(entries, index, j, dest, sign=0, shift=0):
    entries[index][f"cols.{j}.valid"] = 1
    entries[index][f"cols.{j}.dest"] = dest
    entries[index][f"cols.{j}.sign"] = sign
    entries[index][f"cols.{j}.shift"] = shift


def hand_layer(name="fc", act_bits=4) -> LayerProgram:
    """K = 6 inputs, O = 2 outputs on units 1 and 3 (global ids); three entries."""
    row_maps = np.full((2, 16), -1, dtype=np.int32)
    row_maps[0, :6] = np.arange(6)          # unit 1: rows 0..5 <- inputs 0..5
    row_maps[1, :3] = np.arange(3)          # unit 3: rows 0..2 <- inputs 0..2
    cells = np.zeros((2, 16, 16), dtype=np.uint8)
    for row, col in [(0, 0), (2, 1), (5, 0), (7, 0), (1, 2)]:
        cells[0, row, col] = 1              # (7, 0) is on an undriven row, (1, 2) invalid col
    for row, col in [(0, 4), (2, 7), (4, 4)]:
        cells[1, row, col] = 1              # (4, 4) is in a row group without an entry
    entries = empty_entries(CONFIG, 3)
    # e0: unit 1, row group 0, col group 0, slices [0, 4), columns 0 -> ch 0, 1 -> ch 1
    entries[0]["xbar"], entries[0]["row_group"], entries[0]["col_group"] = 1, 0, 0
    entries[0]["slice_lo"], entries[0]["slice_hi"] = 0, 4
    set_column(entries, 0, 0, dest=0)
    set_column(entries, 0, 1, dest=1)
    # e1: unit 1, row group 1, col group 0, slices [2, 4), column 0 -> ch 0
    entries[1]["xbar"], entries[1]["row_group"], entries[1]["col_group"] = 1, 1, 0
    entries[1]["slice_lo"], entries[1]["slice_hi"] = 2, 4
    set_column(entries, 1, 0, dest=0)
    # e2: unit 3, row group 0, col group 1, slices [0, 4), columns 0 and 3 -> ch 1
    entries[2]["xbar"], entries[2]["row_group"], entries[2]["col_group"] = 3, 0, 1
    entries[2]["slice_lo"], entries[2]["slice_hi"] = 0, 4
    set_column(entries, 2, 0, dest=1)
    set_column(entries, 2, 3, dest=1, sign=1)
    return LayerProgram(
        name=name, n_inputs=6, n_outputs=2, act_bits=act_bits, xbars=np.array([1, 3]),
        row_maps=row_maps, cells=cells, entries=entries,
        bias=np.zeros(2, np.int64), mult=np.ones(2, np.int64), shift=np.zeros(2, np.int64),
    )


def hand_model(op="gemm") -> Model:
    if op == "gemm":
        layer = Layer("fc", "gemm", ["x"], "y", (6,), (2,), weight=np.ones((2, 6), np.float32))
        return Model("hand", "x", (6,), [layer], "y")
    layer = Layer("fc", "conv", ["x"], "y", (6, 5, 5), (2, 3, 3),
                  attrs={"stride": (1, 1), "pads": (0, 0, 0, 0), "dilation": (1, 1),
                         "groups": 1},
                  weight=np.ones((2, 6, 1, 1), np.float32))
    return Model("hand", "x", (6, 5, 5), [layer], "y")


def test_hand_counts_one_vector():
    perf = analyze_layer(hand_layer(), CONFIG, 1)
    assert perf.ou_reads == 4 + 2 + 4
    assert perf.adc_conversions == 4 * 2 + 2 * 1 + 4 * 2
    # driven rows: e0 4 (rows 0-3), e1 2 (rows 4, 5), e2 3 (rows 0-2)
    assert perf.dac_conversions == 4 * 4 + 2 * 2 + 4 * 3
    assert perf.activated_cells == 4 * 4 * 2 + 2 * 2 * 1 + 4 * 3 * 2
    # nonzero cells under the OU: e0 (0,0),(2,1); e1 (5,0); e2 (0,4),(2,7)
    assert perf.activated_nonzero_cells == 4 * 2 + 2 * 1 + 4 * 2
    assert perf.nonzero_cells == 8
    assert perf.allocated_cells == 2 * 16 * 16
    assert perf.crossbars == 2 and perf.active_crossbars == 2
    assert perf.max_unit_reads == 6          # unit 1: 4 + 2 reads, unit 3: 4
    assert perf.reduction_transfers == 3     # (1, ch0), (1, ch1), (3, ch1)
    assert perf.entries == 3
    assert perf.cell_utilization == pytest.approx(8 / 512)
    assert perf.ou_fill == pytest.approx(18 / 60)


def job_cycles(K, O, V, c_comp, config=CONFIG):
    """The layer-job formula of bitline.hw.spec.timing, written out."""
    vector = c_comp + O + pipeline_latency(config)
    return K + (V - 1) * max(vector, K) + vector + drain_latency(config)


def test_cycles_follow_timing_formula():
    model = hand_model("conv")
    program = Program(CONFIG, "hand", [hand_layer()])
    report = analyze(program, model)
    layer = report.layers[0]
    K, O, V = 6, 2, 9
    c_comp = 6 * CONFIG.conversions_per_read   # busiest unit: 6 reads x 2 conversions
    assert layer.n_vectors == V
    expected = job_cycles(K, O, V, c_comp)
    assert layer.cycles == expected
    assert report.cycles == expected
    assert report.latency_s == pytest.approx(expected / (CONFIG.clock_mhz * 1e6))
    # Counts scale with the vectors.
    assert layer.ou_reads == V * 10 and layer.adc_conversions == V * 18


def test_cycles_input_load_bound():
    """With a long input vector the K-cycle load dominates the compute."""
    layer = hand_layer()
    layer.n_inputs = 40
    perf = analyze_layer(layer, CONFIG, 3)
    assert perf.cycles == 40 + 2 * 40 + (12 + 2 + pipeline_latency(CONFIG)) + drain_latency(CONFIG)


def test_hollow_units_are_exempt():
    layer = hand_layer()
    layer.xbars = np.array([0, 1, 3])
    layer.row_maps = np.concatenate([np.full((1, 16), -1, np.int32), layer.row_maps])
    layer.cells = np.concatenate([np.zeros((1, 16, 16), np.uint8), layer.cells])
    perf = analyze_layer(layer, CONFIG, 1)
    base = analyze_layer(hand_layer(), CONFIG, 1)
    assert perf.crossbars == 3 and perf.active_crossbars == 2
    assert perf.reduction_transfers == base.reduction_transfers
    assert perf.cycles == base.cycles
    assert perf.energy_pj == base.energy_pj


def test_energy_breakdown_sums_and_prices():
    V = 9
    perf = analyze(Program(CONFIG, "hand", [hand_layer()]), hand_model("conv")).layers[0]
    assert set(perf.energy_pj) == set(ENERGY_COMPONENTS)
    assert perf.total_energy_pj == pytest.approx(sum(perf.energy_pj.values()))
    assert all(value >= 0 for value in perf.energy_pj.values())
    assert perf.energy_pj["adc"] == pytest.approx(V * 18 * adc_energy_pj(3))
    assert perf.energy_pj["dac"] == pytest.approx(V * 32 * 0.417)
    assert perf.energy_pj["shift_add"] == pytest.approx(V * 18 * 0.021)
    assert perf.energy_pj["crossbar"] == pytest.approx(V * 60 * ISAAC_COSTS.crossbar_cell_pj)
    assert perf.energy_pj["reduction"] == pytest.approx(
        V * 3 * (CONFIG.acc_bits * 20.74 / 256 + 0.021))
    assert perf.energy_pj["edram"] == pytest.approx(V * (6 * 4 + 2 * 4) * 20.45 / 256)


def test_isaac_derived_constants():
    # 2.4 mW for 8 crossbars over a 100 ns cycle = 30 pJ per full 128 x 128 read.
    assert ISAAC_COSTS.crossbar_cell_pj * 128 * 128 == pytest.approx(30.0)
    # 1.24 mW input register, 1024 row bits per 100 ns cycle.
    assert ISAAC_COSTS.input_register_bit_pj == pytest.approx(0.1211, rel=1e-3)
    assert ISAAC_COSTS.output_register_pj == pytest.approx(0.02246, rel=1e-3)


def test_adc_energy_table_and_extrapolation():
    for bits, value in ADC_ENERGY_PJ.items():
        assert adc_energy_pj(bits) == value
    values = [adc_energy_pj(bits) for bits in range(1, 13)]
    assert all(b > a > 0 for a, b in zip(values, values[1:]))
    assert adc_energy_pj(3) == pytest.approx(0.59)
    assert adc_energy_pj(11) == pytest.approx(2.38 * 2.38 / 1.97)
    with pytest.raises(ValueError, match="adc bits"):
        adc_energy_pj(0)


def test_area_scales_with_units_and_adcs():
    bwq = unit_area_mm2(preset("bwq"))
    isaac = unit_area_mm2(preset("isaac"))
    assert set(bwq) == set(AREA_COMPONENTS)
    # ISAAC preset: one 8-bit ADC per crossbar, i.e. exactly ISAAC's per-crossbar share.
    assert isaac["adc"] == pytest.approx(0.0096 / 8)
    assert bwq["adc"] == pytest.approx(8 * 0.0096 / 8 * 0.79 / 1.667)
    program = Program(CONFIG, "hand", [hand_layer()])
    report = analyze(program, hand_model())
    unit = unit_area_mm2(CONFIG)
    for key in AREA_COMPONENTS:
        assert report.area_mm2[key] == pytest.approx(unit[key] * CONFIG.n_xbars)
        assert report.used_area_mm2[key] == pytest.approx(unit[key] * 2)


def test_bound_from_weights_is_below_actual():
    from bitline.sw.integer.qmodel import ActParams, QuantizedModel, QuantLayer
    from bitline.sw.quant.tensor import QuantizedTensor

    model = hand_model("conv")
    weight = np.array([[1, 0, 3, 0, 0, 1], [0, -2, 0, 0, 1, 0]], dtype=np.int64)
    qlayer = QuantLayer(
        layer=model.layers[0], inputs=[ActParams(4, 0.1)], output=ActParams(4, 0.1),
        weight=QuantizedTensor(weight.reshape(2, 6, 1, 1), np.ones((2, 1, 1, 1))),
    )
    qmodel = QuantizedModel(model, ActParams(4, 0.1), {"fc": qlayer})
    report = analyze(Program(CONFIG, "hand", [hand_layer()]), qmodel)
    layer = report.layers[0]
    digits = 1 + 2 + 1 + 1 + 1                 # popcounts of the magnitudes
    capacity = CONFIG.exact_rows_per_ou * CONFIG.ou_cols
    bound_reads = -(-digits * 4 // capacity)   # 4 slices each
    assert layer.bound_reads == 9 * bound_reads
    bound_unit = -(-bound_reads // CONFIG.n_xbars)
    assert layer.bound_cycles == job_cycles(6, 2, 9, bound_unit * 2)
    assert layer.bound_cycles <= layer.cycles
    assert layer.bound_reads <= layer.ou_reads
    assert 0 < report.efficiency <= 1
    # eDRAM: inputs at 4 bits, outputs at the output tensor's 4 bits.
    assert layer.energy_pj["edram"] == pytest.approx(9 * (6 * 4 + 2 * 4) * 20.45 / 256)


def test_bwq_activation_blocks_shrink_the_bound():
    layer = hand_layer()
    full = analyze_layer(layer, CONFIG, 1, weight=np.ones((2, 6), np.int64))
    low = analyze_layer(layer, CONFIG, 1, weight=np.ones((2, 6), np.int64),
                        act_block_bits=np.array([2, 1]))
    # 12 digits x 4 slices = 48 -> 3 reads; 8 digits x 2 + 4 digits x 1 = 20 -> 2 reads
    assert full.bound_reads == 3 and low.bound_reads == 2


def test_report_totals_and_dict():
    program = Program(CONFIG, "hand", [hand_layer("a"), hand_layer("b")])
    layer_a = Layer("a", "gemm", ["x"], "h", (6,), (2,), weight=np.ones((2, 6), np.float32))
    layer_b = Layer("b", "gemm", ["h"], "y", (6,), (2,), weight=np.ones((2, 6), np.float32))
    model = Model("two", "x", (6,), [layer_a, layer_b], "y")
    report = analyze(program, model, labels={"weights": "synthetic"})
    assert report.ou_reads == 20 and report.adc_conversions == 36
    assert report.cycles == 2 * report.layers[0].cycles
    assert report.total_energy_pj == pytest.approx(sum(report.energy_pj.values()))
    assert report.total_energy_pj == pytest.approx(
        sum(layer.total_energy_pj for layer in report.layers))
    data = report.to_dict()
    assert data["totals"]["cycles"] == report.cycles
    assert data["labels"] == {"weights": "synthetic"}
    assert len(data["layers"]) == 2
    assert len(report.tables()) == 3


def test_layer_vectors():
    assert layer_vectors(hand_model("conv").layers[0]) == 9
    assert layer_vectors(hand_model("gemm").layers[0]) == 1


def test_user_errors():
    layer = hand_layer()
    with pytest.raises(ValueError, match="n_vectors"):
        analyze_layer(layer, CONFIG, 0)
    layer.entries[2]["xbar"] = 2
    with pytest.raises(ValueError, match="crossbar 2"):
        analyze_layer(layer, CONFIG, 1)
    other = Model("other", "x", (6,), [], "x")
    with pytest.raises(ValueError, match="not a compute layer"):
        analyze(Program(CONFIG, "hand", [hand_layer()]), other)


@pytest.fixture(scope="module")
def digits_int8():
    pytest.importorskip("sklearn")
    from bitline.sw.datasets import load_dataset
    from bitline.sw.models import resolve_model
    from bitline.sw.quant import quantize_model

    model = resolve_model("digits-cnn")
    calib = load_dataset("digits", "calib")[0]
    return quantize_model(model, "int8", calib, preset("bwq")), load_dataset("digits", "test")[0][:2]


@pytest.mark.parametrize("strategy", ["isaac", "ivq-naive", "ivq-spatial", "ivq-temporal", "bwq"])
def test_executor_counters_equal_model_counts(strategy, digits_int8):
    """The crossbar-level executor counts the same events as the static model."""
    executor = pytest.importorskip("bitline.sim.executor")
    from bitline.sw.mapping import map_model

    qmodel, x = digits_int8
    program = map_model(qmodel, preset("bwq"), strategy, xbars="auto")
    report = analyze(program, qmodel)
    counters = executor.Counters()
    executor.run_executor(program, qmodel, x, counters=counters)
    samples = len(x)
    for layer in report.layers:
        assert counters.ou_reads[layer.name] == samples * layer.ou_reads
        assert counters.adc_conversions[layer.name] == samples * layer.adc_conversions
        assert counters.job_compute_cycles(layer.name) == (
            samples * layer.n_vectors * layer.max_unit_reads * program.config.conversions_per_read)
        assert layer.bound_reads <= layer.ou_reads
        assert layer.bound_cycles <= layer.cycles
    assert report.total_energy_pj == pytest.approx(sum(report.energy_pj.values()))
