"""The hardware a generated design or a bitstream is built for (``bitline verilog`` / ``fpga``).

The configuration comes from a config file, a preset or a bundle (the bundle's own config).
With a bundle the program is also baked into the memories' initial contents (the accelerator
starts programmed) and the hardware is sized by the bundle: its config is the bundle's (the
one compile's "size hardware" step chose, so ``n_xbars``, ``max_entries`` ... are what the
network needs with the default ``--xbars auto``) and each unit's entry memory holds exactly
the entries the program issues on its busiest unit. With a bundle *and* a config, the config
is the requested base: it may differ from the bundle's only in the fields that step sizes
(:data:`SIZED_FIELDS`; each such difference is reported), it must have the units the
bundle uses, and anything else that differs is a ``ValueError`` naming the fields. A sized
field the config *file* sets (``AcceleratorConfig.pinned``) is the user's: a bundle that
differs in it is refused too (the user described a chip the bundle does not run on).
"""

from __future__ import annotations

from dataclasses import dataclass

from bitline.hw.spec.config import NETWORK_FIELDS, AcceleratorConfig, preset

__all__ = ["SIZED_FIELDS", "HardwareChoice", "hardware_for_bundle", "choose_hardware",
           "resolve_hardware"]

#: Config fields compile's "size hardware" step chooses (``bitline.sw.flow.compile.
#: size_hardware``; ``n_xbars``, ``max_entries`` and ``max_copies`` also grow with the layer
#: copies of ``compile --budget``; the whole-network fields with ``compile --network``,
#: ``bitline.sw.flow.compile.network_program``): a bundle's config may differ from the
#: requested base in these only.
SIZED_FIELDS = ("max_in_features", "max_out_channels", "max_weight_bits", "n_xbars",
                "max_entries", "max_copies", *NETWORK_FIELDS)


def hardware_for_bundle(bundle_config: AcceleratorConfig, hardware: AcceleratorConfig,
                        xbars_used: int) -> None:
    """Reject a bundle the requested hardware cannot stand for; return the sizing notes.

    The image's record layouts depend on the whole config (and its digest is checked by the
    loader), so the generated hardware is the bundle's config; the requested one may differ
    from it only in :data:`SIZED_FIELDS` it does not pin (``hardware.pinned``: keys its
    config file sets, or ``--xbars``) and, when it pins ``n_xbars``, must have the units
    the bundle uses (``ValueError`` naming the differences otherwise); an unpinned
    ``n_xbars`` (a preset's) is sized by the bundle like the other sized fields.
    """
    if xbars_used > hardware.n_xbars and "n_xbars" in hardware.pinned:
        raise ValueError(f"the bundle needs {xbars_used} crossbar units, the hardware has "
                         f"n_xbars = {hardware.n_xbars}")
    ours, theirs = hardware.to_dict(), bundle_config.to_dict()
    differences = [f"{key} {theirs[key]!r} (hardware {ours[key]!r}"
                   f"{', set by the config file' if key in SIZED_FIELDS else ''})"
                   for key in ours if ours[key] != theirs[key]
                   and (key not in SIZED_FIELDS or key in hardware.pinned)]
    if differences:
        raise ValueError("the bundle was compiled for another accelerator config: "
                         + ", ".join(differences))
    return [f"{key} sized from {ours[key]!r} to {theirs[key]!r} by the bundle"
            for key in SIZED_FIELDS if ours[key] != theirs[key]]


@dataclass
class HardwareChoice:
    """What :func:`choose_hardware` picked.

    Attributes
    ----------
    config:
        The hardware to generate.
    memories:
        The bundle's program as memory contents, or ``None`` without a bundle.
    unit_entries:
        Entry-memory depth per unit, or ``None`` for the hardware's default.
    notes:
        One line per field the bundle sized (``FIELD sized from A to B by the bundle``) and
        a note when the bundle leaves units unused.
    """

    config: AcceleratorConfig
    memories: object
    unit_entries: int | None
    notes: list[str]


def resolve_hardware(config_path, preset_name, bundle_dir, xbars=None, unit_entries=None):
    """Return ``(config, memories, unit_entries)`` of :func:`choose_hardware`."""
    choice = choose_hardware(config_path, preset_name, bundle_dir, xbars, unit_entries)
    return choice.config, choice.memories, choice.unit_entries


def choose_hardware(config_path, preset_name, bundle_dir, xbars=None,
                    unit_entries=None) -> HardwareChoice:
    """Return the hardware the command's options ask for (module docstring).

    ``--bundle`` alone uses the bundle's config and preloads its program; with ``--config``
    or ``--preset`` too, that config is the base the bundle was sized from. ``xbars``
    replaces ``n_xbars``. With a bundle, ``unit_entries`` defaults to the entries the
    program issues on its busiest unit (at least 1).
    """
    if config_path and preset_name:
        raise ValueError("give --config or --preset, not both")
    hardware = None
    if config_path:
        hardware = AcceleratorConfig.load(config_path)
    elif preset_name:
        hardware = preset(preset_name)
    if hardware is not None and xbars is not None:
        # --xbars is the user's choice of units, as if the config file set n_xbars
        hardware = hardware.replace(n_xbars=xbars, pinned=hardware.pinned | {"n_xbars"})
    memories = None
    notes: list[str] = []
    if bundle_dir:
        from bitline.hw.core.memories import program_memories, required_unit_entries
        from bitline.sw.bundle import read_bundle

        program = read_bundle(bundle_dir).program
        if hardware is None:
            if xbars is not None and xbars != program.config.n_xbars:
                raise ValueError(f"--xbars {xbars} differs from the bundle's n_xbars "
                                 f"({program.config.n_xbars}): the image only runs on its "
                                 f"own config")
        else:
            notes = hardware_for_bundle(program.config, hardware, program.xbars_used)
        hardware = program.config
        if program.xbars_used < hardware.n_xbars:
            notes.append(f"the bundle uses {program.xbars_used} of its n_xbars = "
                         f"{hardware.n_xbars} units (compile with --xbars auto for a machine "
                         f"of {program.xbars_used})")
        if unit_entries is None:
            unit_entries = max(1, required_unit_entries(hardware, program.layers))
        memories = program_memories(hardware, program.layers, unit_entries,
                                    nodes=program.nodes)   # --network: the node records
    if hardware is None:
        raise ValueError("give one of --config, --preset or --bundle")
    return HardwareChoice(hardware, memories, unit_entries, notes)
