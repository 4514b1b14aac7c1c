"""Program loader: image.bin (from the bundle writer) into the memories, CRCs in hardware."""

import struct

import numpy as np
import pytest

from bitline.hw.core.top import Accelerator
from bitline.hw.loader.header import MAX_SECTIONS, HeaderParser
from bitline.hw.spec.image import (
    FORMAT_VERSION,
    HEADER_BYTES,
    HEADER_LAYOUT,
    MAGIC_WORD,
    SECTION_ENTRY_BYTES,
    SECTION_ENTRY_LAYOUT,
    config_digest_bytes,
    crc32,
    struct_format,
)
from bitline.hw.spec.registers import ErrorCode, Register, Status
from bitline.sim.amaranth import csr_read, csr_write, load_image, run_job
from bitline.sw.bundle import encode_image
from bitline.sw.mapping import Program, map_matrix

from support.accelerator import expected_outputs
from support.configs import TEST_CONFIGS, small_config
from support.simulation import simulate


def two_layer_program(config, strategy="bwq", seed=0):
    rng = np.random.default_rng(seed)
    layers, weights = [], []
    offset = 0
    for index, (n_out, n_in) in enumerate(((4, 9), (5, 6))):
        weight = rng.integers(-7, 8, (n_out, n_in))
        layer = map_matrix(weight, config, strategy, act_bits=4, xbar_offset=offset,
                           name=f"l{index}")
        offset = int(layer.xbars.max()) + 1
        layer.bias = rng.integers(-30, 30, n_out)
        layer.mult = rng.integers(1 << 14, 1 << 15, n_out)
        layer.shift = rng.integers(14, 18, n_out)
        layer.mode = "requant" if index == 0 else "raw"
        layer.zero_point, layer.clamp_lo, layer.clamp_hi = 1, 1, 15
        layers.append(layer)
        weights.append(weight)
    return Program(config, strategy, layers), weights


@pytest.mark.parametrize("name", ["full-adc", "ragged-2bit"])
def test_loaded_image_runs_both_layers(name):
    config = small_config(**{**TEST_CONFIGS[name], "n_xbars": 6})
    program, weights = two_layer_program(config, seed=len(name))
    image = encode_image(program)
    dut = Accelerator(config)
    rng = np.random.default_rng(1)
    vectors = [rng.integers(0, 16, (2, layer.n_inputs)) for layer in program.layers]

    async def testbench(ctx):
        status = await load_image(ctx, dut, image, gap_every=97)
        assert status & Status.PROGRAMMED and not status & Status.ERROR, hex(status)
        assert await csr_read(ctx, dut.csr, Register.N_LAYERS) == 2
        for index, layer in enumerate(program.layers):
            outputs, _, _ = await run_job(ctx, dut, index, vectors[index], layer.n_outputs)
            assert np.array_equal(outputs, expected_outputs(config, layer, weights[index],
                                                            vectors[index]))

    simulate(dut, testbench)


def corrupt(image: bytes, offset: int) -> bytes:
    blob = bytearray(image)
    blob[offset] ^= 0x10
    return bytes(blob)


