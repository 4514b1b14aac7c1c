"""Tests of the program bundle (bitline.sw.bundle, bitline.hw.spec.image)."""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest
from amaranth.lib import data

from bitline.hw.spec.config import AcceleratorConfig, preset
from bitline.hw.spec.encoding import entry_layout, flatten_fields, pack, record_bytes
from bitline.hw.spec.image import (
    CRC_ALGORITHM,
    FORMAT_VERSION,
    HEADER_BYTES,
    HEADER_LAYOUT,
    MAGIC,
    SECTION_ENTRY_BYTES,
    SECTION_ENTRY_LAYOUT,
    SectionId,
    cells_layout,
    crc32,
    image_sections,
    section_layout,
    struct_format,
)
from bitline.hw.spec.program import LayerProgram, Program, empty_entries
from bitline.sw.bundle import (
    BundleError,
    assemble_image,
    encode_image,
    encode_sections,
    parse_image,
    read_bundle,
    write_bundle,
)
from bitline.sw.bundle import codec, manifest
from bitline.sw.bundle.tables import BundlePlace
from bitline.sw.frontend.ir import Layer, Model
from bitline.sw.integer.qmodel import ActParams, QuantizedModel, QuantLayer
from bitline.sw.quant.tensor import QuantizedTensor

#: A small machine whose widths leave room for out-of-range values (n_xbars = 6 in 3 bits,
#: 6 row groups in 3 bits, 10 columns in 3 column groups of 4, 20-bit cell rows + 4 pad bits).
SMALL = AcceleratorConfig(
    rows=16, cols=10, cell_bits=2, dac_bits=1, ou_rows=3, ou_cols=4, adc_bits=4,
    adcs_per_xbar=2, n_xbars=6, acc_bits=24, max_act_bits=8, max_weight_bits=8,
    max_out_channels=40, max_in_features=100, max_layers=8, max_entries=500,
)


# ----------------------------------------------------------------------------- builders
def make_program(config=SMALL, seed=0, units_per_layer=(2, 1, 2), strategy="bwq"):
    """Return a random, valid Program (last layer raw)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(config.n_xbars)
    layers, position = [], 0
    for index, unit_count in enumerate(units_per_layer):
        xbars = order[position:position + unit_count].astype(np.int64)
        position += unit_count
        n_inputs = int(rng.integers(5, 40))
        n_outputs = int(rng.integers(3, 20))
        act_bits = int(rng.integers(1, config.max_act_bits + 1))
        count = int(rng.integers(3, 15))
        entries = empty_entries(config, count)
        entries["xbar"] = rng.choice(xbars, count)
        entries["row_group"] = rng.integers(0, config.row_groups, count)
        entries["col_group"] = rng.integers(0, config.col_groups, count)
        slices = -(-act_bits // config.dac_bits)
        slice_hi = rng.integers(0, slices + 1, count)
        entries["slice_hi"] = slice_hi
        entries["slice_lo"] = rng.integers(0, slice_hi + 1)
        for j in range(config.ou_cols):
            column = entries["col_group"] * config.ou_cols + j
            valid = (rng.random(count) < 0.7) & (column < config.cols)
            entries[f"cols.{j}.valid"] = valid
            entries[f"cols.{j}.sign"] = np.where(valid, rng.integers(0, 2, count), 0)
            entries[f"cols.{j}.shift"] = np.where(
                valid, rng.integers(0, config.max_weight_bits, count), 0)
            entries[f"cols.{j}.dest"] = np.where(valid, rng.integers(0, n_outputs, count), 0)
        # bias up to half the accumulator range, so that |acc + bias| cannot overflow
        # acc_bits (the validator's accumulator bound) with these entries and cells
        half = 1 << (config.acc_bits - 2)
        bias = rng.integers(-half, half, n_outputs)
        bias[0], bias[-1] = -half, half - 1
        raw = index == len(units_per_layer) - 1
        zero_point = 0 if index % 2 == 0 else 1 << (config.max_act_bits - 1)
        cells = rng.integers(0, config.level_max + 1, (unit_count, config.rows, config.cols))
        layers.append(LayerProgram(
            name=f"fc{index}",
            n_inputs=n_inputs,
            n_outputs=n_outputs,
            act_bits=act_bits,
            xbars=xbars,
            row_maps=rng.integers(-1, n_inputs, (unit_count, config.rows)).astype(np.int32),
            cells=cells.astype(np.uint8),
            entries=entries,
            bias=bias.astype(np.int64),
            mult=rng.integers(0, 1 << 15, n_outputs),
            shift=rng.integers(0, 64, n_outputs),
            mode="raw" if raw else "requant",
            zero_point=0 if raw else zero_point,
            clamp_lo=0 if raw else zero_point,
            clamp_hi=(1 << config.max_act_bits) - 1,
            stats={"nonzero_cells": np.int64(np.count_nonzero(cells)), "note": "random",
                   "histogram": [1, 2, 3], "utilization": 0.25},
        ))
    return Program(config=config, strategy=strategy, layers=layers)


def make_qmodel(program, seed=1):
    """Return a QuantizedModel whose compute layers are the program's layers."""
    rng = np.random.default_rng(seed)
    fc0, fc1, fc2 = program.layers

    def tensor(layer_program, shape, per_channel=False):
        values = rng.integers(-127, 128, shape)
        scale = rng.random((shape[0],) + (1,) * (len(shape) - 1)) * 0.01 + 1e-4
        schemes = np.array(["int", "pot"])[rng.integers(0, 2, shape[0])]
        return QuantizedTensor(
            values=values, scale=scale,
            scheme=schemes if per_channel else "int",
            bits=rng.integers(2, 9, shape[0]) if per_channel else 8,
            options={"exponent_bits": 3} if per_channel else {},
        )

    w0 = tensor(fc0, (fc0.n_outputs, fc0.n_inputs, 1, 1))
    w1 = tensor(fc1, (fc1.n_outputs, fc1.n_inputs), per_channel=True)
    w2 = tensor(fc2, (fc2.n_outputs, fc2.n_inputs))
    layers = [
        Layer("fc0", "conv", ["x"], "t0", (fc0.n_inputs, 4, 4), (fc0.n_outputs, 4, 4),
              attrs={"stride": (1, 1), "pads": (0, 0, 0, 0), "dilation": (1, 1), "groups": 1},
              weight=w0.dequantize().astype(np.float32),
              bias=rng.standard_normal(fc0.n_outputs).astype(np.float32), activation="relu"),
        Layer("pool", "maxpool", ["t0"], "t0p", (fc0.n_outputs, 4, 4), (fc0.n_outputs, 2, 2),
              attrs={"kernel": (2, 2), "stride": (2, 2), "pads": (0, 0, 0, 0)}),
        Layer("flat", "flatten", ["t0p"], "t0f", (fc0.n_outputs, 2, 2), (fc0.n_outputs * 4,)),
        Layer("fc1", "gemm", ["t0f"], "t1", (fc1.n_inputs,), (fc1.n_outputs,),
              weight=w1.dequantize().astype(np.float32), bias=None, activation="relu"),
        Layer("res", "add", ["t1", "t1"], "t1a", (fc1.n_outputs,), (fc1.n_outputs,),
              activation="relu"),
        Layer("fc2", "gemm", ["t1a"], "y", (fc2.n_inputs,), (fc2.n_outputs,),
              weight=w2.dequantize().astype(np.float32),
              bias=rng.standard_normal(fc2.n_outputs).astype(np.float32)),
    ]
    model = Model("tiny", "x", (fc0.n_inputs, 4, 4), layers, "y", source="test")
    a_in = ActParams(8, 0.02, 0)
    a_mid = ActParams(8, 0.05, 128)
    quant = {
        "fc0": QuantLayer(layers[0], [a_in], a_mid, w0, bias=rng.integers(-500, 500, fc0.n_outputs),
                          mult=rng.integers(0, 1 << 15, fc0.n_outputs),
                          shift=rng.integers(0, 64, fc0.n_outputs), clamp_lo=128, clamp_hi=255,
                          block_bits=rng.integers(0, 9, (3, 4)),
                          act_block_bits=rng.integers(1, 9, 4)),
        "pool": QuantLayer(layers[1], [a_mid], a_mid),
        "fc1": QuantLayer(layers[3], [a_mid], a_in, w1, bias=rng.integers(-500, 500, fc1.n_outputs),
                          mult=rng.integers(0, 1 << 15, fc1.n_outputs),
                          shift=rng.integers(0, 64, fc1.n_outputs)),
        "res": QuantLayer(layers[4], [a_in, a_in], a_in, mult=np.array([3, 5]),
                          shift=np.array([4, 4])),
        "fc2": QuantLayer(layers[5], [a_in], None, w2, bias=rng.integers(-500, 500, fc2.n_outputs),
                          mult=rng.integers(0, 1 << 15, fc2.n_outputs),
                          shift=rng.integers(0, 64, fc2.n_outputs), mode="raw"),
    }
    spec = {"scheme": "int", "bits": 8, "per_layer": {"fc1": {"schemes": ("int", "pot")}}}
    return QuantizedModel(model=model, input=a_in, layers=quant, spec=spec)


