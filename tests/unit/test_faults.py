"""Fault-aware mapping (bitline.sw.mapping.faults): exactness, counts, stuck maps, errors."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from bitline.hw.spec.config import AcceleratorConfig, preset
from bitline.hw.spec.program import Program, entry_columns
from bitline.hw.spec.validate import validate_program
from bitline.sim.analog import AnalogDevice, chip_stuck_map, parse_chip_spec
from bitline.sim.analog_params import AnalogParams
from bitline.sim.executor import execute_layer
from bitline.sw.mapping import STRATEGIES, map_matrix, relocate
from bitline.sw.mapping.faults import StuckMap, count_faults, fault_aware

BWQ = preset("bwq")
#: 2-bit cells, 30 rows (a short last row group) and 36 columns (a short last column group).
MULTI = AcceleratorConfig(rows=30, cols=36, cell_bits=2, dac_bits=2, ou_rows=9, ou_cols=8,
                          adc_bits=6, adcs_per_xbar=4, n_xbars=64)


def random_program(config, strategy, *, seed=3, layers=((12, 40), (20, 70))):
    """A two-layer program of random sparse INT6 matrices, and the matrices."""
    rng = np.random.default_rng(seed)
    programs, matrices, offset = [], [], 0
    for index, (n_out, n_in) in enumerate(layers):
        matrix = rng.integers(-31, 32, size=(n_out, n_in)) * (rng.random((n_out, n_in)) < 0.6)
        # Zero a few whole rows and blocks: hollows and pruned blocks.
        matrix[:, : n_in // 5] = 0
        layer = map_matrix(matrix, config, strategy, act_bits=8, name=f"l{index}",
                           xbar_offset=offset)
        programs.append(layer)
        matrices.append(matrix)
        offset += len(layer.xbars)
    return Program(config=config.replace(n_xbars=max(offset, 1)), strategy=strategy,
                   layers=programs), matrices


def random_stuck(config, n_units, rate, seed=0):
    rng = np.random.default_rng(seed)
    stuck = rng.integers(0, config.level_max + 1, size=(n_units, config.rows, config.cols))
    return np.where(rng.random(stuck.shape) < rate, stuck, -1).astype(np.int8)


def direct_count(layer, config, stuck):
    """Wrong read cells counted entry by entry, column by column (no shared helpers)."""
    desc = entry_columns(layer.entries, config.ou_cols)
    units = [layer.copy_units(k) for k in range(layer.copies)]
    local = {int(unit): index for index, unit in enumerate(layer.xbars)}
    wrong = 0
    for e, entry in enumerate(layer.entries):
        x = local[int(entry["xbar"])]
        for j in range(config.ou_cols):
            if not desc["valid"][e, j]:
                continue
            col = int(entry["col_group"]) * config.ou_cols + j
            for r in range(int(entry["row_group"]) * config.ou_rows,
                           min((int(entry["row_group"]) + 1) * config.ou_rows, config.rows)):
                if layer.row_maps[x, r] < 0:
                    continue
                for copy in units:
                    level = stuck[int(copy[x]), r, col]
                    wrong += int(level >= 0 and level != layer.cells[x, r, col])
    return wrong


@pytest.mark.parametrize("config", [BWQ, MULTI], ids=["bwq", "multi"])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_placed_program_is_exact_and_has_fewer_wrong_cells(config, strategy):
    program, matrices = random_program(config, strategy)
    stuck = random_stuck(config, program.config.n_xbars, 0.05)
    placed, report = fault_aware(program, StuckMap(stuck, "test"))
    validate_program(placed, placed.config)
    x = np.random.default_rng(1).integers(0, 256, size=(15, 70))
    for layer, new, matrix, faults in zip(program.layers, placed.layers, matrices, report):
        cols = x[:, : layer.n_inputs]
        # Exact on a healthy chip: the same accumulators as the matrix product.
        assert np.array_equal(execute_layer(new, config, cols), cols @ matrix.T)
        # Counts: never worse, and equal to a direct count from the cells and the map.
        assert faults.wrong_after <= faults.wrong_before
        assert faults.error_after <= faults.error_before
        assert direct_count(layer, config, stuck) == faults.wrong_before
        assert direct_count(new, config, stuck) == faults.wrong_after
    assert sum(f.wrong_after for f in report) < sum(f.wrong_before for f in report)


def test_stuck_device_equals_cells_replaced_by_their_stuck_levels():
    """What the counts call a wrong cell is what the analog model reads: the executor on a
    stuck chip equals the ideal executor on cells overwritten by the stuck levels."""
    program, _ = random_program(BWQ, "ivq-naive")
    stuck = random_stuck(BWQ, program.config.n_xbars, 0.05, seed=4)
    device = AnalogDevice(BWQ, stuck=stuck)
    x = np.random.default_rng(2).integers(0, 256, size=(10, 70))
    for layer in program.layers:
        here = stuck[np.asarray(layer.xbars)]
        cells = np.where(here >= 0, here, layer.cells).astype(layer.cells.dtype)
        want = execute_layer(replace(layer, cells=cells), BWQ, x[:, : layer.n_inputs])
        got = execute_layer(layer, BWQ, x[:, : layer.n_inputs], device=device)
        assert np.array_equal(got, want)


def test_chip_stuck_map_is_the_analog_models_own_draw():
    program, _ = random_program(BWQ, "bwq")
    n_units = program.config.n_xbars
    stuck_map = chip_stuck_map(BWQ, "chip:7:0.04", n_units)
    drawn = AnalogDevice(BWQ, AnalogParams(stuck_at_0=0.02, stuck_at_1=0.02), seed=7)
    from_map = AnalogDevice(BWQ, stuck=stuck_map.stuck)
    x = np.random.default_rng(3).integers(0, 256, size=(8, 70))
    for layer in program.layers:
        cols = x[:, : layer.n_inputs]
        assert np.array_equal(execute_layer(layer, BWQ, cols, device=drawn),
                              execute_layer(layer, BWQ, cols, device=from_map))
    rate = np.mean(stuck_map.stuck >= 0)
    assert 0.03 < rate < 0.05
    assert set(np.unique(stuck_map.stuck).tolist()) == {-1, 0, 1}
    assert parse_chip_spec("chip:3:0.01:0.03") == (3, 0.01, 0.03)


def test_copies_are_counted_on_every_copys_units():
    program, _ = random_program(BWQ, "isaac", layers=((10, 30),))
    layer = program.layers[0]
    n = len(layer.xbars)
    copy = replace(relocate(layer, 0), copy_xbars=np.arange(n, 2 * n)[None, :])
    program = Program(BWQ.replace(n_xbars=2 * n), "isaac", [copy])
    stuck = random_stuck(BWQ, 2 * n, 0.05, seed=9)
    placed, report = fault_aware(program, StuckMap(stuck))
    validate_program(placed, placed.config)
    assert direct_count(copy, BWQ, stuck) == report[0].wrong_before
    assert direct_count(placed.layers[0], BWQ, stuck) == report[0].wrong_after
    assert report[0].wrong_after <= report[0].wrong_before


def test_count_faults_ignores_unread_cells():
    """Stuck cells on rows, columns and OUs nothing reads cost nothing."""
    program, _ = random_program(BWQ, "bwq", layers=((4, 9),))
    layer = program.layers[0]
    stuck = np.full((1, BWQ.rows, BWQ.cols), -1, dtype=np.int8)
    stuck[0, BWQ.rows - 1, :] = 1                    # last row: never a chunk row
    stuck[0, :, BWQ.cols - 1] = 1                    # last column: nothing placed there
    _, read, wrong, _ = count_faults(layer, BWQ, stuck[None])
    assert read == wrong == direct_count(layer, BWQ, stuck) == 0


def read_cells(layer, config):
    """``(x, row, col, sign, shift)`` of every read cell, entry by entry (test-only loop)."""
    desc = entry_columns(layer.entries, config.ou_cols)
    local = {int(unit): index for index, unit in enumerate(layer.xbars)}
    found = []
    for e, entry in enumerate(layer.entries):
        x = local[int(entry["xbar"])]
        for j in np.flatnonzero(desc["valid"][e]):
            col = int(entry["col_group"]) * config.ou_cols + int(j)
            rows = range(int(entry["row_group"]) * config.ou_rows,
                         min((int(entry["row_group"]) + 1) * config.ou_rows, config.rows))
            found += [(x, r, col, int(desc["sign"][e, j]), int(desc["shift"][e, j]))
                      for r in rows if layer.row_maps[x, r] >= 0]
    return found


def test_reencoding_rights_stuck_ones_in_a_hollow_bit_plane():
    """ivq-naive reads its high bit planes even where every weight is small: a stuck-at-1
    there cannot be permuted away (no 1 to put on it), but the same digit of the other sign
    cancels it, so the placed program is exact on the faulty chip."""
    rng = np.random.default_rng(5)
    matrix = rng.integers(-3, 4, size=(6, 18))
    matrix[0, 0] = 31                                   # 5 digits; planes 2..4 hollow
    layer = map_matrix(matrix, BWQ, "ivq-naive", act_bits=8, name="l")
    program = Program(BWQ.replace(n_xbars=len(layer.xbars)), "ivq-naive", [layer])
    stuck = np.full((len(layer.xbars), BWQ.rows, BWQ.cols), -1, dtype=np.int8)
    hollow = [(x, r, c) for x, r, c, _, shift in read_cells(layer, BWQ)
              if shift >= 2 and layer.cells[x, r, c] == 0]
    for x, r, c in hollow[::7]:
        stuck[x, r, c] = 1
    placed, report = fault_aware(program, StuckMap(stuck, "test"))
    assert report[0].wrong_before == len(hollow[::7]) > 10
    assert report[0].wrong_after == direct_count(placed.layers[0], BWQ, stuck) == 0
    x_in = rng.integers(0, 256, size=(12, 18))
    device = AnalogDevice(BWQ, stuck=stuck)
    assert np.array_equal(execute_layer(placed.layers[0], BWQ, x_in, device=device),
                          x_in @ matrix.T)
    assert not np.array_equal(execute_layer(layer, BWQ, x_in, device=device), x_in @ matrix.T)


@pytest.mark.parametrize("config", [BWQ, MULTI], ids=["bwq", "multi"])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_reencoding_lowers_wrong_cells_and_bounds_the_faulty_chips_error(
        config, strategy, monkeypatch):
    """On a seeded chip, placement plus re-encoding leaves fewer wrong cells than placement
    alone (never more, per layer); the weights the faulty chip computes with (the placed
    cells overwritten by their stuck levels, rebuilt by the mappers' inverse) differ from
    the matrix by at most the reported weighted error, and not at all where no wrong cell
    is left."""
    from bitline.sw.mapping import faults, reconstruct_matrix

    program, matrices = random_program(config, strategy, seed=11)
    stuck = chip_stuck_map(config, "chip:2:0.03", program.config.n_xbars).stuck \
        if config is BWQ else random_stuck(config, program.config.n_xbars, 0.03, seed=2)
    placed, report = fault_aware(program, StuckMap(stuck))
    monkeypatch.setattr(faults, "reencode", lambda layer, *_: layer)
    _, permuted_only = fault_aware(program, StuckMap(stuck))
    for new, matrix, mine, theirs in zip(placed.layers, matrices, report, permuted_only):
        assert mine.wrong_after <= theirs.wrong_after and mine.error_after <= theirs.error_after
        assert direct_count(new, config, stuck) == mine.wrong_after
        here = stuck[np.asarray(new.xbars)]
        faulty = replace(new, cells=np.where(here >= 0, here, new.cells).astype(new.cells.dtype))
        drift = np.abs(reconstruct_matrix(faulty, config) - matrix).sum()
        assert drift <= mine.error_after and (drift == 0 or mine.wrong_after > 0)
    assert sum(f.wrong_after for f in report) < sum(f.wrong_after for f in permuted_only)


def test_reencode_keeps_what_it_cannot_right():
    """A weight whose every digit of both signs is stuck (``p`` at 0, ``n`` at 7 for
    ``w = 5``) has no exact representation: wrong cells remain, never more and never worse
    weighted than as mapped, and the healthy-chip matrix is unchanged."""
    from bitline.sw.mapping import reconstruct_matrix
    from bitline.sw.mapping.reencode import reencode

    matrix = np.array([[5, 0, 2]])
    layer = map_matrix(matrix, BWQ, "ivq-naive", act_bits=8, name="l")
    stuck = np.full((1, 1, BWQ.rows, BWQ.cols), -1, dtype=np.int8)
    cells = [cell for cell in read_cells(layer, BWQ) if layer.row_maps[cell[0], cell[1]] == 0]
    for x, r, c, sign, _ in cells:                      # input 0: 5 = 101, sign columns
        stuck[0, x, r, c] = 0 if sign == 0 else 1       # p stuck at 0, n stuck at 7
    new = reencode(layer, BWQ, stuck)
    assert np.array_equal(reconstruct_matrix(new, BWQ), matrix)
    _, _, wrong, error = count_faults(new, BWQ, stuck)
    _, _, wrong_before, error_before = count_faults(layer, BWQ, stuck)
    assert 0 < wrong <= wrong_before == 5 and error <= error_before


def test_fault_aware_bundle_validates_and_runs_on_the_same_chip(tmp_path):
    """``compile --faults chip:0:0.02`` for ivq-naive: the bundle reads back (validated and
    authenticated), its report's counts are a direct count on the bundle's program, and
    the executor on that chip (the analog model's stuck cells) computes exactly what the
    ideal executor computes on cells overwritten by the stuck levels."""
    pytest.importorskip("sklearn")
    from bitline.sim.executor import run_executor
    from bitline.sw.bundle import read_bundle
    from bitline.sw.datasets import load_dataset
    from bitline.sw.flow import DEFAULT_SPECS, compile_bundle

    chip = lambda config: chip_stuck_map(config, "chip:0:0.02", config.n_xbars)
    _, sidecar = compile_bundle("digits-cnn", "ivq-naive", DEFAULT_SPECS["ivq-naive"], BWQ,
                                tmp_path / "b", dataset="digits", calib_samples=32,
                                faults=chip)
    bundle = read_bundle(tmp_path / "b")
    program = bundle.program
    stuck = chip(program.config).stuck
    rows = sidecar["faults"]["layers"]
    for layer, row in zip(program.layers, rows):
        assert row["layer"] == layer.name
        assert direct_count(layer, BWQ, stuck) == row["wrong_after"]
    total = rows[-1]
    assert total["wrong_after"] * 50 < total["wrong_before"]
    x, _ = load_dataset("digits", "test")
    x = x[:4]
    device = AnalogDevice(program.config, AnalogParams(stuck_at_0=0.01, stuck_at_1=0.01), seed=0)
    overwritten = replace(program, layers=[
        replace(layer, cells=np.where(stuck[layer.xbars] >= 0, stuck[layer.xbars],
                                      layer.cells).astype(layer.cells.dtype))
        for layer in program.layers])
    got = run_executor(program, bundle.qmodel, x, device=device)
    want = run_executor(overwritten, bundle.qmodel, x)
    assert np.array_equal(got.output, want.output)


# ------------------------------------------------------------------------ file format
def test_stuck_map_round_trip(tmp_path):
    stuck = random_stuck(BWQ, 3, 0.1)
    StuckMap(stuck).save(tmp_path / "chip.npz")
    loaded = StuckMap.load(tmp_path / "chip.npz")
    assert np.array_equal(loaded.stuck, stuck) and loaded.source.endswith("chip.npz")


@pytest.mark.parametrize("arrays, message", [
    ({"faults": np.zeros((1, 2, 2), np.int8)}, "field 'stuck' is missing"),
    ({"stuck": np.zeros((1, 2, 2), np.float32)}, "field 'stuck' must be an integer"),
    ({"stuck": np.zeros((2, 2), np.int8)}, "field 'stuck' must be 3-D"),
    ({"stuck": np.full((1, 2, 2), -3, np.int16)}, "field 'stuck' holds"),
])
def test_stuck_map_file_errors_name_file_and_field(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=message) as error:
        StuckMap.load(path)
    assert str(path) in str(error.value)


def test_stuck_map_fit_errors(tmp_path):
    with pytest.raises(ValueError, match="stuck-map file not found"):
        StuckMap.load(tmp_path / "missing.npz")
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(ValueError, match="text.npz: not a"):
        StuckMap.load(tmp_path / "text.npz")
    program, _ = random_program(BWQ, "bwq")
    with pytest.raises(ValueError, match=r"m.npz: field 'stuck' must have shape"):
        fault_aware(program, StuckMap(np.full((9, 8, 8), -1, np.int8), "m.npz"))
    with pytest.raises(ValueError, match=r"m.npz: field 'stuck' describes 1 units"):
        fault_aware(program, StuckMap(np.full((1, BWQ.rows, BWQ.cols), -1, np.int8), "m.npz"))
    bad = np.full((program.config.n_xbars, BWQ.rows, BWQ.cols), -1, np.int8)
    bad[0, 3, 4] = 2
    with pytest.raises(ValueError, match=r"m.npz: field 'stuck'\[0, 3, 4\] = 2"):
        fault_aware(program, StuckMap(bad, "m.npz"))
    for spec in ("chip:x:0.1", "chip:1", "chip:1:2", "chop:1:0.1"):
        with pytest.raises(ValueError, match="--faults"):
            parse_chip_spec(spec)
    with pytest.raises(ValueError, match="not both"):
        AnalogDevice(BWQ, AnalogParams(stuck_at_0=0.1), stuck=bad)


def test_cli_faults_errors_before_compiling(tmp_path, capsys):
    from bitline.sw.cli import main

    base = ["compile", "digits-cnn", "-s", "bwq", "-o", str(tmp_path / "b"), "--faults"]
    assert main(base + [str(tmp_path / "none.npz")]) == 2
    assert "none.npz: stuck-map file not found" in capsys.readouterr().err
    assert main(base + ["chip:1:7"]) == 2
    assert "--faults 'chip:1:7'" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_statistics_stay_those_of_the_cells(strategy):
    """Every mapper statistic equals what assembling the placed cells would count: the
    per-read figures stay, the two that count levels are the placed cells'."""
    from bitline.sw.mapping.faults import _hollow_entries

    program, _ = random_program(BWQ, strategy)
    stuck = random_stuck(BWQ, program.config.n_xbars, 0.05)
    placed, _ = fault_aware(program, StuckMap(stuck))
    for layer, new in zip(program.layers, placed.layers):
        assert _hollow_entries(layer, BWQ) == layer.stats["hollow_entries"]
        assert new.stats["hollow_entries"] == _hollow_entries(new, BWQ)
        # Re-encoding changes levels: nonzero_cells is the placed cells' count.
        assert new.stats["nonzero_cells"] == np.count_nonzero(new.cells)
        recounted = ("hollow_entries", "nonzero_cells")
        assert {k: v for k, v in new.stats.items() if k not in recounted} == {
            k: v for k, v in layer.stats.items() if k not in recounted}
        for key in ("valid", "shift"):
            per_entry = entry_columns(new.entries, BWQ.ou_cols)[key]
            before = entry_columns(layer.entries, BWQ.ou_cols)[key]
            if key == "valid":
                assert np.array_equal(per_entry.sum(1), before.sum(1))


@pytest.mark.slow
def test_digits_cnn_on_a_stuck_chip_predicts_like_the_healthy_one():
    """The digits CNN (bwq) on a seeded chip with 2 % stuck cells: placed for the chip, the
    wrong cells shrink twentyfold and all 45 test images are predicted as on the healthy
    chip (isaac does too, in 35 s; scripts/fault_table.py has every strategy)."""
    strategy = "bwq"
    pytest.importorskip("sklearn")
    from bitline.sim.executor import run_executor
    from bitline.sw.datasets import load_dataset
    from bitline.sw.flow import DEFAULT_SPECS, calibration_inputs, compile_model
    from bitline.sw.models import resolve_model

    model = resolve_model("digits-cnn")
    calib_x, _ = calibration_inputs(model, "digits")
    x, _ = load_dataset("digits", "test")
    x = x[::10]
    compiled = compile_model(model, strategy, DEFAULT_SPECS[strategy], BWQ, calib_x[:32])
    program = compiled.program
    placed, report = fault_aware(
        program, chip_stuck_map(program.config, "chip:0:0.02", program.config.n_xbars))
    assert sum(f.wrong_after for f in report) * 20 < sum(f.wrong_before for f in report)
    chip = AnalogParams(stuck_at_0=0.01, stuck_at_1=0.01)

    def predict(prog, params=None):
        device = AnalogDevice(prog.config, params, seed=0)
        return run_executor(prog, compiled.qmodel, x, device=device).output.argmax(1)

    healthy = predict(program)
    assert np.array_equal(predict(placed), healthy)                 # exact when healthy
    assert np.array_equal(predict(placed, chip), healthy)
