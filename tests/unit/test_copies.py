"""Layer copies: the program's copy map, its records and validation, the bundle round trip,
the executor running copies (same outputs as one copy, cycles of the timing formula)."""

from __future__ import annotations

import copy as copying

import numpy as np
import pytest
from support.configs import small_config
from support.networks import mixed_ops_model

from bitline.hw.core.memories import program_memories
from bitline.hw.spec.program import ProgramError
from bitline.hw.spec.timing import job_cycles, layer_cycles, vector_compute_cycles
from bitline.hw.spec.validate import validate_program
from bitline.sim.analog import AnalogDevice
from bitline.sim.analog_params import AnalogParams
from bitline.sim.executor import Counters, IdealDevice, LayerExecutor, run_executor
from bitline.sim.golden import run_golden
from bitline.sw.bundle import BundleError, read_bundle, write_bundle
from bitline.sw.mapping import STRATEGIES, map_matrix, map_model
from bitline.sw.quant import quantize_model


@pytest.fixture(scope="module")
def mapped():
    """The mixed-ops model quantized to int8 and its calibration inputs."""
    model = mixed_ops_model(seed=3)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(6, *model.input_shape)).astype(np.float32)
    config = small_config(rows=32, cols=32, ou_rows=8, ou_cols=8, adcs_per_xbar=8,
                          adc_bits=6, max_act_bits=8, max_weight_bits=8, acc_bits=32,
                          max_in_features=512, max_out_channels=64, max_layers=16,
                          max_entries=100000, n_xbars=64)
    return model, x, config


def _program(mapped, strategy):
    model, x, config = mapped
    qmodel = quantize_model(model, "int8", x, config)
    return map_model(qmodel, config, strategy, xbars="auto"), qmodel


def test_with_copies_places_fresh_units(mapped):
    program, _ = _program(mapped, "isaac")
    first, second = program.layers[0], program.layers[1]
    copied = program.with_copies({first.name: 3, second.name: 2})
    used = program.xbars_used
    assert [layer.copies for layer in copied.layers[:2]] == [3, 2]
    assert copied.xbars_used == used + 2 * len(first.xbars) + len(second.xbars)
    every = np.concatenate([layer.all_xbars for layer in copied.layers])
    assert len(set(every.tolist())) == len(every)            # units distinct
    assert copied.config.n_xbars >= int(every.max()) + 1
    assert np.array_equal(copied.layers[0].copy_units(0), first.xbars)
    tables = validate_program(copied)
    # One cell image per copy: a CELLS record for every unit of every copy, identical.
    assert len(tables.cell_units) == copied.xbars_used
    sources = tables.copy_of[copied.layers[0].copy_units(2)]
    assert np.array_equal(sources, first.xbars)
    with pytest.raises(ValueError, match="no layer 'nope'"):
        program.with_copies({"nope": 2})
    with pytest.raises(ValueError, match="at least 1 copy"):
        program.with_copies({first.name: 0})


def test_validator_rejects_bad_copies(mapped):
    program, _ = _program(mapped, "isaac")
    first, second = program.layers[0], program.layers[1]
    copied = program.with_copies({first.name: 2})
    # A copy unit already owned by another layer.
    bad = copying.deepcopy(copied)
    bad.layers[0].copy_xbars[0, 0] = second.xbars[0]
    with pytest.raises(ProgramError, match="already owned"):
        validate_program(bad)
    # A copy map of the wrong shape.
    bad = copying.deepcopy(copied)
    bad.layers[0].copy_xbars = bad.layers[0].copy_xbars[:, :0]
    with pytest.raises(ProgramError, match="copy_xbars must be an integer array of shape"):
        validate_program(bad)
    # Records whose copy holds other cells than its source.
    tables = validate_program(copied)
    unit = int(copied.layers[0].copy_units(1)[0])
    record = int(np.flatnonzero(tables.cell_units == unit)[0])
    tables.cells[record] = (tables.cells[record] + 1) % (copied.config.level_max + 1)
    with pytest.raises(ProgramError, match="differ from those of unit"):
        validate_program(tables)


def test_bundle_round_trip_with_copies(mapped, tmp_path):
    program, qmodel = _program(mapped, "ivq-temporal")
    copied = program.with_copies({program.layers[0].name: 3, program.layers[2].name: 2})
    write_bundle(tmp_path, copied, qmodel)
    bundle = read_bundle(tmp_path)
    for written, read in zip(copied.layers, bundle.program.layers):
        assert read.copies == written.copies
        for index in range(written.copies):
            assert np.array_equal(read.copy_units(index), written.copy_units(index))
        assert np.array_equal(read.cells, written.cells)
    # A manifest whose copy map disagrees with the image is refused.
    manifest = (tmp_path / "manifest.json").read_text()
    import json
    data = json.loads(manifest)
    data["program"][0]["copies"] = data["program"][0]["copies"][:1]
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match="disagree with image.bin"):
        read_bundle(tmp_path)
    # The same units in other copies: the image's own copy map (lanes, sources) refuses it.
    data = json.loads(manifest)
    first, second = data["program"][0]["copies"]
    data["program"][0]["copies"] = [second, first]
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match=r"disagree with image.bin's copy map \(LAYERS "
                                          r"record 0 field lanes, CELLS field source\) for "
                                          r"copy 1"):
        read_bundle(tmp_path)


