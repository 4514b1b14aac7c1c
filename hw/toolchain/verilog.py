"""Generate the accelerator's Verilog, a filelist and a JSON description of its ports.

``bitline verilog`` (:mod:`bitline.sw.cli.hw`) calls :func:`write_verilog`; the cocotb benches
and the lint / synthesis tests use the same function, so every consumer sees one netlist.
Output folder contents:

* ``<top>.v`` -- the whole design (Amaranth -> Yosys ``write_verilog``);
* ``filelist.f`` -- the Verilog sources, one per line (for Verilator / Icarus / vendors);
* ``<top>.json`` -- ``top``, ``crossbar`` mode, ``config`` (the :class:`AcceleratorConfig`
  fields) and its ``digest``, ``unit_entries``, ``timing`` constants, the register map,
  and ``ports``: every top-level port's Verilog name, direction and width.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import Shape
from amaranth.lib import wiring

from bitline.hw.core.memories import AcceleratorMemories
from bitline.hw.core.top import Accelerator
from bitline.hw.spec.config import AcceleratorConfig
from bitline.hw.spec.registers import Register
from bitline.hw.spec.timing import DRAIN_STAGES, drain_latency, pipeline_latency

__all__ = ["GeneratedDesign", "port_table", "write_verilog", "DEFAULT_TOP"]

DEFAULT_TOP = "bitline_top"


@dataclass
class GeneratedDesign:
    """Paths of a generated design."""

    verilog: Path
    filelist: Path
    description: Path
    top: str


def port_table(component: wiring.Component) -> list[dict]:
    """Return ``[{name, direction, width, signed}]`` for every port, in signature order."""
    ports = []
    for path, member, value in component.signature.flatten(component):
        shape = Shape.cast(member.shape)
        ports.append({
            "name": "__".join(str(part) for part in path),
            "direction": "input" if member.flow == wiring.In else "output",
            "width": shape.width,
            "signed": shape.signed,
        })
    return ports


def write_verilog(config: AcceleratorConfig, out_dir: str | Path, *,
                  crossbar: str = "emulated", memories: AcceleratorMemories | None = None,
                  unit_entries: int | None = None, top: str = DEFAULT_TOP) -> GeneratedDesign:
    """Elaborate :class:`~bitline.hw.core.top.Accelerator` and write it to ``out_dir``.

    Raises
    ------
    ValueError
        For a configuration (or program memories) the hardware cannot hold exactly.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    design = Accelerator(config, crossbar=crossbar, memories=memories,
                         unit_entries=unit_entries)
    text = verilog.convert(design, name=top, emit_src=False)
    verilog_path = out_dir / f"{top}.v"
    verilog_path.write_text(text)
    filelist = out_dir / "filelist.f"
    filelist.write_text(f"{verilog_path.name}\n")
    description = {
        "top": top,
        "crossbar": crossbar,
        "config": config.to_dict(),
        "digest": config.digest,
        "unit_entries": design.unit_entries,
        "programmed": memories is not None,
        "timing": {
            "pipeline_latency": pipeline_latency(config),
            "drain_latency": drain_latency(config),
            "drain_stages": list(DRAIN_STAGES),
            "conversions_per_read": config.conversions_per_read,
            "adc_latency": config.adc_latency,
        },
        "registers": {register.name: int(register) for register in Register},
        "ports": port_table(design),
    }
    description_path = out_dir / f"{top}.json"
    description_path.write_text(json.dumps(description, indent=2) + "\n")
    return GeneratedDesign(verilog=verilog_path, filelist=filelist,
                           description=description_path, top=top)
