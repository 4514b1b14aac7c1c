"""``bitline presets`` and ``bitline config show``: the accelerator presets.

``config show`` prints a preset (or a config file) as the TOML that ``--config`` reads back:
the fields compile sizes (:data:`~bitline.sw.flow.hardware.SIZED_FIELDS`) are written as
comments unless the config file set them, so a file saved from it and edited pins only what
the user uncomments or edits (docs/hardware.md, "Pinned and sized fields").
"""

from __future__ import annotations

import click

from bitline.hw.spec.config import PRESETS
from bitline.sw.cli.common import config_options, echo_json, json_option, quiet_option
from bitline.sw.flow import DEFAULT_PRESET, load_config, preset_summary

__all__ = ["presets", "config"]


@click.command("presets")
@json_option
@quiet_option
def presets(as_json: bool, quiet: bool):
    """List the accelerator presets that --preset accepts, with a one-line summary.

    --json prints {"presets": [{"name", "summary", "config": {field: value}}]}.
    """
    rows = [{"name": name, "summary": preset_summary(name), "config": PRESETS[name].to_dict()}
            for name in sorted(PRESETS)]
    if as_json:
        echo_json({"presets": rows})
    elif not quiet:
        width = max(len(row["name"]) for row in rows)
        for row in rows:
            default = "  (default)" if row["name"] == DEFAULT_PRESET else ""
            click.echo(f"{row['name']:<{width}}  {row['summary']}{default}")


@click.group("config")
def config():
    """Show accelerator configs."""


@config.command("show")
@config_options
@json_option
@quiet_option
def show(config_path, preset_name, as_json: bool, quiet: bool):
    """Print a preset (--preset, default bwq) or a config file (--config) as TOML.

    The output is a config file: save it, edit it and pass it back with --config. Every
    key a config file sets is pinned (compile honours it or refuses the network); the
    fields compile sizes to the network are printed as comments unless the file set them.
    --json prints {"config": {field: value}, "pinned": [field, ...]}; -q only checks that
    the config loads.
    """
    accelerator = load_config(config_path, preset_name)
    if quiet and not as_json:
        return
    if as_json:
        echo_json({"config": accelerator.to_dict(), "pinned": sorted(accelerator.pinned)})
    else:
        source = config_path or f"preset {preset_name or DEFAULT_PRESET}"
        click.echo(f"# accelerator config ({source}); bitline ... --config FILE reads it\n"
                   + config_toml(accelerator, preset_name), nl=False)


def config_toml(accelerator, preset_name: str | None = None) -> str:
    """Return ``accelerator`` as TOML whose unpinned sized fields are comments.

    The commented fields come back from the ``preset = NAME`` line (``preset_name``, or the
    first preset with the same values in those fields), so the text loads back to the same
    config; with no such preset every field is written.
    """
    from bitline.sw.flow.hardware import SIZED_FIELDS

    values = accelerator.to_dict()
    sized = [name for name in SIZED_FIELDS if name not in accelerator.pinned]
    base = preset_name or next(
        (name for name in sorted(PRESETS, key=lambda name: name != DEFAULT_PRESET)
         if all(getattr(PRESETS[name], field) == values[field] for field in sized)), None)
    if base is None:
        return accelerator.to_toml()
    lines = ["[accelerator]", f'preset = "{base}"']
    for key, value in values.items():
        if key in sized:
            lines.append(f"# {key} = {value!r}    # sized by compile to the network; "
                         "uncomment to pin")
        else:
            lines.append(f"{key} = {value!r}")
    return "\n".join(lines) + "\n"
