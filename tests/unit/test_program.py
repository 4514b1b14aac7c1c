"""The OU program's one owner (bitline.hw.spec.program / tables / validate).

Pins the one validator (every check names layer, field and value; the accumulator bound
fires), that the bundle, the accelerator memories and the executor reject a bad program
through it with the same message, and that memories and the bundle hold the same records.
"""

from __future__ import annotations

import numpy as np
import pytest

from bitline.hw.core.memories import program_memories
from bitline.hw.spec.config import AcceleratorConfig
from bitline.hw.spec.encoding import (
    entry_layout,
    layer_layout,
    output_param_layout,
    record_bytes,
)
from bitline.hw.spec.image import SectionId, rowmap_layout
from bitline.hw.spec.program import (
    LayerProgram,
    OutputMode,
    Program,
    ProgramError,
    empty_entries,
    entry_columns,
)
from bitline.hw.spec.tables import program_tables
from bitline.hw.spec.validate import check_config, validate_program
from bitline.sim.executor import LayerExecutor
from bitline.sw.bundle import (
    BundleError,
    assemble_image,
    encode_image,
    encode_sections,
    image_tables,
    parse_image,
)
from bitline.sw.bundle.tables import ParsedImage
from bitline.sw.mapping import map_matrix

CONFIG = AcceleratorConfig(
    rows=16, cols=16, cell_bits=1, dac_bits=1, ou_rows=4, ou_cols=4, adc_bits=4,
    adcs_per_xbar=4, n_xbars=32, acc_bits=24, max_act_bits=8, max_weight_bits=8,
    max_out_channels=64, max_in_features=256, max_layers=8, max_entries=4096,
)


def mapped_layer(config, name, n_outputs, n_inputs, *, seed, xbar_offset=0, act_bits=6,
                 strategy="ivq-spatial", mode="requant"):
    rng = np.random.default_rng(seed)
    weight = rng.integers(-20, 21, (n_outputs, n_inputs))
    layer = map_matrix(weight, config, strategy, act_bits=act_bits, name=name,
                       xbar_offset=xbar_offset)
    layer.bias = rng.integers(-1000, 1000, n_outputs)
    layer.mult = rng.integers(1 << 10, 1 << 15, n_outputs)
    layer.shift = rng.integers(10, 20, n_outputs)
    layer.mode = mode
    if mode == "raw":
        layer.zero_point = layer.clamp_lo = 0
    return layer


def make_program(config=CONFIG) -> Program:
    first = mapped_layer(config, "conv", 12, 30, seed=1)
    second = mapped_layer(config, "fc", 5, 12, seed=2, xbar_offset=len(first.xbars),
                          act_bits=8, strategy="isaac", mode="raw")
    return Program(config=config, strategy="mixed", layers=[first, second])


def test_the_program_is_valid():
    tables = validate_program(make_program(), CONFIG)
    assert len(tables.layers) == 2
    assert list(tables.layers["mode"]) == [OutputMode.REQUANT, OutputMode.RAW]


# --------------------------------------------------------------- each check names its place
def change_first(attribute, value):
    def change(program):
        setattr(program.layers[0], attribute, value)
    return change


def set_in(attribute, index, value, layer=0):
    def change(program):
        getattr(program.layers[layer], attribute)[index] = value
    return change


def entry_column(field_name, value, column=0):
    def change(program):
        entries = program.layers[0].entries
        valid = entry_columns(entries, CONFIG.ou_cols)["valid"]
        entry = int(np.flatnonzero(valid[:, column])[0])
        entries[f"cols.{column}.{field_name}"][entry] = value
    return change


def share_unit(program):
    program.layers[1].xbars[0] = program.layers[0].xbars[0]


def unit_past_the_machine(program):
    program.layers[1].xbars[-1] = CONFIG.n_xbars


def foreign_entry(program):
    program.layers[0].entries["xbar"][0] = program.layers[1].xbars[0]


def slices_past_act_bits(program):
    program.layers[0].entries["slice_hi"][0] = CONFIG.act_slices(6) + 1


