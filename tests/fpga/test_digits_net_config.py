"""examples/fpga/ulx3s-digits-net.toml holds both digits networks whole-network on the 85F.

No bitstream is built (docs/fpga.md, "Whole network on the ULX3S", has the measured row):
both digits networks compile with ``--network`` on the example config as it is (no field
sized up, one hardware for both), and the design's block RAM, estimated from the memory
inventory of the config (:func:`~bitline.hw.toolchain.synth_check.memory_inventory`, plus the
units' row lookups, which Yosys maps to block RAM at 288 rows) packed
into ECP5 ``DP16KD`` blocks the way Yosys maps them, fits the LFE5U-85F's 208. The estimate
itself is checked against measured builds: the 8-unit ``ulx3s-bwq.toml`` design (163
``DP16KD``, docs/fpga.md, section 4) and this example's (168, section 6), and it refuses the
128 x 128 geometry the ResNet would need 14 units of.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import replace
from importlib import resources

import pytest

from bitline.hw.boards.core import UARTAccelerator
from bitline.hw.spec.config import AcceleratorConfig, clog2
from bitline.hw.spec.program import ProgramError
from bitline.hw.toolchain.synth_check import memory_inventory
from bitline.sw.flow import calibration_inputs, compile_model
from bitline.sw.models import resolve_model

#: LFE5U-85F block RAMs (nextpnr's ``DP16KD`` count of the device).
EBR_85F = 208
#: The ``DP16KD`` shapes (words x bits) of one 18-Kbit block.
DP16KD_SHAPES = ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36))
#: Memories this shallow become distributed RAM (``TRELLIS_DPR16X4``), not block RAM: Yosys
#: maps the emulator's 32 x 128 cell-level banks to 64 LUTRAM each, the shift-and-add's
#: 64-word partial sums to ``DP16KD``.
LUTRAM_MAX_DEPTH = 32
#: Memories read by two ports, which Yosys builds as two copies.
TWO_READ_PORTS = {"activation buffer"}
#: Row lookups deeper than this become block RAM: the tables indexed by a crossbar row
#: (``hw/unit/emulator.py``'s ``bank_of`` and ``group_of``, ``hw/unit/row_driver.py``'s
#: ``lane_of`` and ``group_of``, which Yosys merges into one ROM) are read-only memories,
#: which ``memory_inventory`` leaves out. Measured: 128 rows (128-word tables) give logic,
#: 288 rows (512 words) a ``DP16KD`` per table; between the two is counted as block RAM.
ROM_MAX_LOGIC_DEPTH = 128


def example(name: str) -> AcceleratorConfig:
    path = resources.files("bitline.examples.fpga") / name
    with resources.as_file(path) as file:
        return AcceleratorConfig.load(file)


def blocks(depth: int, width: int, lane_bits: int = 0) -> int:
    """Fewest ``DP16KD`` of one shape that hold ``depth`` words of ``width`` bits; written in
    lanes of ``lane_bits`` (<= 9), each lane takes one of the block's 9-bit byte lanes
    (``DP16KD`` has byte enables in its 18- and 36-bit shapes only)."""
    if lane_bits:
        assert lane_bits <= 9, "wider lanes: not a shape this estimate knows"
        lanes = width // lane_bits
        return min(math.ceil(depth / words) * math.ceil(lanes / (bits // 9))
                   for words, bits in DP16KD_SHAPES if bits >= 18)
    return min(math.ceil(depth / words) * math.ceil(width / bits)
               for words, bits in DP16KD_SHAPES)


def board_ebr(config: AcceleratorConfig, distributed: frozenset = frozenset()) -> int:
    """Estimated ``DP16KD`` of the board top: the accelerator's memories, its units' row
    lookups and the bridge's receive FIFO (bytes); the memory kinds named in
    ``distributed`` are built in distributed RAM (``bitline fpga --distributed-ram``)."""
    total = 0
    for kind in memory_inventory(config):
        if kind.depth > LUTRAM_MAX_DEPTH and kind.name not in distributed:
            copies = 2 if kind.name in TWO_READ_PORTS else 1
            total += kind.count * copies * blocks(kind.depth, kind.width, kind.lane_bits)
    depth = 1 << clog2(config.rows)
    if depth > ROM_MAX_LOGIC_DEPTH:
        group_bits = clog2(config.row_groups)
        tables = (config.ou_rows, group_bits, clog2(config.ou_rows) + group_bits)
        total += config.n_xbars * sum(blocks(depth, bits) for bits in tables)
    fifo = inspect.signature(UARTAccelerator).parameters["rx_fifo_depth"].default
    return total + blocks(fifo, 8)


def test_estimate_equals_the_measured_builds():
    # 8 units of 128 x 128 (a86665d), this example's whole-network design with its cells in
    # distributed RAM (a421578), and with them one OU per word: the DP16KD of the syntheses
    assert board_ebr(replace(example("ulx3s-bwq.toml"), n_xbars=8)) == 163
    digits_net = example("ulx3s-digits-net.toml")
    assert digits_net.emulator_ou_words == 1
    assert board_ebr(replace(digits_net, emulator_ou_words=0)) == 168
    assert board_ebr(digits_net) == 168 + 7 * 3
    # and the routed build (docs/fpga.md section 6: --distributed-ram 'psum*', the units'
    # partial sums, one DP16KD per ADC lane, in distributed RAM): 133 DP16KD
    assert board_ebr(digits_net, frozenset({"partial sums"})) == 133


@pytest.fixture(scope="module")
def compiled():
    config = example("ulx3s-digits-net.toml")
    results = {}
    for name in ("digits-cnn", "digits-resnet"):
        model = resolve_model(name)
        calib, _ = calibration_inputs(model, "digits")
        results[name] = compile_model(model, "bwq", "bwq3", config, calib, xbars="auto",
                                      network=True)
    return config, results


def test_both_digits_networks_compile_whole_network_on_one_hardware(compiled):
    config, results = compiled
    assert config.network
    for name, result in results.items():
        assert result.config == config, f"{name}: compile changed the example config"
        assert result.program.nodes, f"{name}: no node records"
        used = {int(unit) for layer in result.program.layers for unit in layer.all_xbars}
        assert len(used) == result.program.xbars_used <= config.n_xbars
    # every compute layer of the ResNet takes a unit of its own: seven, all of them
    resnet = results["digits-resnet"].program
    assert [len(layer.all_xbars) for layer in resnet.layers] == [1] * 7
    assert resnet.xbars_used == config.n_xbars == 7


def test_example_fits_the_85f_and_the_128x128_geometry_does_not(compiled):
    config, _ = compiled
    assert board_ebr(config) <= EBR_85F
    # the ResNet on 128 x 128 units (14 of them, the same capacities): over the device
    square = replace(config, rows=128, cols=128, n_xbars=14)
    assert board_ebr(square) > EBR_85F


def test_accumulator_width_holds_both_networks_and_22_bits_do_not(compiled):
    # the example's acc_bits = 24 (3 UART bytes per output) holds both networks (the
    # fixture compiled them); 23 still does, 22 is refused for the CNN's widest channel
    config, _ = compiled
    assert config.acc_bits == 24
    model = resolve_model("digits-cnn")
    calib, _ = calibration_inputs(model, "digits")
    compile_model(model, "bwq", "bwq3", replace(config, acc_bits=23), calib, xbars="auto",
                  network=True)
    with pytest.raises(ProgramError, match=r"features\.5.*overflows acc_bits = 22"):
        compile_model(model, "bwq", "bwq3", replace(config, acc_bits=22), calib,
                      xbars="auto", network=True)
