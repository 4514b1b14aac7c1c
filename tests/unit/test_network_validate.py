"""The validator's NETWORK checks and edited whole-network bundles: each error names the
section, record, node, field and value; the bitline commands exit with it, never 0."""

from __future__ import annotations

import struct
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bitline.hw.spec.encoding import flatten_fields, pack_columns, unpack
from bitline.hw.spec.image import (
    HEADER_BYTES,
    HEADER_LAYOUT,
    SECTION_ENTRY_BYTES,
    SECTION_ENTRY_LAYOUT,
    SectionId,
    crc32,
    struct_format,
)
from bitline.hw.spec.network import NodeKind, node_layout
from bitline.hw.spec.program import ProgramError
from bitline.hw.spec.validate import validate_program
from bitline.sw import api
from bitline.sw.bundle import BundleError, parse_image, read_bundle, write_bundle
from bitline.sw.cli import main

RESNET = str(Path(__file__).resolve().parents[2] / "sw" / "models" / "digits_resnet.onnx")


@pytest.fixture(scope="module")
def compiled():
    return api.compile(RESNET, "bwq", network=True)


def with_nodes(program, changes: dict[int, dict]):
    """``program`` with node ``i`` changed by ``changes[i]`` (``window`` a dict of its own)."""
    nodes = list(program.nodes)
    for index, change in changes.items():
        change = dict(change)
        window = change.pop("window", None)
        if window:
            change["window"] = replace(nodes[index].window, **window)
        nodes[index] = replace(nodes[index], **change)
    return replace(program, nodes=nodes)


def index_of(program, kind, nth=0):
    return [i for i, node in enumerate(program.nodes) if node.kind == kind][nth]


def test_the_compiled_program_is_valid(compiled):
    tables = validate_program(compiled.program)
    assert tables.nodes == compiled.program.nodes


@pytest.mark.parametrize(("change", "message"), [
    (lambda p: {3: {"to_host": True}},
     r"record 3 \(node '/Add'\): field dst_base: 1088 on the to_host node"),
    (lambda p: {3: {"to_host": True, "dst_base": 0}},
     r"record 3 \(node '/Add'\): field to_host: 1: set on the network's last node \(node 9\)"),
    (lambda p: {9: {"to_host": False, "dst_base": 0}},
     r"record 9 \(node '/fc/Gemm'\): field to_host: 0"),
    (lambda p: {0: {"layer": 64}},
     r"record 0 \(node '/stem/stem.0/Conv'\): field layer: 64 is not below max_layers"),
    (lambda p: {0: {"layer": 12}},
     r"record 0 \(node '/stem/stem.0/Conv'\): field layer: 12 is not a layer record \(the "
     r"LAYERS section has 7\)"),
    (lambda p: {1: {"layer": 5}},
     r"record 1 \(node '/block1_a/block1_a.0/Conv'\): field window.channels: the window "
     r"reads 16 x 3 x 3 = 144 inputs per vector, layer '/block2_shortcut/block2_shortcut.0/"
     r"Conv' has n_inputs 16"),
    (lambda p: {0: {"dst_channels": 15}},
     r"record 0 \(node '/stem/stem.0/Conv'\): field dst_channels: 15, layer "
     r"'/stem/stem.0/Conv' has n_outputs 16"),
    (lambda p: {0: {"window": {"base": 5}}},
     r"record 0 \(node '/stem/stem.0/Conv'\): field window.base: 5: node 0 reads the network "
     r"input"),
    (lambda p: {1: {"window": {"base": 3000}}},
     r"record 1 .*: field window: window record: map at base 3000 of 16x8x8 codes ends at "
     r"4024, beyond the buffer's depth 3136"),
    (lambda p: {1: {"window": {"base": 100}}},
     r"record 1 .*: field window.base: 100: the node reads a 16x8x8 map at 100, the buffer "
     r"there holds never written, node 0's output"),
    # block1_b writes over part of the stem's output, which the add still reads
    (lambda p: {2: {"dst_base": 32}, 3: {"window": {"base": 32}}},
     r"record 3 \(node '/Add'\): field src1_base: 64: the node reads a 16x8x8 map at 64, the "
     r"buffer there holds node 0's output, node 2's output"),
    (lambda p: {5: {"dst_base": 0}},
     r"record 5 \(node '/block2_b/block2_b.0/Conv'\): field dst_base: 0: the output map "
     r"\[0, 512\) overlaps the map the node reads at \[0, 512\)"),
    (lambda p: {3: {"mult_a": -40000}},
     r"record 3 \(node '/Add'\): field mult_a: -40000 does not fit a signed 16-bit"),
    (lambda p: {3: {"zero_point": 256}}, r"record 3 \(node '/Add'\): field zero_point: 256"),
    (lambda p: {8: {"kind": NodeKind.POOL_MAX, "window": {"pad_value": 4}}},
     r"record 8 \(node '/pool/GlobalAveragePool'\): field window.pad_value: 4 on a POOL_MAX"),
    (lambda p: {8: {"count_include_pad": True, "window": {"pad_value": 4}, "kind":
                    NodeKind.ADD}},
     r"record 8 \(node '/pool/GlobalAveragePool'\): field count_include_pad: set on a ADD"),
])
def test_each_error_names_node_field_and_value(compiled, change, message):
    program = with_nodes(compiled.program, change(compiled.program))
    with pytest.raises(ProgramError, match=r"program: section NETWORK " + message):
        validate_program(program)