def test_crc_and_header_errors_are_reported():
    config = small_config(n_xbars=6)
    program, weights = two_layer_program(config)
    image = encode_image(program)
    table = HEADER_BYTES
    last_payload = len(image) - 8  # inside the OUTPUT section (or its padding-free tail)
    other = encode_image(Program(config.replace(clock_mhz=999.0), program.strategy,
                                 program.layers))
    cases = [
        (corrupt(image, 0), ErrorCode.BAD_MAGIC),
        (corrupt(image, HEADER_LAYOUT["image_bytes"].offset // 8), ErrorCode.HEADER_CRC),
        (corrupt(image, table + 2 * SECTION_ENTRY_BYTES - 1), ErrorCode.TABLE_CRC),
        (corrupt(image, last_payload), ErrorCode.SECTION_CRC),
        (other, ErrorCode.BAD_DIGEST),
    ]
    dut = Accelerator(config)
    rng = np.random.default_rng(0)
    vectors = rng.integers(0, 16, (1, program.layers[0].n_inputs))

    async def testbench(ctx):
        for blob, code in cases:
            status = await load_image(ctx, dut, blob)
            assert status & Status.ERROR and status >> 8 == code, (hex(status), code)
            assert not status & Status.PROGRAMMED
            # a job on an unprogrammed accelerator is refused
            await csr_write(ctx, dut.csr, Register.CTRL, 1)
            assert not await csr_read(ctx, dut.csr, Register.STATUS) & Status.BUSY
        # a good image after the errors loads and runs
        status = await load_image(ctx, dut, image)
        assert status & Status.PROGRAMMED and not status & Status.ERROR
        outputs, _, _ = await run_job(ctx, dut, 0, vectors, program.layers[0].n_outputs)
        assert np.array_equal(outputs, expected_outputs(config, program.layers[0], weights[0],
                                                        vectors))

    simulate(dut, testbench)


def test_entry_capacity_error():
    config = small_config(n_xbars=6)
    program, _ = two_layer_program(config, strategy="isaac")
    dut = Accelerator(config, unit_entries=3)  # isaac: 12 entries on the busiest unit

    async def testbench(ctx):
        status = await load_image(ctx, dut, encode_image(program))
        assert status >> 8 == ErrorCode.CAPACITY

    simulate(dut, testbench)


# ---- the header parser on its own ------------------------------------------------------

def header_image(config, section_count=2, table_flip=None, **fields) -> bytes:
    """Return a header and a section table of ``section_count`` made-up entries.

    ``fields`` override header fields after the CRCs are computed (``header_crc`` itself
    included), so exactly that field is wrong; ``table_flip`` flips that table byte after
    ``table_crc`` is computed.
    """
    entry_format, entry_names = struct_format(SECTION_ENTRY_LAYOUT)
    table = b"".join(
        struct.pack(entry_format, *(1000 * index + position + 1
                                    for position, _ in enumerate(entry_names)))
        for index in range(section_count))
    header_format, header_names = struct_format(HEADER_LAYOUT)
    digest = config_digest_bytes(config)
    values = {"magic": MAGIC_WORD, "version": FORMAT_VERSION, "header_bytes": HEADER_BYTES,
              "section_count": section_count, "table_entry_bytes": SECTION_ENTRY_BYTES,
              "image_bytes": 4096, "table_crc": crc32(table), "header_crc": 0,
              **{f"digest.{i}": digest[i] for i in range(len(digest))}}
    crc_at = HEADER_LAYOUT["header_crc"].offset // 8
    values["header_crc"] = crc32(struct.pack(header_format, *(values[n] for n in header_names))
                                 [:crc_at])
    values.update(fields)
    if table_flip is not None:
        table = bytearray(table)
        table[table_flip] ^= 0x01
    return struct.pack(header_format, *(values[n] for n in header_names)) + bytes(table)


def run_parser(config, blob: bytes):
    """Feed ``blob`` (with a restart first); return the reports and the table it kept."""
    dut = HeaderParser(config)
    reports = {"valid": 0, "errors": [], "table": None}

    async def testbench(ctx):
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        position, idle = 0, 0
        while idle < 4:  # a few cycles without a byte taken: the parser has stopped
            ctx.set(dut.bytes.valid, position < len(blob))
            ctx.set(dut.bytes.payload, blob[position] if position < len(blob) else 0)
            taken = ctx.get(dut.bytes.valid) and ctx.get(dut.bytes.ready)
            if ctx.get(dut.error.valid):
                reports["errors"].append(ErrorCode(ctx.get(dut.error.payload)))
            if ctx.get(dut.table.valid):
                reports["valid"] += 1
                reports["table"] = (ctx.get(dut.table.section_count),
                                    ctx.get(dut.table.image_bytes),
                                    [ctx.get(dut.table.entries[i].as_value())
                                     for i in range(MAX_SECTIONS)])
            await ctx.tick()
            position += taken
            idle = 0 if taken else idle + 1
        assert not ctx.get(dut.busy)
        reports["taken"] = position

    simulate(dut, testbench)
    return reports


def test_header_parser_accepts_a_good_header_and_table():
    config = small_config()
    blob = header_image(config, section_count=2)
    reports = run_parser(config, blob)
    assert reports["errors"] == [] and reports["valid"] == 1
    assert reports["taken"] == len(blob)  # nothing past the table is taken
    count, image_bytes, entries = reports["table"]
    assert (count, image_bytes) == (2, 4096)
    for index in range(2):
        entry = blob[HEADER_BYTES + index * SECTION_ENTRY_BYTES:][:SECTION_ENTRY_BYTES]
        assert entries[index] == int.from_bytes(entry, "little")


def test_header_parser_accepts_an_empty_table():
    reports = run_parser(small_config(), header_image(small_config(), section_count=0))
    assert reports["errors"] == [] and reports["valid"] == 1
    assert reports["table"][0] == 0


@pytest.mark.parametrize("fields, code", [
    ({"magic": MAGIC_WORD ^ 1}, ErrorCode.BAD_MAGIC),
    ({"version": FORMAT_VERSION + 1}, ErrorCode.BAD_VERSION),
    ({"header_bytes": HEADER_BYTES + 4}, ErrorCode.BAD_HEADER),
    ({"table_entry_bytes": SECTION_ENTRY_BYTES - 4}, ErrorCode.BAD_HEADER),
    ({"section_count": MAX_SECTIONS + 1}, ErrorCode.BAD_HEADER),
    ({"digest.3": 0x5A}, ErrorCode.BAD_DIGEST),
    ({"image_bytes": 4097}, ErrorCode.HEADER_CRC),
    ({"table_flip": SECTION_ENTRY_BYTES + 5}, ErrorCode.TABLE_CRC),
])
def test_header_parser_reports_the_bad_field(fields, code):
    config = small_config()
    if "digest.3" in fields and config_digest_bytes(config)[3] == fields["digest.3"]:
        fields = {"digest.3": fields["digest.3"] ^ 0xFF}
    reports = run_parser(config, header_image(config, **fields))
    assert reports["errors"] == [code] and reports["valid"] == 0
