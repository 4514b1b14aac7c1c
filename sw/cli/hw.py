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

from bitline.hw.spec.config import AcceleratorConfig, preset
from bitline.sw.cli.common import config_options, echo_json, json_option, quiet_option

__all__ = ["verilog", "hardware_for_bundle", "resolve_hardware"]


def hardware_for_bundle(bundle_config: AcceleratorConfig, hardware: AcceleratorConfig,
                        xbars_used: int) -> None:
    """Reject a bundle compiled for a config the hardware cannot run (``ValueError``).

    The image's record layouts depend on the whole config (and its digest is checked by the
    loader), so the two configs must be equal; the message names the first differences.
    """
    if xbars_used > hardware.n_xbars:
        raise ValueError(f"the bundle needs {xbars_used} crossbar units, the hardware has "
                         f"n_xbars = {hardware.n_xbars}")
    if bundle_config != hardware:
        ours, theirs = hardware.to_dict(), bundle_config.to_dict()
        differences = [f"{key} {theirs[key]!r} (hardware {ours[key]!r})"
                       for key in ours if ours[key] != theirs[key]]
        raise ValueError("the bundle was compiled for another accelerator config: "
                         + ", ".join(differences))


def resolve_hardware(config_path, preset_name, bundle_dir, xbars=None, unit_entries=None):
    """Return ``(config, memories, unit_entries)`` from the command's options.

    ``--bundle`` alone uses the bundle's config and preloads its program; with ``--config``
    or ``--preset`` too, the bundle must fit that hardware. ``xbars`` replaces ``n_xbars``.
    """
    if config_path and preset_name:
        raise click.UsageError("give --config or --preset, not both")
    hardware = None
    if config_path:
        hardware = AcceleratorConfig.load(config_path)
    elif preset_name:
        hardware = preset(preset_name)
    if hardware is not None and xbars is not None:
        hardware = hardware.replace(n_xbars=xbars)
    memories = None
    if bundle_dir:
        from bitline.hw.core.memories import (
            default_unit_entries,
            program_memories,
            required_unit_entries,
        )
        from bitline.sw.bundle import read_bundle

        program = read_bundle(bundle_dir).program
        if hardware is None:
            hardware = program.config
            if xbars is not None and xbars != hardware.n_xbars:
                raise click.UsageError(f"--xbars {xbars} differs from the bundle's n_xbars "
                                       f"({hardware.n_xbars}): the image only runs on its "
                                       f"own config")
        else:
            hardware_for_bundle(program.config, hardware, program.xbars_used)
        if unit_entries is None:
            unit_entries = max(default_unit_entries(hardware),
                               required_unit_entries(hardware, program.layers))
        memories = program_memories(hardware, program.layers, unit_entries)
    if hardware is None:
        raise click.UsageError("give one of --config, --preset or --bundle")
    return hardware, memories, unit_entries


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
    from bitline.hw.build.verilog import write_verilog

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