def test_raw_layer_only_on_the_host_node(compiled):
    program = compiled.program
    layers = list(program.layers)
    layers[0] = replace(layers[0], mode="raw")
    with pytest.raises(ProgramError, match=r"record 0 \(node '/stem/stem.0/Conv'\): field "
                                           r"layer: layer '/stem/stem.0/Conv' outputs raw"):
        validate_program(replace(program, layers=layers))


def test_node_count_beyond_max_nodes(compiled):
    program = compiled.program
    small = replace(program, config=program.config.replace(max_nodes=9))
    with pytest.raises(ProgramError, match=r"section NETWORK: field record_count: 10 network "
                                           r"nodes exceed the config's capacity max_nodes = 9"):
        validate_program(small)


def test_a_map_read_one_code_off(compiled):
    """Node 4 reads the add's output at 1088; one code further it reads a map made of the
    add's output and block1_b's."""
    program = compiled.program
    add = index_of(program, NodeKind.ADD)
    assert program.nodes[add + 1].window.base == program.nodes[add].dst_base == 1088
    moved = with_nodes(program, {add + 1: {"window": {"base": 1089}}})
    with pytest.raises(ProgramError, match=r"record 4 .*: field window.base: 1089: the node "
                                           r"reads a 16x8x8 map at 1089, the buffer there "
                                           r"holds node 2's output, node 3's output"):
        validate_program(moved)


# ---------------------------------------------------------------------- edited images
_ENTRY_FORMAT, _ENTRY_NAMES = struct_format(SECTION_ENTRY_LAYOUT)