def test_image_carries_the_copy_map(mapped):
    """LAYERS lanes and CELLS sources round-trip through image.bin (the loader's view)."""
    from bitline.sw.bundle import encode_image, parse_image

    program, _ = _program(mapped, "bwq")
    copied = program.with_copies({program.layers[0].name: 3})
    parsed = parse_image(encode_image(copied), copied.config)
    layer = copied.layers[0]
    for copy in range(3):
        assert parsed.lanes[0][layer.copy_units(copy)].tolist() == [copy] * len(layer.xbars)
        expected = [-1] * len(layer.xbars) if copy == 0 else layer.xbars.tolist()
        assert parsed.copy_of[layer.copy_units(copy)].tolist() == expected
    assert not parsed.lanes[1:].any()


def test_hardware_runs_copies_up_to_max_copies(mapped):
    program, _ = _program(mapped, "isaac")
    layer = program.layers[0]
    copied = program.with_copies({layer.name: 2})
    assert copied.config.max_copies == 2 and program.config.max_copies == 1
    memories = program_memories(copied.config, copied.layers)
    # a copy unit holds the entries of the unit it copies (as the loader writes them)
    for source, unit in zip(layer.xbars.tolist(), copied.layers[0].copy_units(1).tolist()):
        assert memories.units[unit].entries == memories.units[source].entries
        assert np.array_equal(memories.units[unit].cells, memories.units[source].cells)
    with pytest.raises(ProgramError, match=r"field lanes: 2 copies, the hardware runs at most "
                                           r"max_copies = 1"):
        program_memories(copied.config.replace(max_copies=1), copied.layers)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_copies_run_like_one_copy(mapped, strategy):
    program, qmodel = _program(mapped, strategy)
    _, x, _ = mapped
    copies = {layer.name: 1 + index % 3 for index, layer in enumerate(program.layers)}
    copied = program.with_copies(copies)
    golden = run_golden(qmodel, x).output
    for shortcut in (True, False):
        single = run_executor(program, qmodel, x,
                              device=IdealDevice(program.config, shortcut=shortcut))
        many = run_executor(copied, qmodel, x,
                            device=IdealDevice(copied.config, shortcut=shortcut))
        assert np.array_equal(many.output, single.output)
        assert np.array_equal(many.output, golden)


def test_copies_read_their_own_units():
    """Each copy reads its share on its own units: a device keyed by unit sees them."""
    config = small_config(n_xbars=64, max_act_bits=8)
    rng = np.random.default_rng(1)
    matrix = rng.integers(-7, 8, size=(6, 30))
    layer = map_matrix(matrix, config, "isaac", act_bits=4)
    width = len(layer.xbars)
    x = rng.integers(0, 16, size=(9, 30))
    seen = []

    class Recorder(IdealDevice):
        def read(self, xbar, rows, cols, slice_inputs, levels):
            seen.append(frozenset(np.asarray(xbar).tolist()))
            return super().read(xbar, rows, cols, slice_inputs, levels)

    one_copy = copying.deepcopy(layer)
    layer.copy_xbars = np.arange(10, 10 + 2 * width).reshape(2, width)
    acc = LayerExecutor(layer, config).run(x, Recorder(config, shortcut=False))
    assert np.array_equal(acc, x @ matrix.T)
    assert set().union(*seen) == set(layer.all_xbars.tolist())
    # Per-cell programming variation is drawn per unit: copy 0's share (vectors 0-2) reads
    # the same cells as the single copy, the other shares read other (perturbed) cells.
    device = AnalogDevice(config, AnalogParams(variation=0.4), seed=4)
    single = LayerExecutor(one_copy, config).run(x, device)
    copied = LayerExecutor(layer, config).run(x, device)
    assert np.array_equal(copied[:3], single[:3])
    assert not np.array_equal(copied[3:], single[3:])


