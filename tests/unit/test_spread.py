"""Spread placements (docs/mapping.md, "Spread placements"): valid programs that the executor
runs exactly, fewer reads on the busiest unit, counts without cells equal to the assembled
program's, the allocator's choice in the compile flow, the bundle and compare.

Exactness is checked against the true integer arithmetic ``x @ W.T`` and the golden model
(the golden rule), read counts against the OU entries themselves.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.configs import small_config
from support.networks import mixed_ops_model
from support.strategies import configs

from bitline.hw.spec.config import preset
from bitline.hw.spec.program import Program
from bitline.hw.spec.validate import validate_program
from bitline.sim.executor import IdealDevice, execute_layer, run_executor
from bitline.sim.golden import run_golden
from bitline.sw.mapping import (
    STRATEGIES, map_matrix, map_model, reconstruct_matrix, relocate, spread_counts,
)
from bitline.sw.mapping.layout import Spread, usable_row_groups
from bitline.sw.perf import analyze, analyze_layer
from bitline.sw.perf.pipeline import Budget, pipeline_report, variant_placement
from bitline.sw.quant import quantize_model


def _unit_reads(layer) -> dict[int, int]:
    """OU reads per vector of every unit, summed from the entries (one read per slice)."""
    reads: dict[int, int] = {}
    for unit, lo, hi in zip(layer.entries["xbar"].tolist(), layer.entries["slice_lo"].tolist(),
                            layer.entries["slice_hi"].tolist()):
        reads[unit] = reads.get(unit, 0) + hi - lo
    return reads


def _weights(rng, n_out, n_in, top=7, zeros=0.3):
    weight = rng.integers(-top, top + 1, (n_out, n_in))
    weight[rng.random(weight.shape) < zeros] = 0
    return weight


@settings(max_examples=40, deadline=None)
@given(config=configs(acc_bits=40), n_out=st.integers(1, 24), n_in=st.integers(1, 60),
       factor=st.integers(2, 5), strategy=st.sampled_from(STRATEGIES),
       seed=st.integers(0, 2**32 - 1))
def test_spread_program_is_valid_and_exact(config, n_out, n_in, factor, strategy, seed):
    rng = np.random.default_rng(seed)
    weight = _weights(rng, n_out, n_in)
    x = rng.integers(0, 256, (4, n_in))
    layer = map_matrix(weight, config, strategy, act_bits=8, spread=factor, xbar_offset=2)
    assert np.array_equal(reconstruct_matrix(layer, config), weight)
    for shortcut in (True, False):
        acc = execute_layer(layer, config, x, device=IdealDevice(config, shortcut=shortcut))
        assert np.array_equal(acc, x @ weight.T)
    sized = config.replace(n_xbars=max(1, 2 + len(layer.xbars)),
                           max_entries=max(1, len(layer.entries)))
    validate_program(Program(sized, strategy, [layer]))
    # The cap: a unit holds at most ceil(G / s) row groups, or ceil(column groups / s).
    spread = Spread(factor, layer.stats.get("spread_axis", "rows"))
    for unit in np.unique(layer.entries["xbar"]):
        mine = layer.entries[layer.entries["xbar"] == unit]
        if spread.axis == "rows":
            assert len(np.unique(mine["row_group"])) <= spread.row_groups(config)
        else:
            assert len(np.unique(mine["col_group"])) <= -(-config.col_groups // factor)


BIG = [(10, 512), (64, 27), (128, 1152), (256, 600)]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_spread_reduces_the_busiest_units_reads(strategy):
    config = preset("bwq")
    rng = np.random.default_rng(7)
    for n_out, n_in in BIG:
        weight = _weights(rng, n_out, n_in)
        busiest = {}
        for factor in (1, 2, 4):
            layer = map_matrix(weight, config, strategy, act_bits=8, spread=factor)
            reads = _unit_reads(layer)
            busiest[factor] = max(reads.values())
            assert layer.stats["busiest_unit_reads"] == busiest[factor]
            assert sum(reads.values()) == layer.stats["ou_reads_per_vector"]
            assert layer.stats.get("placement", "dense") == (
                "dense" if factor == 1 else f"spread-{factor}")
        # Each factor at least halves nothing it cannot: never more reads, and a layer that
        # fills more than one unit reads strictly less on its busiest one.
        assert busiest[4] <= busiest[2] <= busiest[1], (n_out, n_in, busiest)
        if n_in * n_out >= 512 * 10:
            assert busiest[2] < busiest[1] and busiest[4] < busiest[2], (n_out, n_in, busiest)


def test_spread_axis_follows_the_layout():
    """A first conv (three row chunks) can only shrink under the column cap; a classifier
    with few columns only under the row cap."""
    config = preset("bwq")
    rng = np.random.default_rng(3)
    conv = map_matrix(_weights(rng, 64, 27), config, "isaac", act_bits=8, spread=2)
    assert conv.stats["spread_axis"] == "cols"
    fc = map_matrix(_weights(rng, 10, 512), config, "isaac", act_bits=8, spread=2)
    assert fc.stats["spread_axis"] == "rows"
    assert usable_row_groups(config) == 14      # 128 rows, 9-row OUs: 14 full groups


@pytest.fixture(scope="module")
def quantized():
    model = mixed_ops_model(seed=3)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(4, *model.input_shape)).astype(np.float32)
    config = small_config(rows=32, cols=32, ou_rows=8, ou_cols=8, adcs_per_xbar=8,
                          adc_bits=6, max_act_bits=8, max_weight_bits=8, acc_bits=32,
                          max_in_features=512, max_out_channels=64, max_layers=16,
                          max_entries=100000, n_xbars=64)
    return model, x, config, quantize_model(model, "int8", x, config)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_spread_network_runs_like_golden(quantized, strategy):
    model, x, config, qmodel = quantized
    spread = {qlayer.layer.name: 2 + index % 3
              for index, qlayer in enumerate(qmodel.compute_layers)}
    program = map_model(qmodel, config, strategy, xbars="auto", spread=spread)
    validate_program(program)
    dense = map_model(qmodel, config, strategy, xbars="auto")
    assert program.xbars_used >= dense.xbars_used
    golden = run_golden(qmodel, x, return_all=True)
    result = run_executor(program, qmodel, x, return_all=True)
    for name, out in golden.layers.items():
        assert np.array_equal(result.layers[name], out), name
    with pytest.raises(ValueError, match="no compute layer 'nope'"):
        map_model(qmodel, config, strategy, xbars="auto", spread={"nope": 2})


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_counts_without_cells_equal_the_assembled_program(quantized, strategy):
    """spread_counts + variant_placement (what compare prices) against the spread program
    mapped, assembled and analyzed like any program."""
    model, x, config, qmodel = quantized
    dense = map_model(qmodel, config, strategy, xbars="auto")
    report = analyze(dense, qmodel)
    checked = 0
    for qlayer, perf in zip(qmodel.compute_layers, report.layers):
        counts = spread_counts(qlayer, config, strategy, (2, 3))
        for factor, count in counts.items():
            program = map_model(qmodel, config, strategy, xbars="auto",
                                spread={qlayer.layer.name: factor})
            layer = program.layer(qlayer.layer.name)
            real = analyze(program, qmodel).layers[[p.name for p in program.layers].index(
                layer.name)]
            assert count.units == len(layer.xbars) == real.crossbars
            assert count.entries == len(layer.entries)
            assert int(count.unit_reads.max(initial=0)) == real.max_unit_reads
            assert count.dac_conversions * real.n_vectors == real.dac_conversions
            assert count.reduction_transfers * real.n_vectors == real.reduction_transfers
            placement = variant_placement(perf, f"spread-{factor}", count, config)
            assert placement.energy_pj == pytest.approx(real.total_energy_pj, rel=1e-12)
            assert placement.compute_cycles == real.max_unit_reads * config.conversions_per_read
            checked += 1
    assert checked == 2 * len(qmodel.compute_layers)


def test_relocate_moves_units_and_entries(quantized):
    model, x, config, qmodel = quantized
    program = map_model(qmodel, config, "bwq", xbars="auto")
    layer = program.layers[1]
    moved = relocate(layer, 100)
    assert moved.xbars.tolist() == list(range(100, 100 + len(layer.xbars)))
    assert np.array_equal(moved.entries["xbar"] - 100,
                          layer.entries["xbar"] - layer.xbars[0])
    assert moved.cells is layer.cells and layer.xbars[0] != 100      # the original is kept


def test_compile_flow_applies_the_chosen_placements(quantized, tmp_path):
    """allocate_copies with spread: the program carries each layer's chosen placement and
    copies, validates, survives the bundle, runs like golden, and its timing is the
    allocator's."""
    from bitline.sw.bundle import read_bundle, write_bundle
    from bitline.sw.flow.compile import CompileResult, allocate_copies

    model, x, config, qmodel = quantized
    program = map_model(qmodel, config, "ivq-temporal", xbars="auto")
    result = CompileResult(qmodel, program, program.config, (), 0.0, 0.0, 0.0)
    budget = Budget("xbars", 3 * program.xbars_used)
    copied, pipe = allocate_copies(result, budget)
    dense_only = pipeline_report(analyze(program, qmodel), budget)
    assert pipe.bottleneck_cycles <= dense_only.bottleneck_cycles
    spread = {name: label for name, label in pipe.placements.items() if label != "dense"}
    assert spread, pipe.placements          # the gemms (V = 1) are worth spreading here
    assert pipe.units <= budget.amount
    validate_program(copied.program)
    for layer in copied.program.layers:
        assert layer.stats.get("placement", "dense") == pipe.placements[layer.name]
        assert layer.copies == pipe.copies[layer.name]
    # Every layer job's cycles (with its placement and copies) is the allocator's stage.
    timed = analyze(copied.program, qmodel)
    assert [layer.cycles for layer in timed.layers] == list(pipe.allocation.stage_cycles)
    assert timed.total_energy_pj == pytest.approx(pipe.energy_per_image_pj, rel=1e-12)
    write_bundle(tmp_path / "b", copied.program, qmodel)
    bundle = read_bundle(tmp_path / "b")
    assert {layer.name: layer.stats.get("placement", "dense")
            for layer in bundle.program.layers} == pipe.placements
    assert np.array_equal(run_executor(bundle.program, bundle.qmodel, x).output_int,
                          run_golden(qmodel, x).output_int)
    # Without spread the flow is the dense allocation.
    _, plain = allocate_copies(result, budget, spread=False)
    assert set(plain.placements.values()) == {"dense"}
    assert plain.bottleneck_cycles == dense_only.bottleneck_cycles