def edit_node(image: bytes, config, index: int, field: str, value: int) -> bytes:
    """Return ``image`` with NETWORK record ``index``'s ``field`` set to ``value`` and every
    CRC recomputed (an edit the CRCs cannot see)."""
    blob = bytearray(image)
    count = struct.unpack_from("<H", blob, HEADER_LAYOUT["section_count"].offset // 8)[0]
    for entry in range(count):
        at = HEADER_BYTES + entry * SECTION_ENTRY_BYTES
        row = dict(zip(_ENTRY_NAMES, struct.unpack_from(_ENTRY_FORMAT, blob, at)))
        if row["id"] == SectionId.NETWORK:
            break
    layout = node_layout(config)
    start, end = row["offset"], row["offset"] + row["length"]
    records = unpack(layout, bytes(blob[start:end]))
    records[field][index] = value
    columns = {name: records[name] for name, _, _ in flatten_fields(layout)}
    blob[start:end] = pack_columns(layout, len(records), columns)
    row["crc"] = crc32(bytes(blob[start:end]))
    struct.pack_into(_ENTRY_FORMAT, blob, at, *(row[name] for name in _ENTRY_NAMES))
    table = bytes(blob[HEADER_BYTES:HEADER_BYTES + count * SECTION_ENTRY_BYTES])
    struct.pack_into("<I", blob, HEADER_LAYOUT["table_crc"].offset // 8, crc32(table))
    header_crc = HEADER_LAYOUT["header_crc"].offset // 8
    struct.pack_into("<I", blob, header_crc, crc32(bytes(blob[:header_crc])))
    return bytes(blob)


def test_edit_helper_changes_exactly_one_field(compiled):
    from bitline.sw.bundle import encode_image

    config = compiled.program.config
    image = encode_image(compiled.program)
    same = edit_node(image, config, 3, "shift", compiled.program.nodes[3].shift)
    assert same == image
    edited = edit_node(image, config, 3, "shift", 13)
    assert sum(a != b for a, b in zip(image, edited)) >= 1
    with pytest.raises(BundleError, match=r"field header_crc|field crc"):
        parse_image(bytes(b ^ (i == len(image) - 1) for i, b in enumerate(edited)), config)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("dst_channels", 15, r"section NETWORK record 0 \(node '/stem/stem.0/Conv'\): field "
                         r"dst_channels: 15, layer '/stem/stem.0/Conv' has n_outputs 16"),
    ("window.out_h", 5, r"section NETWORK record 0 \(node '/stem/stem.0/Conv'\): field "
                        r"window.out_h: 5: a map of 8 with leading padding 1, kernel 3, "
                        r"stride 1, dilation 1 gives at least 7"),
    ("to_host", 1, r"section NETWORK record 0 .*: field dst_base: 64 on the to_host node"),
    ("kind", 1, r"section NETWORK record 0 .*: field dst_channels: 16 on a POOL_MAX node "
                r"whose source has 1 channels"),
    ("window.kernel_h", 0, r"section NETWORK record 0 .*: field window: window record: "
                           r"kernel_h must be >= 1, not 0"),
    ("layer", 3, r"section NETWORK record 0 .*: field window.channels: the window reads 1 x 3 "
                 r"x 3 = 9 inputs per vector, layer '/block2_a/block2_a.0/Conv' has n_inputs "
                 r"144"),
])
def test_edited_node_record_is_named(tmp_path, compiled, capsys, field, value, message):
    out = write_bundle(tmp_path / "b", compiled.program, compiled.qmodel)
    image = (out / "image.bin").read_bytes()
    (out / "image.bin").write_bytes(edit_node(image, compiled.program.config, 0, field, value))
    with pytest.raises(BundleError, match=message):
        read_bundle(out)
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 8, 8)))
    for command in (["run", str(out), "-i", str(tmp_path / "x.npy"), "-o",
                     str(tmp_path / "y.npz"), "-b", "golden"],
                    ["report", str(out)]):
        assert main(command) == 2
        assert "error: " in capsys.readouterr().err


def test_edited_manifest_network_list(tmp_path, compiled):
    import json

    out = write_bundle(tmp_path / "b", compiled.program, compiled.qmodel)
    path = out / "manifest.json"
    original = path.read_text()
    manifest = json.loads(original)
    manifest["network"][2]["kind"] = "ADD"
    path.write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"network\[2\]\.kind 'ADD' disagrees with image.bin "
                                          r"section NETWORK record 2 field kind 'COMPUTE'"):
        read_bundle(out)
    manifest = json.loads(original)
    del manifest["network"]
    path.write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"missing key network \(image.bin section NETWORK "
                                          r"has 10 records\)"):
        read_bundle(out)
    manifest = json.loads(original)
    manifest["network"][4]["name"] = "renamed"
    path.write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"network\[4\]\.name"):
        read_bundle(out)
