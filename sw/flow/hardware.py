"""The hardware a generated design or a bitstream is built for (``bitline verilog`` / ``fpga``).

The configuration comes from a config file, a preset or a bundle (the bundle's own config).
With a bundle the program is also baked into the memories' initial contents (the accelerator
starts programmed); with a bundle *and* a config, the bundle must fit that hardware, or a
``ValueError`` names what does not fit.
"""

from __future__ import annotations

from bitline.hw.spec.config import AcceleratorConfig, preset

__all__ = ["hardware_for_bundle", "resolve_hardware"]


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
        raise ValueError("give --config or --preset, not both")
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
                raise ValueError(f"--xbars {xbars} differs from the bundle's n_xbars "
                                       f"({hardware.n_xbars}): the image only runs on its "
                                       f"own config")
        else:
            hardware_for_bundle(program.config, hardware, program.xbars_used)
        if unit_entries is None:
            unit_entries = max(default_unit_entries(hardware),
                               required_unit_entries(hardware, program.layers))
        memories = program_memories(hardware, program.layers, unit_entries)
    if hardware is None:
        raise ValueError("give one of --config, --preset or --bundle")
    return hardware, memories, unit_entries