CASES = {
    "n_inputs": (change_first("n_inputs", 300),
                 r"LAYERS record 0 \(layer 'conv'\): field n_inputs: 300 is not between 1 and "
                 r"max_in_features"),
    "mode": (change_first("mode", "float"),
             r"LAYERS record 0 \(layer 'conv'\): field mode: unknown mode 'float'"),
    "zero_point": (change_first("zero_point", 256),
                   r"LAYERS record 0 \(layer 'conv'\): field zero_point: 256 is not a code"),
    "clamp": (lambda p: (change_first("clamp_lo", 200)(p), change_first("clamp_hi", 100)(p)),
              r"layer 'conv'\): field clamp_lo: clamp_lo 200 > clamp_hi 100"),
    "shared unit": (share_unit, r"LAYERS record 1 \(layer 'fc'\): field xbar_mask: unit \d+ is "
                                r"already owned by layer 'conv'"),
    "unit count": (unit_past_the_machine, r"needs crossbar unit 32 \(33 units\), the hardware "
                                          r"has n_xbars = 32"),
    "row map": (lambda p: p.layers[0].row_maps.__setitem__((0, 1), -3),
                r"ROWMAPS record 1 \(layer 'conv' unit 0 row 1\): field index: row map value -3"),
    "cell level": (lambda p: p.layers[0].cells.__setitem__((0, 2, 3), 2),
                   r"CELLS record 0 \(layer 'conv' unit 0 row 2 col 3\): field rows.2.levels.3: "
                   r"level 2 is not in 0 .. level_max \(1\)"),
    "entry unit": (foreign_entry, r"ENTRIES record 0 \(layer 'conv' entry 0\): field xbar: unit "
                                  r"\d+ is not owned by this layer"),
    "slices": (slices_past_act_bits, r"ENTRIES record 0 \(layer 'conv' entry 0\): field "
                                     r"slice_hi: 7 is past the 6 slices of the layer's act_bits"),
    "dest": (entry_column("dest", 12), r"ENTRIES record \d+ \(layer 'conv' entry \d+\): field "
                                       r"cols.0.dest: output channel 12 is not below n_outputs"),
    "shift": (entry_column("shift", 8), r"layer 'conv' entry \d+\): field cols.0.shift: 8 does "
                                        r"not fit 3 bits"),
    "bias": (set_in("bias", 2, 1 << 23, layer=1),
             r"OUTPUT record 14 \(layer 'fc' channel 2\): field bias: value 8388608 does not "
             r"fit acc_bits \(24\)"),
    "mult": (set_in("mult", 0, -1), r"OUTPUT record 0 \(layer 'conv' channel 0\): field mult: "
                                    r"value -1 does not fit 16 bits"),
    "param shape": (change_first("shift", np.zeros(3, np.int64)),
                    r"section OUTPUT \(layer 'conv'\): field shift: must be an integer array of "
                    r"shape \(12,\)"),
}


@pytest.mark.parametrize("case", CASES)
def test_each_check_names_layer_field_and_value(case):
    change, pattern = CASES[case]
    program = make_program()
    change(program)
    with pytest.raises(ProgramError, match=pattern):
        validate_program(program, CONFIG)


def test_unit_entry_memory_depth():
    program = make_program()
    validate_program(program, CONFIG)
    with pytest.raises(ProgramError, match=r"field xbar: crossbar unit \d+ has \d+ OU entries, "
                                           r"its entry memory holds 1"):
        validate_program(program, CONFIG, unit_entries=1)


def overflowing_program() -> Program:
    """One layer whose accumulators can exceed a 16-bit accumulator (but whose fields fit)."""
    config = CONFIG.replace(acc_bits=16, max_act_bits=4)
    check_config(config)
    layer = map_matrix(np.full((2, 32), 127, dtype=np.int64), config, "isaac", act_bits=4,
                       name="wide")
    layer.bias, layer.mult, layer.shift = np.array([0, 5]), np.array([1, 1]), np.array([0, 0])
    layer.clamp_hi = 15
    return Program(config=config, strategy="isaac", layers=[layer])


def test_accumulator_overflow_is_rejected():
    program = overflowing_program()
    # 32 inputs of up to 15 times weights 127 reach 60960 (+ bias 5): past 32767
    with pytest.raises(ProgramError, match=r"OUTPUT record 1 \(layer 'wide' channel 1\): field "
                                           r"bias: channel 1 can reach \|acc \+ bias\| = 60965, "
                                           r"which overflows acc_bits = 16 \(limit 32767\)"):
        validate_program(program)
    wider = program.config.replace(acc_bits=17)
    layer = program.layers[0]
    validate_program(Program(config=wider, strategy="isaac", layers=[layer]))


def test_config_term_must_fit_acc_bits():
    with pytest.raises(ProgramError, match=r"acc_bits \(16\) cannot hold one shift-and-add"):
        check_config(CONFIG.replace(acc_bits=16, adc_bits=8, max_act_bits=8,
                                    max_weight_bits=2))