def assert_programs_equal(a: Program, b: Program):
    assert a.config == b.config and a.strategy == b.strategy
    assert [layer.name for layer in a.layers] == [layer.name for layer in b.layers]
    for left, right in zip(a.layers, b.layers):
        for name in ("n_inputs", "n_outputs", "act_bits", "mode", "zero_point", "clamp_lo",
                     "clamp_hi"):
            assert getattr(left, name) == getattr(right, name), (left.name, name)
        for name in ("xbars", "row_maps", "cells", "bias", "mult", "shift"):
            assert np.array_equal(getattr(left, name), getattr(right, name)), (left.name, name)
        assert left.entries.dtype.names == right.entries.dtype.names
        for name in left.entries.dtype.names:
            assert np.array_equal(left.entries[name], right.entries[name]), (left.name, name)
        assert json.loads(json.dumps(manifest._json_safe(left.stats, "s"))) == right.stats


def assert_qmodels_equal(a: QuantizedModel, b: QuantizedModel):
    assert a.input == b.input
    assert a.model.name == b.model.name and a.model.input_shape == b.model.input_shape
    assert a.model.output_name == b.model.output_name
    for left, right in zip(a.model.layers, b.model.layers, strict=True):
        assert (left.name, left.op, left.inputs, left.output, left.input_shape,
                left.output_shape, left.attrs, left.activation) == (
            right.name, right.op, right.inputs, right.output, right.input_shape,
            right.output_shape, right.attrs, right.activation)
        if left.bias is None:
            assert right.bias is None
        else:
            assert np.array_equal(left.bias, right.bias)
    assert set(a.layers) == set(b.layers)
    for name, left in a.layers.items():
        right = b.layers[name]
        assert right.layer is b.model.layer(name)
        assert left.inputs == right.inputs and left.output == right.output
        assert (left.mode, left.clamp_lo, left.clamp_hi) == (right.mode, right.clamp_lo,
                                                            right.clamp_hi)
        for field_name in ("bias", "mult", "shift", "block_bits", "act_block_bits"):
            value = getattr(left, field_name)
            if value is None:
                assert getattr(right, field_name) is None, (name, field_name)
            else:
                assert np.array_equal(value, getattr(right, field_name)), (name, field_name)
        if left.weight is None:
            assert right.weight is None
            continue
        assert np.array_equal(left.weight.values, right.weight.values)
        assert np.array_equal(left.weight.scale, right.weight.scale)
        assert np.array_equal(left.weight.scheme, right.weight.scheme)
        assert type(left.weight.scheme) is type(right.weight.scheme)
        assert np.array_equal(left.weight.bits, right.weight.bits)
        assert left.weight.options == right.weight.options
        assert np.array_equal(right.layer.weight, left.weight.values * left.weight.scale)


