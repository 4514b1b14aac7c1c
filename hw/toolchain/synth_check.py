"""Synthesis check: Yosys' generic ``synth`` of the generated Verilog, memories kept.

Yosys' generic ``synth`` has no memory library, so its ``memory_map`` step turns every
memory into flip-flops and multiplexers: with the ``bwq`` preset some 19 M bits of storage
(the row drivers' input banks, the partial sums, the output parameters, ...) that a chip
builds as SRAM macros, and a synthesis that does not finish. :func:`synth_check` runs the
same passes as ``synth -flatten`` (Yosys' ``help synth``) but keeps the design's memories
as ``$mem_v2`` cells -- the macros -- and maps everything else to generic gates:

* the Verilog is read with ``BITLINE_NO_ZERO_INIT`` defined
  (:data:`~bitline.hw.toolchain.memory_init.NO_ZERO_INIT`): SRAM macros have no power-up
  contents, and Yosys' front end would unroll each zero-initialization loop word by word;
* ``synth -run :fine`` (elaboration, ``proc``, ``flatten``, ``opt``, ``fsm``, ``wreduce``,
  ``alumacc``, ``share``, ``memory -nomap``), then ``synth``'s ``fine`` steps without
  ``memory_map`` (``opt -full``, ``techmap``, ``abc``), then ``hierarchy -check`` and
  ``check -assert``;
* read-only memories are logic, not storage: the case tables that ``proc_rom`` turns into
  ROMs (the row-to-bank lookups) are mapped to gates (``memory_map`` of the memories with
  no write port).

The result counts cells, flip-flops, memories and memory bits (``stat -json``, the memory
figures after ``memory_unpack``). :func:`memory_inventory` counts the memories a second way,
from the config fields alone, so a test and ``scripts/bench_verilog.py --synth`` can check
that Yosys kept exactly the design's storage as memories.
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bitline.hw.core.scheduler import OUTPUT_FIFO_DEPTH
from bitline.hw.spec.config import AcceleratorConfig, clog2
from bitline.hw.spec.encoding import entry_layout, layer_layout, output_param_layout
from bitline.hw.spec.network import node_layout
from bitline.hw.spec.registers import COUNTER_BITS
from bitline.hw.toolchain.memory_init import NO_ZERO_INIT
from bitline.hw.toolchain.tools import yosys_command

__all__ = ["FAST_ABC", "FLIP_FLOP", "MemoryKind", "SynthCheck", "memory_inventory",
           "synth_check", "synth_script"]

#: Yosys' generic flip-flop and latch cell types (``$_DFF_P_``, ``$_SDFFE_PP0P_``, ...).
FLIP_FLOP = re.compile(r"\$_(?:\w*DFF\w*|DLATCH\w*|SR_\w+)_")


@dataclass(frozen=True)
class MemoryKind:
    """``count`` memories of ``depth`` words of ``width`` bits (one kind of the design);
    ``lane_bits`` > 0: written in lanes of that many bits (per-lane write enables)."""

    name: str
    where: str
    count: int
    depth: int
    width: int
    lane_bits: int = 0

    @property
    def bits(self) -> int:
        return self.count * self.depth * self.width


def memory_inventory(config: AcceleratorConfig, *, crossbar: str = "emulated",
                     unit_entries: int | None = None) -> list[MemoryKind]:
    """Return the accelerator's memories, counted from the config fields alone.

    The table of docs/hardware.md ("Memories and capacities"); independent of the
    elaborated design, so it can check what a synthesis tool reports. ``unit_entries``
    defaults to :func:`~bitline.hw.core.memories.default_unit_entries`'s depth.
    """
    if crossbar not in ("emulated", "external"):
        raise ValueError(f"crossbar must be 'emulated' or 'external', not {crossbar!r}")
    if unit_entries is None:
        unit_entries = min(config.max_entries, config.row_groups * config.col_groups)
    units, rows = config.n_xbars, config.ou_rows
    kinds = [
        MemoryKind("layer table", "top", 1, config.max_layers, layer_layout(config).size),
        MemoryKind("output parameters", "top", 1, config.max_layers * config.max_out_channels,
                   output_param_layout(config).size),
        MemoryKind("output FIFO", "top", 1, OUTPUT_FIFO_DEPTH,
                   config.max_copies * config.acc_bits),
        MemoryKind("entry memory", "each unit", units, unit_entries,
                   entry_layout(config).size),
        MemoryKind("partial sums", "each unit, each ADC lane", units * config.adcs_per_xbar,
                   config.max_out_channels, config.acc_bits + 1),
        MemoryKind("row map", "each unit, each OU row", units * rows, config.row_groups,
                   1 + clog2(config.max_in_features)),
        MemoryKind("input banks", "each unit, each OU row", units * rows,
                   2 * config.max_in_features, config.max_act_bits),
    ]
    if crossbar == "emulated" and config.emulator_ou_words:
        # one OU per word, a lane per OU row (hw/unit/emulator.py), the column group in the
        # address's low bits
        slots = 1 << clog2(config.col_groups) if config.col_groups > 1 else 1
        lane = config.ou_cols * config.cell_bits
        kinds.append(MemoryKind("cell levels (emulator, OU words)", "each unit", units,
                                config.row_groups * slots, rows * lane, lane_bits=lane))
    elif crossbar == "emulated":
        kinds.append(MemoryKind("cell levels (emulator)", "each unit, each OU row",
                                units * rows, config.row_groups,
                                config.cols * config.cell_bits))
    if config.network:       # whole-network mode (docs/hardware.md, "Whole-network mode")
        kinds += [
            MemoryKind("activation buffer", "sequencer", 1, config.act_buffer_depth,
                       config.max_act_bits),
            MemoryKind("node records", "top", 1, config.max_nodes, node_layout(config).size),
            MemoryKind("node counters", "sequencer", 1, config.max_nodes, 3 * COUNTER_BITS),
        ]
    return kinds


#: ABC script of ``fast=True``: structural hashing and one mapping to the generic gates,
#: without ``synth``'s default script's SAT sweeping, rewriting and choice computation
#: (``&fraig``, ``scorr``, ``dc2``, ``&dch``), which take most of the check's time on the
#: ``bwq`` preset under WebAssembly (docs/hardware.md, "Synthesis outside the FPGA flow").
FAST_ABC = "abc -script +strash;map"


def synth_script(verilog: str, top: str, *, abc: bool = True, fast: bool = False) -> str:
    """Return the Yosys script of the check (module docstring), statistics into files.

    ``fast`` runs ABC with :data:`FAST_ABC` instead of ``synth``'s default script.

    ``stat.json`` holds the netlist's cells (memories as ``$mem_v2``), ``memories.json``
    the same after ``memory_unpack`` (memory count and bits).
    """
    return "\n".join([
        f"read_verilog -sv -D {NO_ZERO_INIT} {verilog}",
        f"synth -flatten -top {top} -run :fine",
        # ROMs made from case tables (no write port) are logic; the rest stays memory
        "memory_map r:WR_PORTS=0 t:$mem_v2 %i",
        # synth's `fine` steps, without memory_map
        "opt -fast -full",
        "opt -full",
        "techmap",
        "opt -fast",
        *([FAST_ABC if fast else "abc", "opt -fast"] if abc else []),
        "hierarchy -check",
        "check -assert",
        "tee -q -o stat.json stat -json",
        "memory_unpack",
        "tee -q -o memories.json stat -json",
    ]) + "\n"


@dataclass
class SynthCheck:
    """Figures of one :func:`synth_check` run (times of the Yosys process)."""

    ok: bool
    cells: dict[str, int]
    total_cells: int
    flip_flops: int
    memories: int
    memory_bits: int
    wall_s: float
    cpu_s: float
    log: str
    #: Yosys' "Time spent" line (share, runs and seconds of the costliest passes), when
    #: asked for (``passes=True``)
    time_spent: str = ""

    def summary(self) -> str:
        """One line: wall and CPU time, cells, flip-flops, memories and their bits."""
        return (f"{self.wall_s:.1f} s wall, {self.cpu_s:.1f} s CPU; {self.total_cells:,} "
                f"cells, {self.flip_flops:,} flip-flops, {self.memories} memories "
                f"({self.memory_bits:,} bits){'' if self.ok else ' (FAILED)'}")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def synth_check(verilog: str | Path, top: str, *, abc: bool = True, fast: bool = False,
                passes: bool = False, timeout: float = 1800) -> SynthCheck:
    """Run :func:`synth_script` on one Verilog file with Yosys and return its figures.

    ``abc=False`` leaves the gates as ``techmap`` made them (no ABC optimisation; the
    memories and flip-flops are the same); ``fast=True`` runs :data:`FAST_ABC`. Wall and CPU time (user + sys) are the Yosys
    process's. ``passes=True`` keeps Yosys' full log (a temporary file, tens of MB for the
    ``bwq`` preset) to return its "Time spent" line, where the time went. ``ok`` is false
    when Yosys fails (the log says why); a timeout raises ``subprocess.TimeoutExpired``.
    """
    verilog = Path(verilog).resolve()
    # YoWASP's Yosys sees only its working folder: run next to the Verilog, with the
    # script and the statistics under names of this process, removed afterwards.
    tag = f".synth-{os.getpid()}"
    files = {name: verilog.parent / f"{tag}.{name}.json" for name in ("stat", "memories")}
    script_path = verilog.parent / f"{tag}.ys"
    log_path = verilog.parent / f"{tag}.log"
    script = synth_script(verilog.name, top, abc=abc, fast=fast)
    for name, path in files.items():
        script = script.replace(f"{name}.json", path.name)
    script_path.write_text(script)
    stats = {}
    wall, cpu = time.perf_counter(), _children_cpu()
    try:
        logging = ["-l", log_path.name] if passes else []
        process = subprocess.run(yosys_command() + ["-q", *logging, "-s", script_path.name],
                                 check=False, capture_output=True, text=True,
                                 timeout=timeout, cwd=str(verilog.parent))
        wall, cpu = time.perf_counter() - wall, _children_cpu() - cpu
        for name, path in files.items():
            if path.exists():
                stats[name] = json.loads(path.read_text())["design"]
        spent = re.findall(r"^Time spent: (.*)$", _tail(log_path), re.M) if passes else []
    finally:
        for path in (script_path, log_path, *files.values()):
            path.unlink(missing_ok=True)
    log = process.stdout + process.stderr
    ok = process.returncode == 0 and set(stats) == {"stat", "memories"}
    cells = dict(stats.get("stat", {}).get("num_cells_by_type", {}))
    memory = stats.get("memories", {})
    return SynthCheck(
        ok=ok, cells=cells, total_cells=int(stats.get("stat", {}).get("num_cells", 0)),
        flip_flops=sum(n for cell, n in cells.items() if FLIP_FLOP.fullmatch(cell)),
        memories=int(memory.get("num_memories", 0)),
        memory_bits=int(memory.get("num_memory_bits", 0)),
        wall_s=wall, cpu_s=cpu, log=log, time_spent=spent[-1] if spent else "")


def _tail(path: Path, size: int = 1 << 16) -> str:
    """The last ``size`` bytes of a file as text ("" if there is none)."""
    if not path.exists():
        return ""
    with path.open("rb") as file:
        file.seek(max(path.stat().st_size - size, 0))
        return file.read().decode(errors="replace")