@pytest.mark.parametrize("copies, vectors", [(1, 7), (2, 7), (3, 7), (7, 7), (9, 7), (4, 1)])
def test_counters_meet_the_timing_formula(copies, vectors):
    config = small_config(n_xbars=64, max_act_bits=8)
    rng = np.random.default_rng(copies)
    matrix = rng.integers(-7, 8, size=(6, 30))
    layer = map_matrix(matrix, config, "ivq-temporal", act_bits=4)
    width = len(layer.xbars)
    if copies > 1:
        layer.copy_xbars = np.arange(20, 20 + (copies - 1) * width).reshape(copies - 1, width)
    runner = LayerExecutor(layer, config)
    counters = Counters()
    x = rng.integers(0, 16, size=(vectors, 30))
    assert np.array_equal(runner.run(x, IdealDevice(config)), x @ matrix.T)
    counters.record(runner, vectors)
    share = -(-vectors // copies)
    compute = vector_compute_cycles(config, runner.unit_reads)
    assert counters.job_vectors(layer.name) == share
    assert counters.job_compute_cycles(layer.name) == share * compute
    # The layer job's cycles from the counters equal the one formula with copies.
    assert job_cycles(config, 30, 6, counters.job_vectors(layer.name),
                      counters.job_compute_cycles(layer.name) // share) == layer_cycles(
        config, 30, 6, vectors, runner.unit_reads, copies=copies)
    # Totals do not change with copies: every vector is read once.
    assert counters.ou_reads[layer.name] == vectors * runner.reads_per_vector
    assert sum(counters.unit_vectors.values()) == vectors * len(runner.units)


def test_perf_report_counts_copies(mapped):
    """The performance model: copies add units and shorten the job, not the events."""
    from bitline.sw.perf import analyze, pipeline_report

    program, qmodel = _program(mapped, "bwq")
    first = program.layers[0]
    copied = program.with_copies({first.name: 3})
    one, three = analyze(program, qmodel), analyze(copied, qmodel)
    assert three.layers[0].copies == 3
    assert three.layers[0].crossbars == 3 * one.layers[0].crossbars
    assert three.layers[0].ou_reads == one.layers[0].ou_reads
    assert three.total_energy_pj == pytest.approx(one.total_energy_pj)
    V, K, O = one.layers[0].n_vectors, first.n_inputs, first.n_outputs
    compute = one.layers[0].max_unit_reads * program.config.conversions_per_read
    assert three.layers[0].cycles == job_cycles(program.config, K, O, -(-V // 3), compute)
    # A program with copies is allocated afresh: the stages have one copy's units.
    budget = program.xbars_used + 5
    assert (pipeline_report(three, budget).copies == pipeline_report(one, budget).copies)


def test_verilog_hardware_sized_by_a_bundle_with_copies(mapped, tmp_path):
    """`bitline verilog/fpga --config base --bundle b`: max_copies comes from the bundle."""
    from bitline.sw.flow.hardware import choose_hardware

    program, qmodel = _program(mapped, "bwq")
    copied = program.with_copies({program.layers[0].name: 3})
    write_bundle(tmp_path / "b", copied, qmodel)
    base = tmp_path / "base.toml"
    program.config.replace(n_xbars=copied.config.n_xbars).save(base)
    with pytest.raises(ValueError, match=r"max_copies 3 \(hardware 1, set by the config file"):
        choose_hardware(base, None, tmp_path / "b")     # the file pins max_copies = 1
    base.write_text(base.read_text().replace("max_copies = 1\n", ""))
    choice = choose_hardware(base, None, tmp_path / "b")
    assert choice.config.max_copies == 3 == copied.config.max_copies
    assert "max_copies sized from 1 to 3 by the bundle" in choice.notes
    units = choice.memories.units
    for source, unit in zip(copied.layers[0].xbars.tolist(),
                            copied.layers[0].copy_units(2).tolist()):
        assert units[unit].entries == units[source].entries and units[unit].entries


def test_uart_board_carries_lanes():
    """The board bridge carries max_copies lanes (protocol version 2, docs/fpga.md): its
    streams are the accelerator's lane arrays."""
    from amaranth.lib import data

    from bitline.hw.boards.core import UARTAccelerator

    board = UARTAccelerator(small_config(max_copies=2), clock_hz=25_000_000)
    for name in ("inputs", "outputs"):
        layout = getattr(board.bridge, name).payload.shape()
        assert isinstance(layout, data.ArrayLayout) and layout.length == 2
        assert layout.size == getattr(board.accelerator, name).payload.shape().size


def test_device_sends_copies_as_lanes():
    """Device.run_layer_job(copies=c): N_VECTORS = V, N_SHARE = ceil(V / c), lane beats in,
    lane outputs back in vector order (an idle lane's values dropped)."""
    from bitline.hw.spec.registers import Register, Status
    from bitline.sw.host.driver import Device, Transport

    class LaneEcho(Transport):
        """Output (j, n) of lane k: the sum of lane k's codes of its j-th vector, plus n."""

        def __init__(self):
            self.registers = {}

        def write_register(self, register, value):
            self.registers[int(register)] = int(value)

        def read_register(self, register):
            return int(Status.DONE) if register == Register.STATUS else 0

        def send_image(self, image):
            pass

        def start_job(self, codes, n_outputs):
            share = self.registers[int(Register.N_SHARE)]
            sums = np.asarray(codes).reshape(share, -1, codes.shape[1]).sum(axis=1)
            per_vector = n_outputs // share
            return (sums[:, None, :] + np.arange(per_vector)[None, :, None]).reshape(
                n_outputs, -1)

    transport = LaneEcho()
    vectors = np.random.default_rng(0).integers(0, 16, (7, 5))
    outputs = Device(transport).run_layer_job(0, vectors, 4, copies=3)
    assert transport.registers[int(Register.N_VECTORS)] == 7
    assert transport.registers[int(Register.N_SHARE)] == 3
    assert np.array_equal(outputs, vectors.sum(axis=1)[:, None] + np.arange(4))