# ----------------------------------------------------------------------------- tamper tools
HEADER_FORMAT, HEADER_NAMES = struct_format(HEADER_LAYOUT)
TABLE_FORMAT, TABLE_NAMES = struct_format(SECTION_ENTRY_LAYOUT)


def split(blob):
    header = dict(zip(HEADER_NAMES, struct.unpack(HEADER_FORMAT, blob[:HEADER_BYTES])))
    rows = [dict(zip(TABLE_NAMES, struct.unpack_from(
        TABLE_FORMAT, blob, HEADER_BYTES + i * SECTION_ENTRY_BYTES)))
        for i in range(header["section_count"])]
    return header, rows


def rebuild(blob, rows=None, **header_changes):
    """Re-emit ``blob`` with a changed table / header, CRCs recomputed (body unchanged)."""
    header, old_rows = split(blob)
    rows = old_rows if rows is None else rows
    body = blob[HEADER_BYTES + len(old_rows) * SECTION_ENTRY_BYTES:]
    table = b"".join(struct.pack(TABLE_FORMAT, *(row[k] for k in TABLE_NAMES)) for row in rows)
    body = bytes(SECTION_ENTRY_BYTES * (len(old_rows) - len(rows))) + body
    header.update(section_count=len(rows), table_crc=crc32(table))
    header.update(header_changes)
    packed = struct.pack(HEADER_FORMAT, *(header[k] for k in HEADER_NAMES))
    header["header_crc"] = crc32(packed[:HEADER_BYTES - 4])
    packed = struct.pack(HEADER_FORMAT, *(header[k] for k in HEADER_NAMES))
    return packed + table + body


def by_name(rows, name):
    return next(row for row in rows if row["id"] == SectionId[name])


def reencode(blob, config, change):
    """Parse, let ``change`` modify the tables or payloads, and assemble again."""
    tables = parse_image(blob, config)
    change(tables)
    return assemble_image(config, encode_sections(tables))


@pytest.fixture(scope="module")
def program():
    return make_program()


@pytest.fixture(scope="module")
def image(program):
    return encode_image(program)


# ----------------------------------------------------------------------------- format basics
def test_crc_is_amaranth_crc32_ethernet():
    blob = bytes(range(256)) * 3
    assert crc32(blob) == zlib.crc32(blob) == CRC_ALGORITHM(data_width=8).compute(blob)


def test_header_and_table_layouts_are_byte_aligned():
    assert HEADER_BYTES == 40 and SECTION_ENTRY_BYTES == 24
    assert HEADER_LAYOUT["header_crc"].offset == (HEADER_BYTES - 4) * 8
    with pytest.raises(ValueError, match="not byte-aligned"):
        struct_format(data.StructLayout({"a": 3, "b": 13}))


@pytest.mark.parametrize("config", [SMALL, SMALL.replace(cols=12, cell_bits=1),
                                    preset("bwq").replace(rows=9)],
                         ids=["padded-rows", "byte-rows", "bwq-columns"])
def test_fast_cell_packing_matches_the_layout(config):
    rng = np.random.default_rng(3)
    units = np.array([config.n_xbars - 1, 0])
    cells = rng.integers(0, config.level_max + 1, (2, config.rows, config.cols)).astype(np.uint8)
    layout = cells_layout(config)
    dtype = np.dtype([(name, np.int64) for name, _, _ in flatten_fields(layout)])
    records = np.zeros(2, dtype)
    sources = np.array([config.n_xbars - 1, config.n_xbars - 1])   # unit 0 copies the other
    records["unit"] = units
    records["source"] = sources
    for row in range(config.rows):
        for col in range(config.cols):
            records[f"rows.{row}.levels.{col}"] = cells[:, row, col]
    blob = codec._pack_cells(config, units, cells, sources)
    assert blob == pack(layout, records)
    records["source"] = units   # without sources a unit runs its own entries
    assert codec._pack_cells(config, units, cells) == pack(layout, records)
    place = BundlePlace("t")
    back_units, back_sources, back_cells = codec._unpack_cells(config, blob, place)
    assert np.array_equal(back_units, units) and np.array_equal(back_cells, cells)
    assert np.array_equal(back_sources, sources)


def test_generic_packer_matches_encoding_pack(program):
    layout = entry_layout(SMALL)
    entries = program.layers[0].entries
    columns = {name: entries[name] for name in entries.dtype.names}
    place = BundlePlace("t")
    assert codec._pack_records(place, SectionId.ENTRIES, layout, len(entries),
                                       columns) == pack(layout, entries)


def test_image_layout(image, program):
    header, rows = split(image)
    assert image[:4] == MAGIC and header["image_bytes"] == len(image) and len(image) % 4 == 0
    assert [row["id"] for row in rows] == [int(section)
                                           for section in image_sections(program.config)]
    for row in rows:
        assert row["offset"] % 4 == 0
        assert zlib.crc32(image[row["offset"]:row["offset"] + row["length"]]) == row["crc"]
        assert row["record_bytes"] == record_bytes(section_layout(SMALL, row["id"]))
    assert by_name(rows, "LAYERS")["record_count"] == 3
    assert by_name(rows, "ROWMAPS")["record_count"] == SMALL.n_xbars * SMALL.rows
    assert by_name(rows, "CELLS")["record_count"] == 5
    assert by_name(rows, "ENTRIES")["record_count"] == sum(len(l.entries) for l in program.layers)
    assert by_name(rows, "OUTPUT")["record_count"] == sum(l.n_outputs for l in program.layers)


def test_parse_image_decodes_the_program(image, program):
    parsed = parse_image(image, SMALL)
    for index, layer in enumerate(program.layers):
        assert parsed.layer_units(index).tolist() == sorted(layer.xbars.tolist())
        assert np.array_equal(parsed.row_maps[layer.xbars], layer.row_maps)
    assert np.array_equal(parsed.bias, np.concatenate([l.bias for l in program.layers]))


