"""Program loader: image.bin (from the bundle writer) into the memories, CRCs in hardware."""

import numpy as np
import pytest

from bitline.hw.core.top import Accelerator
from bitline.hw.spec.image import HEADER_BYTES, HEADER_LAYOUT, SECTION_ENTRY_BYTES
from bitline.hw.spec.registers import ErrorCode, Register, Status
from bitline.sim.amaranth import csr_read, csr_write, load_image, run_job
from bitline.sw.bundle import encode_image
from bitline.sw.integer.arith import output_unit
from bitline.sw.mapping import Program, map_matrix

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


def expected(layer, weight, vectors):
    return output_unit(np.asarray(vectors) @ weight.T, layer.bias, layer.mult, layer.shift,
                       layer.zero_point, layer.clamp_lo, layer.clamp_hi, mode=layer.mode)


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
            assert np.array_equal(outputs, expected(layer, weights[index], vectors[index]))

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
        assert np.array_equal(outputs, expected(program.layers[0], weights[0], vectors))

    simulate(dut, testbench)


def test_entry_capacity_error():
    config = small_config(n_xbars=6)
    program, _ = two_layer_program(config, strategy="isaac")
    dut = Accelerator(config, unit_entries=3)  # isaac reads every OU: 16 entries per unit

    async def testbench(ctx):
        status = await load_image(ctx, dut, encode_image(program))
        assert status >> 8 == ErrorCode.CAPACITY

    simulate(dut, testbench)
