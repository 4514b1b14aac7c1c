"""``bitline verilog``: generate the accelerator's Verilog, filelist and port description.

The hardware configuration comes from ``--config`` (TOML), ``--preset`` or ``--bundle``
(the bundle's own config). With ``--bundle`` the program is also baked into the memories'
initial contents (the accelerator starts programmed, e.g. for an FPGA bitstream); with a
bundle *and* a config, the bundle must fit that hardware, or the command fails naming what
does not fit (more crossbar units than the hardware has, another geometry, ...).
"""

from __future__ import annotations

from pathlib import Path

import click

from bitline.sw.cli.common import config_options, echo_json, json_option, quiet_option
from bitline.sw.flow.hardware import resolve_hardware

__all__ = ["verilog"]


@click.command("verilog")
@config_options
@click.option("--bundle", "bundle_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Program bundle: its config, and its program preloaded into the memories.")
@click.option("--crossbar", type=click.Choice(["emulated", "external"]), default="emulated",
              show_default=True,
              help="Digital crossbar emulators inside, or the crossbar ports at the top.")
@click.option("--top", default="bitline_top", show_default=True, help="Top module name.")
@click.option("--unit-entries", type=click.IntRange(min=1),
              help="OU entries each unit's entry memory holds (default: one per OU of a "
                   "crossbar, or what --bundle needs if that is more).")
@click.option("-o", "--output", "out_dir", required=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Output directory (Verilog, filelist, port description).")
@json_option
@quiet_option
def verilog(config_path, preset_name, bundle_dir, crossbar, top, unit_entries, out_dir,
            as_json, quiet):
    """Write the accelerator's Verilog, a filelist and a JSON of its ports and config.

    --json prints {"files": [verilog, filelist, description], "crossbar", "n_xbars"}.
    """
    from bitline.hw.toolchain.verilog import write_verilog

    hardware, memories, unit_entries = resolve_hardware(config_path, preset_name, bundle_dir,
                                                        unit_entries=unit_entries)
    design = write_verilog(hardware, out_dir, crossbar=crossbar, memories=memories,
                           unit_entries=unit_entries, top=top)
    if as_json:
        echo_json({"files": [str(design.verilog), str(design.filelist),
                             str(design.description)],
                   "crossbar": crossbar, "n_xbars": hardware.n_xbars})
    elif not quiet:
        click.echo(f"wrote {design.verilog}, {design.filelist.name} and "
                   f"{design.description.name} ({crossbar} crossbars, {hardware.n_xbars} "
                   f"units)")