def test_bias_of_64_bit_accumulator_and_wide_xbar_mask_round_trip():
    config = SMALL.replace(acc_bits=64, n_xbars=70)
    program = make_program(config, seed=5, units_per_layer=(2, 3, 1))
    program.layers[1].xbars[:] = [64, 69, 3]
    program.layers[1].entries["xbar"] = 69
    program.layers[0].bias[:2] = [-(1 << 63), (1 << 63) - 1]
    parsed = parse_image(encode_image(program), config)
    assert parsed.layer_units(1).tolist() == [3, 64, 69]
    assert parsed.bias[:2].tolist() == [-(1 << 63), (1 << 63) - 1]


# ----------------------------------------------------------------------------- round trip
def test_bundle_round_trip(tmp_path, program):
    qmodel = make_qmodel(program)
    out = write_bundle(tmp_path / "b", program, qmodel)
    assert sorted(path.name for path in out.iterdir()) == [
        "image.bin", "manifest.json", "reference.npz"]
    bundle = read_bundle(out)
    assert bundle.image == encode_image(program)
    assert_programs_equal(program, bundle.program)
    assert_qmodels_equal(qmodel, bundle.qmodel)
    manifest = bundle.manifest
    assert manifest["format_version"] == FORMAT_VERSION and manifest["strategy"] == "bwq"
    assert AcceleratorConfig.from_dict(manifest["config"]) == SMALL
    assert manifest["input"] == {"bits": 8, "scale": 0.02, "zero_point": 0}
    assert [s["name"] for s in manifest["sections"]] == [
        s.name for s in image_sections(program.config)]
    assert manifest["program"][1]["units"] == program.layers[1].xbars.tolist()
    assert manifest["program"][0]["stats"]["nonzero_cells"] == int(
        np.count_nonzero(program.layers[0].cells))
    res = next(layer for layer in manifest["layers"] if layer["name"] == "res")
    assert res["quant"]["mult"] == [3, 5] and res["quant"]["shift"] == [4, 4]
    assert bundle.qmodel.spec["per_layer"]["fc1"]["schemes"] == ["int", "pot"]


def test_round_trip_bwq_preset(tmp_path):
    config = preset("bwq")
    program = make_program(config, seed=11, units_per_layer=(3, 1, 2))
    bundle = read_bundle(write_bundle(tmp_path, program, make_qmodel(program)))
    assert_programs_equal(program, bundle.program)


def test_empty_layer_without_units_or_entries(tmp_path):
    program = make_program(seed=2)
    layer = program.layers[1]
    layer.xbars = np.zeros(0, np.int64)
    layer.row_maps = np.zeros((0, SMALL.rows), np.int32)
    layer.cells = np.zeros((0, SMALL.rows, SMALL.cols), np.uint8)
    layer.entries = empty_entries(SMALL, 0)
    bundle = read_bundle(write_bundle(tmp_path, program, make_qmodel(program)))
    assert_programs_equal(program, bundle.program)


@pytest.fixture(scope="module")
def digits_qmodels():
    from importlib.resources import files

    from bitline.sw.frontend.onnx_import import load_onnx
    from bitline.sw.quant.build import quantize_model_int

    calib = np.random.default_rng(0).random((32, 1, 8, 8)).astype(np.float32)
    out = {}
    for name in ("digits_cnn", "digits_resnet"):
        model = load_onnx(str(files("bitline.sw.models") / f"{name}.onnx"))
        out[name] = quantize_model_int(model, calib)
    return out


@pytest.mark.parametrize("name, config_name, strategy", [
    ("digits_cnn", "bwq", "isaac"), ("digits_cnn", "bwq", "ivq-naive"),
    ("digits_cnn", "bwq", "ivq-spatial"), ("digits_cnn", "bwq", "ivq-temporal"),
    ("digits_cnn", "bwq", "bwq"), ("digits_resnet", "bwq", "bwq"),
    ("digits_resnet", "isaac", "isaac"),
])
def test_round_trip_real_mapped_model(tmp_path, digits_qmodels, name, config_name, strategy):
    from bitline.sw.mapping import map_model

    qmodel = digits_qmodels[name]
    program = map_model(qmodel, preset(config_name), strategy, xbars="auto")
    bundle = read_bundle(write_bundle(tmp_path, program, qmodel))
    assert_programs_equal(program, bundle.program)
    assert_qmodels_equal(qmodel, bundle.qmodel)
    assert bundle.manifest["model"]["name"] == qmodel.model.name


def test_rebuilt_qmodel_runs_the_same_in_the_golden_model(tmp_path, digits_qmodels):
    from bitline.sim.golden import run_golden
    from bitline.sw.mapping import map_model

    qmodel = digits_qmodels["digits_resnet"]
    program = map_model(qmodel, preset("bwq"), "bwq", xbars="auto")
    bundle = read_bundle(write_bundle(tmp_path, program, qmodel))
    x = np.random.default_rng(2).random((4, 1, 8, 8)).astype(np.float32)
    want, got = run_golden(qmodel, x, return_all=True), run_golden(bundle.qmodel, x,
                                                                   return_all=True)
    assert np.array_equal(got.output_int, want.output_int)
    assert np.array_equal(got.output, want.output)
    assert set(got.layers) == set(want.layers)
    for name, codes in want.layers.items():
        assert np.array_equal(got.layers[name], codes), name


# ----------------------------------------------------------------------------- every byte
def flip_all(blob, config, positions, rng):
    missed = []
    for position in positions:
        corrupted = bytearray(blob)
        corrupted[position] ^= int(rng.integers(1, 256))
        try:
            parse_image(bytes(corrupted), config)
        except BundleError:
            continue
        missed.append(position)
    return missed


def test_every_single_byte_flip_is_detected(image):
    rng = np.random.default_rng(0)
    assert flip_all(image, SMALL, range(len(image)), rng) == []


