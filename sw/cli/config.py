"""``bitline presets`` and ``bitline config show``: the accelerator presets.

``config show`` prints a preset (or a config file) as the TOML that ``--config`` reads back.
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

    The output is a config file: save it, edit it and pass it back with --config.
    --json prints {"config": {field: value}}; -q only checks that the config loads.
    """
    accelerator = load_config(config_path, preset_name)
    if quiet and not as_json:
        return
    if as_json:
        echo_json({"config": accelerator.to_dict()})
    else:
        source = config_path or f"preset {preset_name or DEFAULT_PRESET}"
        click.echo(f"# accelerator config ({source}); bitline ... --config FILE reads it\n"
                   + accelerator.to_toml(), nl=False)
