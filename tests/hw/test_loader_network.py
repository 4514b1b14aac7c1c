"""The loader on whole-network hardware: NETWORK records to node_write, n_nodes, CAPACITY."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from amaranth.lib import data

from bitline.hw.loader.loader import Loader
from bitline.hw.spec.encoding import record_bytes
from bitline.hw.spec.image import (
    HEADER_BYTES,
    HEADER_LAYOUT,
    SECTION_ENTRY_BYTES,
    SectionId,
    image_sections,
)
from bitline.hw.spec.network import NodeKind, NodeProgram, WindowParams, node_layout
from bitline.hw.spec.registers import ErrorCode
from bitline.hw.spec.tables import program_tables
from bitline.sw.bundle import encode_image, parse_image
from bitline.sw.bundle.codec import assemble_image, encode_sections
from bitline.sw.bundle.tables import ParsedImage
from bitline.sw.mapping import Program, map_matrix

from support.configs import small_config
from support.simulation import simulate

NETWORK = dict(act_buffer_depth=32, max_nodes=4, max_map_channels=9, max_map_height=3,
               max_map_width=3)


def network_program(config, seed=0) -> Program:
    """conv 3x3 (1x3x3 -> 4x1x1), gap, add of the two, gemm 4 -> 5 (raw) to the host."""
    rng = np.random.default_rng(seed)
    layers, offset = [], 0
    for index, (n_out, n_in) in enumerate(((4, 9), (5, 4))):
        layer = map_matrix(rng.integers(-7, 8, (n_out, n_in)), config, "bwq", act_bits=4,
                           xbar_offset=offset, name=f"l{index}")
        offset = int(layer.xbars.max()) + 1
        layer.bias = rng.integers(-30, 30, n_out)
        layer.mult = rng.integers(1 << 14, 1 << 15, n_out)
        layer.shift = rng.integers(14, 18, n_out)
        layer.mode = "requant" if index == 0 else "raw"
        layer.zero_point, layer.clamp_lo, layer.clamp_hi = 1, 1, 15
        layers.append(layer)
    nodes = [
        NodeProgram(NodeKind.COMPUTE, WindowParams(1, 3, 3, kernel=(3, 3), pad_value=3),
                    dst_base=9, dst_channels=4, layer=0, name="conv"),
        NodeProgram(NodeKind.POOL_AVG, WindowParams.flatten(4, 1, 1, base=9), dst_base=0,
                    dst_channels=4, name="gap"),
        NodeProgram(NodeKind.ADD, WindowParams(4, 1, 1, base=0), dst_base=13,
                    dst_channels=4, src1_base=9, zero_a=1, zero_b=1, zero_point=2,
                    clamp_lo=2, clamp_hi=15, mult_a=-12000, mult_b=20000, shift=15,
                    name="add"),
        NodeProgram(NodeKind.COMPUTE, WindowParams.flatten(4, 1, 1, base=13), dst_base=0,
                    dst_channels=5, layer=1, to_host=True, name="fc"),
    ]
    return Program(config, "bwq", layers, nodes=nodes)


def unchecked_image(program: Program) -> bytes:
    """The image of ``program`` without the validator (a record count beyond capacity)."""
    tables = ParsedImage.of(program_tables(program))
    return assemble_image(program.config, encode_sections(tables))


async def stream_image(ctx, dut, image: bytes, writes: list | None = None, *,
                       gap_every: int = 0):
    """Send ``image`` (restart first), collect ``node_write`` into ``writes``; return a few
    cycles after the last byte (the last record's write and ``programmed`` are registered)."""
    ctx.set(dut.restart, 1)
    await ctx.tick()
    ctx.set(dut.restart, 0)
    await ctx.tick()
    for index, byte in enumerate(image):
        if gap_every and index % gap_every == gap_every - 1:
            ctx.set(dut.bytes.valid, 0)
            await ctx.tick()
        ctx.set(dut.bytes.valid, 1)
        ctx.set(dut.bytes.payload, byte)
        while True:
            ready = ctx.get(dut.bytes.ready)
            _collect(ctx, dut, writes)
            await ctx.tick()
            if ready:
                break
    ctx.set(dut.bytes.valid, 0)
    for _ in range(12):
        _collect(ctx, dut, writes)
        await ctx.tick()


def _collect(ctx, dut, writes):
    if writes is not None and ctx.get(dut.node_write.valid):
        writes.append((ctx.get(dut.node_write.payload.addr),
                       ctx.get(dut.node_write.payload.record.as_value())))


def section_records(image: bytes, config) -> list[int]:
    """The NETWORK section's records as integers (from the section table, not the loader)."""
    parsed = parse_image(image, config)
    info = parsed.sections[SectionId.NETWORK]
    size = record_bytes(node_layout(config))
    payload = image[info.offset:info.offset + info.length]
    return [int.from_bytes(payload[i * size:(i + 1) * size], "little")
            for i in range(info.record_count)]


def test_network_records_reach_node_write():
    config = small_config(n_xbars=6, **NETWORK)
    program = network_program(config)
    image = encode_image(program)
    expected = section_records(image, config)
    assert len(expected) == 4 and image_sections(config)[-1] == SectionId.NETWORK
    dut = Loader(config, unit_entries=64)

    async def testbench(ctx):
        writes = []
        await stream_image(ctx, dut, image, writes, gap_every=37)
        assert ctx.get(dut.error) == 0 and ctx.get(dut.programmed)
        assert ctx.get(dut.n_nodes) == 4 and ctx.get(dut.n_layers) == 2
        assert writes == list(enumerate(expected))
        # fields decode from the port's layout, e.g. the add's signed multiplier
        add = data.Const(node_layout(config), writes[2][1])
        assert (add.kind, add.mult_a, add.mult_b, add.src1_base) == (NodeKind.ADD, -12000,
                                                                     20000, 9)
        assert add.window.base == 0 and data.Const(node_layout(config), writes[3][1]).to_host
        # a new image restarts the count: the same image again gives the same writes
        again = []
        await stream_image(ctx, dut, image, again)
        assert again == writes and ctx.get(dut.n_nodes) == 4

    simulate(dut, testbench)


def test_too_many_nodes_is_a_capacity_error():
    config = small_config(n_xbars=6, **{**NETWORK, "max_nodes": 3})
    program = network_program(config)
    with pytest.raises(ValueError, match=r"section NETWORK: field record_count: 4 network "
                                         r"nodes exceed the config's capacity max_nodes = 3"):
        encode_image(program)
    image = unchecked_image(program)
    dut = Loader(config, unit_entries=64)

    async def testbench(ctx):
        writes = []
        await stream_image(ctx, dut, image, writes)
        assert ctx.get(dut.error) == ErrorCode.CAPACITY
        assert not ctx.get(dut.programmed) and ctx.get(dut.n_nodes) == 0 and writes == []

    simulate(dut, testbench)


def test_network_section_on_plain_hardware_is_refused():
    """An image with a NETWORK section for a config without the buffer: BAD_DIGEST (the
    config differs) from the loader; a table entry of id 6 in a plain image: BAD_SECTION."""
    plain = small_config(n_xbars=6)
    assert SectionId.NETWORK not in image_sections(plain)
    dut = Loader(plain, unit_entries=64)
    assert not hasattr(dut, "node_write") and not hasattr(dut, "n_nodes")
    program = network_program(small_config(n_xbars=6, **NETWORK))
    image = encode_image(Program(plain, "bwq", program.layers))
    # turn the OUTPUT entry's id into NETWORK's and fix the table CRC
    blob = bytearray(image)
    count = len(image_sections(plain))
    entry = HEADER_BYTES + (count - 1) * SECTION_ENTRY_BYTES
    struct.pack_into("<H", blob, entry, int(SectionId.NETWORK))
    table = bytes(blob[HEADER_BYTES:HEADER_BYTES + count * SECTION_ENTRY_BYTES])
    struct.pack_into("<I", blob, HEADER_LAYOUT["table_crc"].offset // 8,
                     zlib.crc32(table) & 0xFFFFFFFF)
    header_crc_at = HEADER_LAYOUT["header_crc"].offset // 8
    struct.pack_into("<I", blob, header_crc_at, zlib.crc32(bytes(blob[:header_crc_at]))
                     & 0xFFFFFFFF)

    async def testbench(ctx):
        await stream_image(ctx, dut, image)
        assert ctx.get(dut.error) == 0 and ctx.get(dut.programmed)
        await stream_image(ctx, dut, bytes(blob))
        assert ctx.get(dut.error) == ErrorCode.BAD_SECTION

    simulate(dut, testbench)