def test_sampled_byte_flips_in_a_bwq_image_are_detected():
    config = preset("bwq")
    blob = encode_image(make_program(config, seed=4, units_per_layer=(2, 2, 1)))
    rng = np.random.default_rng(1)
    header, rows = split(blob)
    table_end = HEADER_BYTES + len(rows) * SECTION_ENTRY_BYTES
    must = list(range(table_end))
    for row in rows:  # first/last payload bytes and the padding after each section
        end = row["offset"] + row["length"]
        must += [row["offset"], end - 1] + list(range(end, (end + 3) // 4 * 4))
    positions = sorted(set(must) | set(rng.choice(len(blob), 300, replace=False).tolist()))
    assert len(positions) >= 300
    assert flip_all(blob, config, positions, rng) == []


# ----------------------------------------------------------------------------- header errors
def test_wrong_magic(image):
    with pytest.raises(BundleError, match=r"image.bin: header: field magic: bad magic"):
        parse_image(b"XTLN" + image[4:], SMALL)


def test_unknown_version(image):
    with pytest.raises(BundleError, match=r"header: field version: unknown format version 7"):
        parse_image(image[:4] + struct.pack("<H", 7) + image[6:], SMALL)


def test_wrong_header_size(image):
    with pytest.raises(BundleError, match=r"header: field header_bytes: 44, expected 40"):
        parse_image(rebuild(image, header_bytes=44), SMALL)


def test_truncated_header(image):
    with pytest.raises(BundleError, match=r"header: field header_bytes: truncated header"):
        parse_image(image[:30], SMALL)
    with pytest.raises(BundleError, match=r"field magic: truncated header"):
        parse_image(image[:3], SMALL)


def test_header_crc_mismatch(image):
    corrupted = bytearray(image)
    corrupted[10] ^= 1  # a digest byte
    with pytest.raises(BundleError, match=r"header: field header_crc: CRC mismatch"):
        parse_image(bytes(corrupted), SMALL)


def test_config_digest_mismatch(image):
    with pytest.raises(BundleError, match=r"header: field digest: config digest mismatch"):
        parse_image(image, SMALL.replace(acc_bits=32))


def test_table_crc_mismatch(image):
    corrupted = bytearray(image)
    corrupted[HEADER_BYTES + 2] ^= 1
    with pytest.raises(BundleError, match=r"header: field table_crc: section table CRC"):
        parse_image(bytes(corrupted), SMALL)


def test_truncated_section(image):
    _, rows = split(image)
    cells = by_name(rows, "CELLS")
    with pytest.raises(BundleError, match=r"section CELLS: field length: truncated"):
        parse_image(image[:cells["offset"] + 10], SMALL)
    with pytest.raises(BundleError, match=r"section table: field section_count: truncated"):
        parse_image(image[:HEADER_BYTES + 30], SMALL)


def test_trailing_bytes(image):
    with pytest.raises(BundleError, match=r"field image_bytes: .*trailing data"):
        parse_image(image + bytes(4), SMALL)


# ----------------------------------------------------------------------------- table errors
def edited(image, change):
    _, rows = split(image)
    change(rows)
    return rebuild(image, rows)


def test_section_crc_mismatch(image):
    _, rows = split(image)
    corrupted = bytearray(image)
    corrupted[by_name(rows, "ENTRIES")["offset"] + 5] ^= 0x10
    with pytest.raises(BundleError, match=r"section ENTRIES: field crc: CRC mismatch"):
        parse_image(bytes(corrupted), SMALL)


def test_unknown_section_id(image):
    blob = edited(image, lambda rows: rows[2].update(id=9))
    with pytest.raises(BundleError, match=r"section table entry 2: field id: unknown section id 9"):
        parse_image(blob, SMALL)


def test_duplicate_section(image):
    blob = edited(image, lambda rows: rows[4].update(id=rows[3]["id"]))
    with pytest.raises(BundleError, match=r"entry 4: field id: section ENTRIES .* twice"):
        parse_image(blob, SMALL)


def test_missing_section(image):
    _, rows = split(image)
    blob = rebuild(image, rows[:4])
    with pytest.raises(BundleError, match=r"section table: field id: missing section\(s\) OUTPUT"):
        parse_image(blob, SMALL)


def test_nonzero_flags(image):
    blob = edited(image, lambda rows: rows[0].update(flags=1))
    with pytest.raises(BundleError, match=r"entry 0: field flags"):
        parse_image(blob, SMALL)


def test_wrong_record_size(image):
    blob = edited(image, lambda rows: rows[3].update(record_bytes=rows[3]["record_bytes"] + 1))
    with pytest.raises(BundleError, match=r"entry 3: field record_bytes: .* for section ENTRIES"):
        parse_image(blob, SMALL)


def test_length_disagrees_with_record_count(image):
    blob = edited(image, lambda rows: rows[3].update(length=rows[3]["length"] - 1))
    with pytest.raises(BundleError, match=r"entry 3: field length"):
        parse_image(blob, SMALL)


def test_misaligned_section(image):
    blob = edited(image, lambda rows: rows[1].update(offset=rows[1]["offset"] + 2))
    with pytest.raises(BundleError, match=r"entry 1: field offset: .* not 4-byte aligned"):
        parse_image(blob, SMALL)


def test_out_of_bounds_section(image):
    def grow(rows):
        row = rows[4]
        row.update(record_count=row["record_count"] + 100,
                   length=(row["record_count"] + 100) * row["record_bytes"])
    with pytest.raises(BundleError, match=r"entry 4: field offset: section OUTPUT .* out of bounds"):
        parse_image(edited(image, grow), SMALL)


def test_overlapping_sections(image):
    blob = edited(image, lambda rows: rows[3].update(offset=rows[2]["offset"]))
    with pytest.raises(BundleError, match=r"section ENTRIES: field offset: .* overlaps section CELLS"):
        parse_image(blob, SMALL)


def test_sections_out_of_stream_order(image):
    blob = edited(image, lambda rows: rows.__setitem__(slice(0, 2), rows[1::-1]))
    with pytest.raises(BundleError, match=r"section ROWMAPS: field offset: \d+, expected \d+"):
        parse_image(blob, SMALL)


def test_nonzero_padding():
    # the first seed whose image has a section that is not a multiple of 4 bytes long
    for seed in range(20):
        image = encode_image(make_program(seed=seed))
        _, rows = split(image)
        padded = [row for row in rows if row["length"] % 4]
        if padded:
            break
    assert padded, "a test image should have a padded section"
    corrupted = bytearray(image)
    corrupted[padded[0]["offset"] + padded[0]["length"]] = 0x5A
    with pytest.raises(BundleError, match=r"padding: field byte: .* padding must be 0"):
        parse_image(bytes(corrupted), SMALL)


# ----------------------------------------------------------------------------- record errors
def expect(image, change, pattern):
    with pytest.raises(BundleError, match=pattern):
        parse_image(reencode(image, SMALL, change), SMALL)


def test_entry_xbar_not_below_n_xbars(image):
    expect(image, lambda t: t.entries["xbar"].__setitem__(2, 7),
           r"section ENTRIES record 2 \(layer record 0 entry 2\): field xbar: unit 7 is not "
           r"below n_xbars \(6\)")


def test_entry_xbar_of_another_layer(image, program):
    other = int(program.layers[1].xbars[0])
    expect(image, lambda t: t.entries["xbar"].__setitem__(0, other),
           rf"ENTRIES record 0 .*field xbar: unit {other} is not owned by this layer")


def test_entry_dest_not_below_n_outputs(image, program):
    def change(tables):
        entries = tables.entries
        entries["cols.1.valid"][0] = 1
        entries["col_group"][0] = 0
        entries["cols.1.dest"][0] = program.layers[0].n_outputs
    expect(image, change, r"ENTRIES record 0 .*field cols.1.dest: output channel \d+ is not "
                          r"below n_outputs")


def test_entry_slice_hi_past_max_slices(image):
    expect(image, lambda t: t.entries["slice_hi"].__setitem__(1, 9),
           r"ENTRIES record 1 .*field slice_hi: 9 exceeds max_slices \(8\)")


def test_entry_slice_lo_above_slice_hi(image):
    def change(tables):
        tables.entries["slice_lo"][1] = 1
        tables.entries["slice_hi"][1] = 0
    expect(image, change, r"ENTRIES record 1 .*field slice_lo: slice_lo 1 > slice_hi 0")


def test_entry_slices_past_the_layer_act_bits(image, program):
    slices = program.layers[0].act_bits
    if slices == SMALL.max_slices:
        pytest.skip("layer 0 uses every slice")
    expect(image, lambda t: t.entries["slice_hi"].__setitem__(0, slices + 1),
           r"ENTRIES record 0 .*field slice_hi: .* act_bits")


def test_entry_row_group_out_of_range(image):
    expect(image, lambda t: t.entries["row_group"].__setitem__(3, 6),
           r"ENTRIES record 3 .*field row_group: 6 is not below row_groups \(6\)")


def test_entry_column_past_the_crossbar(image):
    def change(tables):
        tables.entries["col_group"][0] = 2
        for j in range(SMALL.ou_cols):
            tables.entries[f"cols.{j}.valid"][0] = j == 3
    expect(image, change, r"ENTRIES record 0 .*field cols.3.valid: column 11 is past")


def test_rowmap_index_not_below_n_inputs(image, program):
    unit = int(program.layers[0].xbars[0])

    def change(tables):
        tables.rowmap_valid[unit, 5] = True
        tables.rowmap_index[unit, 5] = program.layers[0].n_inputs
    expect(image, change, rf"section ROWMAPS record {unit * SMALL.rows + 5} \(unit {unit} row 5\)"
                          r": field index: input index \d+ is not below n_inputs")


def test_rowmap_index_on_unused_row(image, program):
    unit = int(program.layers[0].xbars[0])

    def change(tables):
        tables.rowmap_valid[unit, 2] = False
        tables.rowmap_index[unit, 2] = 3
    expect(image, change, r"ROWMAPS record \d+ .*field index: 3 on an unused row")


def test_rowmap_of_an_unowned_unit(image, program):
    owned = {int(u) for layer in program.layers for u in layer.xbars}
    free = next(u for u in range(SMALL.n_xbars) if u not in owned)
    expect(image, lambda t: t.rowmap_valid.__setitem__((free, 0), True),
           rf"ROWMAPS record {free * SMALL.rows} .*field valid: .* no layer owns unit {free}")


def test_layer_entry_range_past_the_entry_section(image):
    def change(tables):
        tables.layers["entry_count"][2] += 5
    expect(image, change, r"section LAYERS record 2 \(layer record 2\): field entry_count: "
                          r"entry range .* runs past the ENTRIES section")


def test_layer_param_range_past_the_output_section(image):
    def change(tables):
        tables.layers["n_outputs"][2] += 1
    expect(image, change, r"LAYERS record 2 .*field param_start: parameter range .* runs past")


def test_layer_entry_ranges_must_follow_each_other(image):
    def change(tables):
        tables.layers["entry_start"][1] -= 1
        tables.layers["entry_count"][1] += 1
    expect(image, change, r"LAYERS record 1 .*field entry_start: .* follow each other")


def test_layers_share_a_unit(image, program):
    unit = int(program.layers[0].xbars[0])
    expect(image, lambda t: t.xbar_masks.__setitem__((1, unit), True),
           rf"LAYERS record 1 .*field xbar_mask: unit {unit} is already owned by layer record 0")


def test_layer_clamp_lo_above_clamp_hi(image):
    def change(tables):
        tables.layers["clamp_lo"][0] = 200
        tables.layers["clamp_hi"][0] = 100
    expect(image, change, r"LAYERS record 0 .*field clamp_lo: clamp_lo 200 > clamp_hi 100")


def test_layer_n_inputs_zero(image):
    expect(image, lambda t: t.layers["n_inputs"].__setitem__(1, 0),
           r"LAYERS record 1 .*field n_inputs: 0 is not between 1 and max_in_features")


def test_cells_unit_not_below_n_xbars(image):
    expect(image, lambda t: t.cell_units.__setitem__(0, 7),
           r"section CELLS record 0 \(unit 7\): field unit: unit 7 is not below n_xbars")


def test_cells_duplicate_unit(image):
    expect(image, lambda t: t.cell_units.__setitem__(1, t.cell_units[0]),
           r"CELLS record 1 .*field unit: unit \d+ appears twice")


def test_cells_missing_for_an_owned_unit(image):
    def change(tables):
        keep = np.arange(1, len(tables.cell_units))
        tables.cell_units, tables.cells = tables.cell_units[keep], tables.cells[keep]
    expect(image, change, r"section CELLS: field unit: unit \d+, owned by layer record \d, has no "
                          r"CELLS record")


def tamper_cells(image, byte, mask):
    tables = parse_image(image, SMALL)
    sections = encode_sections(tables)
    section, payload, size, count = sections[2]
    payload = bytearray(payload)
    payload[byte] |= mask
    sections[2] = (section, bytes(payload), size, count)
    return assemble_image(SMALL, sections)


def test_cells_reserved_bits(image):
    with pytest.raises(BundleError, match=r"CELLS record 0: field reserved: reserved bits"):
        parse_image(tamper_cells(image, 3, 0x80), SMALL)


def test_cells_row_padding_bits(image):
    # SMALL rows hold 10 two-bit levels = 20 bits: bits 20..23 of each row are padding.
    with pytest.raises(BundleError, match=r"CELLS record 0 \(unit \d+\): field rows.1.pad"):
        parse_image(tamper_cells(image, 4 + 3 + 2, 0x10), SMALL)


def test_output_counts_must_match_the_layers(image):
    def change(tables):
        tables.bias = np.append(tables.bias, 0)
        tables.mult = np.append(tables.mult, 0)
        tables.shift = np.append(tables.shift, 0)
    expect(image, change, r"section OUTPUT: field record_count: \d+ records, but the layers have")


# ----------------------------------------------------------------------------- writer errors
def write_error(program, pattern):
    with pytest.raises(BundleError, match=pattern):
        encode_image(program)


def test_writer_bias_must_fit_acc_bits():
    program = make_program()
    program.layers[1].bias[4] = 1 << 23
    write_error(program, r"section OUTPUT record \d+ \(layer 'fc1' channel 4\): field bias: value "
                         r"8388608 does not fit acc_bits \(24\)")


def test_writer_mult_must_fit():
    program = make_program()
    program.layers[0].mult[0] = 1 << 16
    write_error(program, r"OUTPUT record 0 \(layer 'fc0' channel 0\): field mult")


def test_writer_cell_level_above_level_max():
    program = make_program()
    program.layers[2].cells[1, 3, 4] = 4
    write_error(program, r"section CELLS record 4 \(layer 'fc2' unit \d+ row 3 col 4\): field "
                         r"rows.3.levels.4: level 4 is not in 0 .. level_max \(3\)")


def test_writer_too_many_units():
    program = make_program(units_per_layer=(3, 2, 1))
    layer = program.layers[2]
    layer.xbars = np.append(layer.xbars, layer.xbars)
    layer.row_maps = np.concatenate([layer.row_maps] * 2)
    layer.cells = np.concatenate([layer.cells] * 2)
    write_error(program,
                r"section CELLS: field record_count: the program needs 7 crossbar units, the "
                r"config allows n_xbars = 6")


def test_writer_too_many_entries():
    program = make_program()
    layer = program.layers[0]
    layer.entries = np.concatenate([layer.entries] * 200)
    write_error(program, r"section ENTRIES: field record_count: the program needs \d+ OU entries"
                         r", the config allows max_entries = 500")


def test_writer_too_many_layers():
    config = SMALL.replace(max_layers=2)
    write_error(make_program(config), r"section LAYERS: field record_count: the program needs 3 "
                                      r"layer jobs")


def test_writer_too_many_channels():
    config = SMALL.replace(max_out_channels=20)
    program = make_program(config)
    layer = program.layers[0]
    layer.n_outputs = 21
    layer.bias, layer.mult, layer.shift = (np.zeros(21, np.int64) for _ in range(3))
    write_error(program, r"LAYERS record 0 \(layer 'fc0'\): field n_outputs: 21 is not between 1 "
                         r"and max_out_channels \(20\)")


def test_writer_unit_out_of_range_and_shared():
    program = make_program()
    program.layers[0].xbars[0] = 6
    write_error(program, r"LAYERS record 0 \(layer 'fc0'\): field xbar_mask: unit 6 is not below")
    program = make_program()
    program.layers[1].xbars[0] = program.layers[0].xbars[1]
    write_error(program, r"LAYERS record 1 \(layer 'fc1'\): field xbar_mask: unit \d+ is already "
                         r"owned by layer 'fc0'")


def test_writer_row_map_value_below_minus_one():
    program = make_program()
    program.layers[0].row_maps[0, 0] = -2
    write_error(program, r"ROWMAPS record \d+ \(layer 'fc0' unit \d+ row 0\): field index")


def test_writer_entry_of_foreign_unit():
    program = make_program()
    program.layers[0].entries["xbar"][0] = program.layers[1].xbars[0]
    write_error(program, r"ENTRIES record 0 \(layer 'fc0' entry 0\): field xbar: .* not owned")


def test_writer_negative_entry_field():
    program = make_program()
    program.layers[1].entries["cols.0.shift"][0] = -1
    write_error(program, r"ENTRIES record \d+ \(layer 'fc1' entry 0\): field cols.0.shift: -1 "
                         r"does not fit")


def test_writer_unknown_mode_and_shapes():
    program = make_program()
    program.layers[0].mode = "float"
    write_error(program, r"LAYERS record 0 \(layer 'fc0'\): field mode: unknown mode 'float'")
    program = make_program()
    program.layers[0].cells = program.layers[0].cells[:, :4]
    write_error(program, r"section CELLS \(layer 'fc0'\): field rows: cells must be .* shape")
    program = make_program()
    program.layers[2].bias = program.layers[2].bias[:-1]
    write_error(program, r"section OUTPUT \(layer 'fc2'\): field bias")


def test_writer_rejects_a_layer_missing_from_the_model(tmp_path):
    program = make_program()
    qmodel = make_qmodel(program)
    program.layers[2].name = "nope"
    with pytest.raises(BundleError, match=r"layer 'nope' is not a compute layer"):
        write_bundle(tmp_path, program, qmodel)


# ----------------------------------------------------------------------------- bundle errors
@pytest.fixture()
def bundle_dir(tmp_path, program):
    return write_bundle(tmp_path / "bundle", program, make_qmodel(program))


def edit_manifest(path, change):
    manifest = json.loads((path / "manifest.json").read_text())
    change(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_read_missing_bundle(tmp_path):
    with pytest.raises(BundleError, match=r"manifest.json: not found"):
        read_bundle(tmp_path)


def test_read_bad_json(bundle_dir):
    (bundle_dir / "manifest.json").write_text("{")
    with pytest.raises(BundleError, match=r"manifest.json: not valid JSON"):
        read_bundle(bundle_dir)


def test_read_unknown_manifest_version(bundle_dir):
    edit_manifest(bundle_dir, lambda m: m.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(BundleError, match=r"manifest.json: format_version: unknown format "
                                          rf"version {FORMAT_VERSION + 1}"):
        read_bundle(bundle_dir)


def test_read_bad_manifest_config(bundle_dir):
    edit_manifest(bundle_dir, lambda m: m["config"].update(ou_rows=999))
    with pytest.raises(BundleError, match=r"manifest.json: config: ou_rows must be between"):
        read_bundle(bundle_dir)


def test_read_image_for_another_config(bundle_dir, program):
    other = make_program(SMALL.replace(acc_bits=32))
    (bundle_dir / "image.bin").write_bytes(encode_image(other))
    with pytest.raises(BundleError, match=r"image.bin: header: field digest: config digest "
                                          r"mismatch"):
        read_bundle(bundle_dir)


def test_read_image_from_another_compilation(bundle_dir):
    (bundle_dir / "image.bin").write_bytes(encode_image(make_program(seed=9)))
    with pytest.raises(BundleError, match=r"files.image_sha256 does not match"):
        read_bundle(bundle_dir)


def test_read_corrupted_image(bundle_dir):
    blob = bytearray((bundle_dir / "image.bin").read_bytes())
    blob[-10] ^= 0xFF
    (bundle_dir / "image.bin").write_bytes(bytes(blob))
    with pytest.raises(BundleError, match=r"image.bin: (section OUTPUT: field crc|padding)"):
        read_bundle(bundle_dir)


def test_read_names_layers_in_record_errors(bundle_dir, program):
    blob = (bundle_dir / "image.bin").read_bytes()
    tables = parse_image(blob, SMALL)
    tables.entries["slice_hi"][0] = 9
    (bundle_dir / "image.bin").write_bytes(assemble_image(SMALL, encode_sections(tables)))
    with pytest.raises(BundleError, match=r"image.bin: section ENTRIES record 0 \(layer 'fc0' "
                                          r"entry 0\): field slice_hi"):
        read_bundle(bundle_dir)


def test_read_manifest_units_disagree(bundle_dir):
    edit_manifest(bundle_dir, lambda m: m["program"][0]["units"].reverse() or
                  m["program"][0]["units"].append(5))
    with pytest.raises(BundleError, match=r"program\[0\].units .* disagree with image.bin section "
                                          r"LAYERS record 0 field xbar_mask"):
        read_bundle(bundle_dir)


def test_read_manifest_entry_range_disagrees(bundle_dir):
    edit_manifest(bundle_dir, lambda m: m["program"][1]["entries"].__setitem__(1, 0))
    with pytest.raises(BundleError, match=r"program\[1\].entries .* disagree"):
        read_bundle(bundle_dir)


def test_read_manifest_missing_key(bundle_dir):
    edit_manifest(bundle_dir, lambda m: m.pop("strategy"))
    with pytest.raises(BundleError, match=r"manifest.json: missing key strategy"):
        read_bundle(bundle_dir)


def test_read_manifest_sections_disagree(bundle_dir):
    edit_manifest(bundle_dir, lambda m: m["sections"][0].update(crc32="0x00000000"))
    with pytest.raises(BundleError, match=r"sections disagree with the section table"):
        read_bundle(bundle_dir)


def test_read_reference_missing_array(bundle_dir):
    with np.load(bundle_dir / "reference.npz") as archive:
        arrays = {key: archive[key] for key in archive.files if key != "L1.scale"}
    np.savez(bundle_dir / "reference.npz", **arrays)
    with pytest.raises(BundleError, match=r"reference.npz: missing array 'L1.scale'"):
        read_bundle(bundle_dir)


def test_read_reference_not_npz(bundle_dir):
    (bundle_dir / "reference.npz").write_bytes(b"nope")
    with pytest.raises(BundleError, match=r"reference.npz: not a readable npz"):
        read_bundle(bundle_dir)


def test_manifest_rejects_unserializable_stats(tmp_path):
    program = make_program()
    program.layers[0].stats = {"bad": object()}
    with pytest.raises(BundleError, match=r"manifest.json: program.fc0.stats.bad: cannot store"):
        write_bundle(tmp_path, program, make_qmodel(program))


# ----------------------------------------------------------------------------- docs
def test_docs_field_tables_are_current():
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("bundle_layout_doc",
                                                  root / "scripts" / "bundle_layout_doc.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    text = (root / "docs" / "bundle.md").read_text()
    expected = script.replace_block(text, script.generate(preset("bwq"), "bwq"))
    assert text == expected, "run: python scripts/bundle_layout_doc.py --write docs/bundle.md"
