"""``bitline verilog``: generate the accelerator's Verilog, filelist, port description,
FuseSoC core and C register header (``--bus native|axi``, docs/integration.md).

The hardware configuration comes from ``--config`` (TOML), ``--preset`` or ``--bundle``
(the bundle's own config). With ``--bundle`` the program is also baked into the memories'
initial contents (the accelerator starts programmed, e.g. for an FPGA bitstream) and the
design is sized by the bundle (its config, entry memories as deep as the program needs;
:func:`bitline.sw.flow.hardware.choose_hardware`); with a bundle *and* a config, the config
is the base the bundle was sized from: fields other than the sized ones must match, or the
command fails naming what does not fit (more crossbar units than the hardware has, another
geometry, ...). ``--top`` must be a Verilog identifier that is no keyword.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from bitline.sw.cli.common import config_options, echo_json, json_option, quiet_option
from bitline.sw.flow.hardware import choose_hardware

__all__ = ["verilog"]


@click.command("verilog")
@config_options
@click.option("--bundle", "bundle_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Program bundle: its config, and its program preloaded into the memories.")
@click.option("--crossbar", type=click.Choice(["emulated", "external"]), default="emulated",
              show_default=True,
              help="Digital crossbar emulators inside, or the crossbar ports at the top.")
@click.option("--bus", type=click.Choice(["native", "axi"]), default="native",
              show_default=True,
              help="Top-level interface: the native register bus and valid/ready streams, "
                   "or AXI4-Lite registers and AXI4-Stream data (docs/integration.md).")
@click.option("--top", default="bitline_top", show_default=True,
              help="Top module name (a Verilog identifier, not a keyword).")
@click.option("--unit-entries", type=click.IntRange(min=1),
              help="OU entries each unit's entry memory holds (default: one per OU of a "
                   "crossbar; with --bundle, what its busiest unit needs).")
@click.option("-o", "--output", "out_dir", required=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Output directory (Verilog, filelist, port description).")
@json_option
@quiet_option
def verilog(config_path, preset_name, bundle_dir, crossbar, bus, top, unit_entries, out_dir,
            as_json, quiet):
    """Write the accelerator's Verilog, a filelist, a JSON of its ports and config, a FuseSoC
    core (<top>.core) and a C register header (<top>_regs.h).

    --json prints {"files": [verilog, filelist, description, core, header], "crossbar",
    "bus", "n_xbars", "unit_entries", "sizing": [notes]}.
    """
    from bitline.hw.toolchain.verilog import check_top_name, write_verilog

    check_top_name(top)     # before the bundle is read and the design elaborated
    choice = choose_hardware(config_path, preset_name, bundle_dir, unit_entries=unit_entries)
    hardware = choice.config
    talk = not (quiet or as_json)
    if talk:
        for note in choice.notes:
            click.echo(note)
    log = (lambda message: click.echo(message + " ...", err=True)) if talk else None
    design = write_verilog(hardware, out_dir, crossbar=crossbar, memories=choice.memories,
                           unit_entries=choice.unit_entries, top=top, log=log, bus=bus)
    if as_json:
        echo_json({"files": [str(design.verilog), str(design.filelist),
                             str(design.description), str(design.core), str(design.header)],
                   "crossbar": crossbar, "bus": bus, "n_xbars": hardware.n_xbars,
                   "unit_entries": json.loads(design.description.read_text())["unit_entries"],
                   "sizing": choice.notes})
    elif not quiet:
        click.echo(f"wrote {design.verilog}, {design.filelist.name}, "
                   f"{design.description.name}, {design.core.name} and {design.header.name} "
                   f"({bus} bus, {crossbar} crossbars, {hardware.n_xbars} units)")
