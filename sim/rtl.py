"""The ``rtl`` backend: a compiled bundle on the generated Verilog, end to end, in cocotb.

:func:`run_rtl` is what ``bitline run OUT/ --backend rtl`` calls:

1. read the bundle (:func:`bitline.sw.bundle.read_bundle`, every check);
2. generate the Verilog of :class:`~bitline.sim.cocotb.harness.BenchTop` -- the bundle's
   :class:`~bitline.hw.top.Accelerator` with a stream source and sink -- for the bundle's
   config (:func:`bench_design`; cached by a digest of the config, the crossbar mode, the
   entry-memory depth and the hardware sources, because Amaranth takes tens of seconds on a
   real configuration);
3. build it with Verilator (or Icarus, ``BITLINE_SIM=icarus``) through
   :func:`bitline.sim.cocotb.runner.build_and_test` (build cached by digest) and run the
   cocotb test ``bitline.sim.cocotb.tb_accelerator.inference``: the bench loads ``image.bin``
   through the host interface and runs the batch with the host driver
   (:class:`bitline.sw.driver.HostDriver`), one layer job per compute layer;
4. read the outputs, every layer's output and every job's counters back from the npz the
   bench wrote.

Crossbar mode: without analog parameters the accelerator's own digital crossbar emulators
(``crossbar="emulated"``) answer the OU reads inside the simulator, the fastest setting;
with :class:`~bitline.sim.analog.AnalogParams` the crossbar ports are external and the
bench's Python crossbar model (:class:`bitline.sim.cocotb.crossbar.CrossbarModel`, an
:class:`~bitline.sim.analog.AnalogDevice`) answers every read.

Verilator builds make only the top-level ports visible to cocotb (``--no-public-flat-rw``
and a generated ``.vlt`` file): with every internal signal public (cocotb's default) the
accelerator simulates 3-4 times slower and its C++ is twice as large.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

from bitline.hw.config import AcceleratorConfig

__all__ = ["BenchDesign", "RtlResult", "bench_design", "design_unit_entries", "run_rtl",
           "rtl_backend", "TOPLEVEL", "BENCH_MODULE"]

#: Top-level module name of the bench design.
TOPLEVEL = "bitline_bench"
#: The cocotb test module the backend runs.
BENCH_MODULE = "bitline.sim.cocotb.tb_accelerator"


@dataclass(frozen=True)
class BenchDesign:
    """A generated bench design (cached files).

    Attributes
    ----------
    verilog:
        The Verilog of :class:`~bitline.sim.cocotb.harness.BenchTop`.
    vlt:
        Verilator configuration file making only the top-level ports public.
    description:
        JSON with the config, crossbar mode, unit entries, harness parameters and ports.
    config, crossbar, unit_entries:
        What the design was generated for.
    """

    verilog: Path
    vlt: Path
    description: Path
    config: AcceleratorConfig
    crossbar: str
    unit_entries: int

    @property
    def verilator_args(self) -> list[str]:
        """Verilator arguments: only the ports in :attr:`vlt` are visible to cocotb."""
        return ["--no-public-flat-rw", str(self.vlt)]

    @property
    def info(self) -> dict:
        """The parsed :attr:`description`."""
        return json.loads(self.description.read_text())


@lru_cache(maxsize=1)
def _hardware_digest() -> str:
    """SHA-256 of the hardware and harness sources and the Amaranth version (cache key)."""
    import amaranth

    import bitline.hw
    from bitline.sim.cocotb import harness

    digest = hashlib.sha256(amaranth.__version__.encode())
    folders = [Path(bitline.hw.__file__).parent]
    for folder in folders:
        for path in sorted(folder.glob("*.py")):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    digest.update(Path(harness.__file__).read_bytes())
    return digest.hexdigest()


def _design_root() -> Path:
    from bitline.sim.cocotb.runner import default_build_root

    return default_build_root().parent / "rtl"


def design_unit_entries(config: AcceleratorConfig, programs=()) -> int:
    """Return the entry-memory depth for ``config`` that holds every program in ``programs``.

    The default depth (one entry per OU of a crossbar) or, if a program needs more on some
    unit, that many (as ``bitline verilog --bundle`` does).
    """
    from bitline.hw.memories import default_unit_entries, required_unit_entries

    depth = default_unit_entries(config)
    for program in programs:
        depth = max(depth, required_unit_entries(config, program.layers))
    return depth


def bench_design(config: AcceleratorConfig, crossbar: str = "emulated", *,
                 unit_entries: int | None = None, root: str | Path | None = None
                 ) -> BenchDesign:
    """Generate (or reuse) the bench Verilog for ``config``.

    Parameters
    ----------
    config:
        The accelerator configuration (the bundle's).
    crossbar:
        ``"emulated"`` or ``"external"``.
    unit_entries:
        Entry-memory depth per unit (default :func:`design_unit_entries` of ``config``).
    root:
        Cache folder (default ``build/rtl`` next to the cocotb build root).

    Returns
    -------
    BenchDesign
        Files in ``<root>/<crossbar>-<digest>/``, reused when present.
    """
    from bitline.sim.cocotb.harness import BenchTop
    from bitline.sim.cocotb.runner import component_verilog

    unit_entries = design_unit_entries(config) if unit_entries is None else int(unit_entries)
    key = json.dumps({"config": config.to_dict(), "crossbar": crossbar,
                      "unit_entries": unit_entries, "hardware": _hardware_digest(),
                      "top": TOPLEVEL}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    folder = Path(root) if root is not None else _design_root()
    folder = folder / f"{crossbar}-{digest}"
    verilog = folder / f"{TOPLEVEL}.v"
    vlt = folder / f"{TOPLEVEL}-ports-{digest}.vlt"
    description = folder / f"{TOPLEVEL}.json"
    design = BenchDesign(verilog, vlt, description, config, crossbar, unit_entries)
    if verilog.is_file() and vlt.is_file() and description.is_file():
        return design
    folder.mkdir(parents=True, exist_ok=True)
    top = BenchTop(config, crossbar, unit_entries=unit_entries)
    text = component_verilog(top, TOPLEVEL)
    from bitline.hw.generate import port_table

    ports = port_table(top)
    names = ["clk", "rst"] + [port["name"] for port in ports]
    vlt_text = "`verilator_config\n" + "".join(
        f'public_flat_rw -module "{TOPLEVEL}" -var "{name}"\n' for name in names)
    info = {
        "top": TOPLEVEL, "crossbar": crossbar, "config": config.to_dict(),
        "digest": config.digest, "unit_entries": unit_entries,
        "harness": {"source_depth": top.source_depth, "sink_depth": top.sink_depth,
                    "fill_lanes": top.fill_lanes, "drain_lanes": top.drain_lanes},
        "ports": ports,
    }
    # Write atomically: parallel sessions may generate the same design.
    for path, content in ((vlt, vlt_text), (description, json.dumps(info, indent=2) + "\n"),
                          (verilog, text)):
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        temporary.write_text(content)
        temporary.replace(path)
    return design