# --------------------------------------------------------------- every consumer, one validator
def message(error) -> str:
    """The message without its source (``program: ``, ``image.bin: ``)."""
    return str(error).split(": ", 1)[1]


def test_bundle_memories_and_executor_reject_through_the_validator():
    program = overflowing_program()
    config = program.config
    with pytest.raises(ProgramError) as expected:
        validate_program(program)
    with pytest.raises(BundleError) as written:
        encode_image(program)
    # an image of the unvalidated records: well formed, but the reader must reject it
    image = assemble_image(config, encode_sections(ParsedImage.of(program_tables(program))))
    with pytest.raises(BundleError) as read:
        parse_image(image, config, layer_names=["wide"])
    with pytest.raises(ProgramError) as memories:
        program_memories(config, program.layers)
    with pytest.raises(ProgramError) as executor:
        LayerExecutor(program.layers[0], config)
    assert "overflows acc_bits = 16" in str(expected.value)
    for error in (written, read, memories, executor):
        assert message(error.value) == message(expected.value)


# --------------------------------------------------------------- one record form for both views
def words(layout, payload: bytes) -> list[int]:
    size = record_bytes(layout)
    return [int.from_bytes(payload[i:i + size], "little") for i in range(0, len(payload), size)]


def test_memories_and_bundle_hold_the_same_records():
    program = make_program()
    config = program.config
    program.layers[0].entries["slice_hi"][1] = program.layers[0].entries["slice_lo"][1]
    sections = {section: payload for section, payload, _, _ in
                encode_sections(image_tables(program))}
    memories = program_memories(config, program.layers, unit_entries=config.max_entries)
    assert memories.layers == words(layer_layout(config), sections[SectionId.LAYERS])
    assert memories.params == words(output_param_layout(config), sections[SectionId.OUTPUT])
    entries = image_tables(program).entries
    entry_words = words(entry_layout(config), sections[SectionId.ENTRIES])
    issued = entries["slice_hi"] > entries["slice_lo"]
    assert not issued.all()          # the memories drop what the loader drops
    rowmaps = words(rowmap_layout(config), sections[SectionId.ROWMAPS])
    tables = image_tables(program)
    for unit in range(config.n_xbars):
        mine = [word for e, word in enumerate(entry_words)
                if issued[e] and entries["xbar"][e] == unit]
        assert memories.units[unit].entries == mine
        valid = np.array(rowmaps[unit * config.rows:(unit + 1) * config.rows]) & 1
        assert np.array_equal(memories.units[unit].row_map >= 0, valid == 1)
        assert np.array_equal(memories.units[unit].row_map, tables.row_maps[unit])
    for record, unit in enumerate(tables.cell_units):
        assert np.array_equal(memories.units[unit].cells, tables.cells[record])


# --------------------------------------------------------------- the helpers of the program
def test_output_mode_names_and_codes():
    assert OutputMode.parse("requant") is OutputMode.REQUANT and OutputMode.RAW == 1
    assert [mode.label for mode in OutputMode] == ["requant", "raw"]
    with pytest.raises(ValueError, match=r"unknown mode 'x' \(known: requant, raw\)"):
        OutputMode.parse("x")


def test_act_slices_and_entry_columns():
    config = CONFIG.replace(dac_bits=2)
    assert config.act_slices(5) == 3 and config.act_slices(8) == config.max_slices
    assert config.act_slices(np.array([1, 2, 3])).tolist() == [1, 1, 2]
    entries = empty_entries(CONFIG, 3)
    entries["cols.2.dest"] = [4, 5, 6]
    columns = entry_columns(entries, CONFIG.ou_cols)
    assert columns["dest"].shape == (3, CONFIG.ou_cols)
    assert columns["dest"][:, 2].tolist() == [4, 5, 6] and not columns["valid"].any()
    assert entry_columns(empty_entries(CONFIG), CONFIG.ou_cols)["sign"].shape == (0, 4)


def test_tables_reject_a_layer_program_of_the_wrong_type():
    program = make_program()
    program.layers.append(LayerProgram(
        name="conv", n_inputs=4, n_outputs=1, act_bits=4, xbars=np.zeros(0, np.int64),
        row_maps=np.zeros((0, 16), np.int32), cells=np.zeros((0, 16, 16), np.uint8),
        entries=empty_entries(CONFIG), bias=np.zeros(1, np.int64), mult=np.zeros(1, np.int64),
        shift=np.zeros(1, np.int64)))
    with pytest.raises(ProgramError, match=r"LAYERS record 2: field name: layer name 'conv' "
                                           r"appears twice"):
        program_tables(program)
