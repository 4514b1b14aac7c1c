"""hw/spec/network.py and the config's whole-network fields: geometry, node record, checks."""

import pytest
from amaranth.lib import data

from bitline.hw.spec.config import NETWORK_FIELDS, AcceleratorConfig
from bitline.hw.spec.encoding import flatten_fields, pack_columns, unpack
from bitline.hw.spec.network import (
    NetGeometry,
    NodeKind,
    NodeProgram,
    WindowParams,
    node_columns,
    node_layout,
    nodes_from_records,
)

NET = dict(act_buffer_depth=2000, max_nodes=8, max_map_channels=16, max_map_height=8,
           max_map_width=8)


def config(**changes):
    return AcceleratorConfig(n_xbars=4, max_layers=8, **{**NET, **changes})


def test_network_fields_default_off_and_keep_the_digest():
    plain = AcceleratorConfig()
    assert not plain.network
    assert all(getattr(plain, name) == 0 for name in NETWORK_FIELDS)
    # the digest of a config without the buffer is the one of its fields without them (and
    # without the later fields that are 0 here too)
    import hashlib
    import json
    legacy = {k: v for k, v in plain.to_dict().items()
              if k not in NETWORK_FIELDS + ("pipeline_stages", "emulator_ou_words")}
    assert plain.digest == hashlib.sha256(json.dumps(legacy, sort_keys=True).encode()
                                          ).hexdigest()
    on = config()
    assert on.network and on.digest != on.replace(act_buffer_depth=2001).digest


@pytest.mark.parametrize("name", NETWORK_FIELDS)
def test_network_fields_all_or_none(name):
    with pytest.raises(ValueError, match=rf"{name} must be >= 1 when the whole-network .* "
                                         r"not 0"):
        config(**{name: 0})


def test_config_file_with_some_network_fields_names_the_missing_ones(tmp_path):
    """A file that sets act_buffer_depth alone is refused naming the file, what it sets and
    what it leaves out (not "max_nodes ... not 0", a value the user never wrote); a file
    that sets all five, or only zeros, loads."""
    path = tmp_path / "partial.toml"
    path.write_text('[accelerator]\npreset = "bwq"\nact_buffer_depth = 4096\nmax_nodes = 9\n')
    with pytest.raises(ValueError, match=r"partial.toml: sets act_buffer_depth = 4096, "
                                         r"max_nodes = 9 but not max_map_channels, "
                                         r"max_map_height, max_map_width: .* all five or none"):
        AcceleratorConfig.load(path)
    path.write_text("[accelerator]\nact_buffer_depth = 0\n")
    assert not AcceleratorConfig.load(path).network
    path.write_text("[accelerator]\n" + "".join(f"{name} = 8\n" for name in NETWORK_FIELDS))
    loaded = AcceleratorConfig.load(path)
    assert loaded.network and loaded.pinned == set(NETWORK_FIELDS)


def test_geometry_from_config():
    geometry = NetGeometry.from_config(config())
    assert (geometry.act_bits, geometry.depth, geometry.max_channels, geometry.max_height,
            geometry.max_width) == (8, 2000, 16, 8, 8)
    with pytest.raises(ValueError, match="no whole-network hardware"):
        NetGeometry.from_config(AcceleratorConfig())
    assert NetGeometry.from_config(AcceleratorConfig(), depth=64).depth == 64


def _add(**changes):
    values = dict(kind=NodeKind.ADD, window=WindowParams(4, 3, 3, base=0), dst_base=100,
                  dst_channels=4, src1_base=40, zero_a=3, zero_b=250, zero_point=7,
                  clamp_lo=7, clamp_hi=255, mult_a=-32768, mult_b=32767, shift=63,
                  name="add1")
    values.update(changes)
    return NodeProgram(**values)


def test_node_layout_fields_in_contract_order():
    layout = node_layout(config())
    names = [name for name, _ in layout]
    assert names == ["kind", "layer", "to_host", "count_include_pad", "window", "src1_base",
                     "dst_base", "dst_channels", "zero_a", "zero_b", "zero_point",
                     "clamp_lo", "clamp_hi", "mult_a", "mult_b", "shift"]
    assert layout["layer"].shape.width == 3         # clog2(max_layers = 8)
    assert layout["dst_base"].shape.width == 11     # addresses 0 .. 1999
    assert layout["mult_a"].shape.signed and layout["mult_a"].shape.width == 16
    assert isinstance(layout["window"].shape, data.StructLayout)


def test_node_record_pack_round_trip():
    cfg = config()
    conv = NodeProgram(NodeKind.COMPUTE, WindowParams(1, 8, 8, kernel=(3, 3),
                                                      pads=(1, 1, 1, 1), pad_value=9),
                       dst_base=64, dst_channels=16, layer=5, name="conv")
    pool = NodeProgram(NodeKind.POOL_AVG, WindowParams(16, 8, 8, kernel=(2, 2), stride=(2, 2),
                                                       pads=(1, 1, 1, 1), pad_value=9,
                                                       base=64),
                       dst_base=0, dst_channels=16, count_include_pad=True, to_host=True)
    nodes = [conv, pool, _add()]
    records = [node.record(cfg) for node in nodes]
    layout = node_layout(cfg)
    blob = pack_columns(layout, len(records), node_columns(cfg, records))
    back = nodes_from_records(cfg, unpack(layout, blob), ["conv", "pool", "add1"])
    assert back == nodes
    assert [node.record(cfg) for node in back] == records
    # the signed multipliers read back with their sign, the record bits are two's complement
    assert (back[2].mult_a, back[2].mult_b) == (-32768, 32767)
    offset = {name: bit for name, bit, _ in flatten_fields(layout)}["mult_a"]
    assert (int.from_bytes(blob[-(len(blob) // 3):], "little") >> offset) & 0xFFFF == 0x8000


@pytest.mark.parametrize(("node", "message"), [
    (_add(kind=5), r"field kind: 5 is no node kind"),
    (_add(mult_a=32768), r"field mult_a: 32768 does not fit a signed 16-bit"),
    (_add(shift=64), r"field shift: 64 is not in 0 \.\. 63"),
    (_add(zero_b=256), r"field zero_b: 256 is not a 8-bit code"),
    (_add(clamp_lo=9, clamp_hi=8), r"field clamp_lo: 9 is above clamp_hi \(8\)"),
    (_add(src1_base=1980), r"field src1_base: second operand at 1980 of 36 codes ends at "
                          r"2016, beyond act_buffer_depth \(2000\)"),
    (_add(window=WindowParams(4, 3, 3, kernel=(2, 2))), r"field window: an ADD node reads "
                                                        r"a 1x1 window"),
    (_add(dst_base=1990), r"field dst_base: output map at 1990 of 36 codes ends at 2026"),
    (_add(dst_channels=5), r"field dst_channels: 5 on a ADD node whose source has 4"),
    (_add(dst_channels=17, kind=NodeKind.COMPUTE, src1_base=0),
     r"field dst_channels: 17 is not in 1 \.\. max_map_channels \(16\)"),
    (_add(layer=2), r"field layer: 2 on a ADD node"),
    (_add(layer=8, kind=NodeKind.COMPUTE), r"field layer: 8 is not below max_layers"),
    (_add(count_include_pad=True), r"field count_include_pad: set on a ADD node"),
    (_add(window=WindowParams(17, 1, 1)), r"field window: window record: channels=17 "
                                          r"exceeds"),
    (NodeProgram(NodeKind.POOL_MAX, WindowParams(2, 4, 4, kernel=(2, 2), pad_value=3),
                 dst_base=50, dst_channels=2), r"field window.pad_value: 3 on a POOL_MAX"),
    (NodeProgram(NodeKind.POOL_AVG, WindowParams(2, 4, 4, kernel=(2, 2), pad_value=3),
                 dst_base=50, dst_channels=2), r"field window.pad_value: 3 on a POOL_AVG"),
    (NodeProgram(NodeKind.COMPUTE, WindowParams(2, 4, 4), dst_base=50, dst_channels=2,
                 zero_a=1), r"field zero_a: 1 on a COMPUTE node \(ADD only"),
])
def test_node_record_errors_name_field_and_value(node, message):
    cfg = config()
    with pytest.raises(ValueError, match=message):
        node.record(cfg)


def test_window_from_record_inverts_record():
    geometry = NetGeometry(depth=4096, max_channels=8, max_height=9, max_width=9)
    window = WindowParams(3, 9, 7, kernel=(3, 2), stride=(2, 3), pads=(1, 0, 1, 2),
                          dilation=(1, 2), pad_value=4, base=11)
    record = window.record(geometry)
    again = WindowParams.from_record(record)
    assert again.record(geometry) == record and again.out_hw() == window.out_hw()
