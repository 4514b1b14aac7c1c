"""Options and printing shared by the ``bitline`` commands.

One flag means one thing everywhere:

* ``-o/--output``: a directory for commands that write several files (``compile``,
  ``verilog``, ``fpga``), a file otherwise (``run``, ``board run``, ``quant template``);
* ``-s/--strategy`` one mapping strategy, ``--strategies`` a comma-separated list;
* ``-q/--quiet`` prints nothing but errors (and the JSON of ``--json``); ``--json`` prints
  the results as one JSON object whose lists are named (``{"rows": [...]}``, ...);
* ``--config FILE`` / ``--preset NAME`` the accelerator (default preset ``bwq``);
* ``-d/--dataset NAME`` the data set a command calibrates with (its ``calib`` split) and,
  for commands that measure accuracy, evaluates on (its ``test`` split).

Errors: usage and input errors (bad flag, bad file, bad value) exit with code 2, failed runs
(a simulation, build or board run that fails) with code 1; both print one ``error: ...``
line (:func:`bitline.sw.cli.main`). Any other exception is a bug: one line ``error:
internal error: <type>: <message> (rerun with --debug for the traceback)``, exit 1;
``bitline --debug ...`` or ``bitline COMMAND --debug ...`` (or ``BITLINE_DEBUG=1``) shows the
traceback instead.
"""

from __future__ import annotations

import json
import math
import shutil
import sys

import click

from bitline.hw.spec.config import PRESETS
from bitline.hw.spec.program import STRATEGIES

__all__ = ["RunFailed", "NamedChoice", "PositiveFloat", "command_line", "config_options", "cost_options",
           "dataset_option",
           "json_option", "quiet_option",
           "strategy_option", "strategies_option", "parse_strategies", "echo_json",
           "print_table", "console"]


class RunFailed(click.ClickException):
    """A run, simulation or build that failed (exit code 1)."""

    exit_code = 1


class NamedChoice(click.Choice):
    """A ``click.Choice`` whose error reads ``unknown <noun> 'value'; choose from a, b``."""

    def __init__(self, choices, noun: str):
        super().__init__(list(choices))
        self.noun = noun

    def convert(self, value, param, ctx):
        if value in self.choices:
            return value
        self.fail(f"unknown {self.noun} {value!r}; choose from {', '.join(self.choices)}",
                  param, ctx)


class PositiveFloat(click.ParamType):
    """A finite number above zero (``click.FloatRange`` lets ``nan`` through: it compares
    false with both bounds)."""

    name = "number"

    def convert(self, value, param, ctx):
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number) or number <= 0:
            self.fail(f"must be a finite number above 0, not {value!r}", param, ctx)
        return number


def config_options(function=None, *, xbars: bool = False):
    """Decorate a command with ``--config`` and ``--preset`` (and ``--xbars``)."""
    options = [
        click.option("--config", "config_path", type=click.Path(dir_okay=False),
                     help="Accelerator config TOML file (see `bitline config show`)."),
        click.option("--preset", "preset_name", type=NamedChoice(sorted(PRESETS), "preset"),
                     help="Accelerator preset instead of --config (default bwq; "
                          "see `bitline presets`)."),
    ]
    if xbars:
        options.append(click.option(
            "--xbars", default="auto", show_default=True,
            help="Crossbar units: 'auto' (the machine is sized to the network) or a count."))

    def decorate(command):
        for option in reversed(options):
            command = option(command)
        return command

    return decorate(function) if function is not None else decorate


def cost_options(function):
    """Decorate a command with ``--costs FILE`` and ``--adc-model table|pow2``.

    The command receives ``costs_path`` and ``adc_model``;
    :func:`bitline.sw.perf.cost_model` turns them into the cost model.
    """
    from bitline.sw.perf.costs import ADC_MODELS

    options = [
        click.option("--costs", "costs_path", type=click.Path(dir_okay=False),
                     metavar="FILE.toml",
                     help="Override per-action energies and areas ([energy], [area], [adc] "
                          "tables; docs/performance.md)."),
        click.option("--adc-model", type=NamedChoice(ADC_MODELS, "ADC model"), default=None,
                     help="ADC energy scaling: table (Accelergy-derived, the default) or "
                          "pow2 (2^N from the 8-bit ADC). Choices: "
                          + ", ".join(ADC_MODELS) + "."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def dataset_option(help_text: str, default: str | None = None):
    """``-d/--dataset``: the data set to calibrate (and evaluate) with."""
    return click.option("--dataset", "-d", default=default, show_default=default is not None,
                        help=help_text)


json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print the results as one JSON object.")
quiet_option = click.option("--quiet", "-q", is_flag=True,
                            help="Print nothing but errors (and the JSON of --json).")
strategy_option = click.option("--strategy", "-s", required=True,
                               type=NamedChoice(STRATEGIES, "strategy"),
                               help="Mapping strategy.")


def strategies_option(help_text: str = "Comma-separated mapping strategies.",
                      choices: tuple[str, ...] = STRATEGIES):
    """``--strategies a,b``: several of ``choices``, all by default (:func:`parse_strategies`)."""
    def callback(ctx, param, value):
        return parse_strategies(ctx, param, value, choices)

    return click.option("--strategies", default=",".join(choices), show_default=True,
                        callback=callback, help=f"{help_text} Choices: {', '.join(choices)}.")


def parse_strategies(ctx, param, value: str, choices: tuple[str, ...] = STRATEGIES) -> list[str]:
    """Click callback: split ``--strategies`` and reject names not in ``choices`` (usage error)."""
    names = [name.strip() for name in str(value).split(",") if name.strip()]
    unknown = [name for name in names if name not in choices]
    if unknown or not names:
        raise click.BadParameter(
            f"unknown strategy {', '.join(unknown) or '(none)'}; choose from "
            f"{', '.join(choices)}", ctx=ctx, param=param)
    return names


def command_line() -> str:
    """Return the running command as a reproducible ``bitline ...`` line.

    Rebuilt from the parsed parameters (arguments, and every option not at its default), so
    it is the same whether the command ran from a shell, ``python -m`` or a test runner.
    """
    import shlex

    ctx = click.get_current_context()
    words = ctx.command_path.split()
    words[0] = "bitline"
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if isinstance(param, click.Argument):
            words.append(str(value))
            continue
        default = param.get_default(ctx, call=True) if hasattr(param, "get_default") else None
        if value is None or value == () or value == default or (
                isinstance(value, list) and ",".join(value) == default):
            continue
        flag = max(param.opts, key=len)
        if param.is_flag:
            words.append(flag if value else (param.secondary_opts or [flag])[0])
        else:
            for item in value if isinstance(value, (tuple, list)) and param.multiple else [value]:
                words += [flag, str(item) if not isinstance(item, list) else ",".join(item)]
    return " ".join(shlex.quote(word) for word in words)


def echo_json(data: dict) -> None:
    """Print ``data`` as indented JSON on stdout."""
    click.echo(json.dumps(data, indent=2))


def console(width: int | None = None):
    """Return a rich console on stdout, at least 100 columns wide (pipes and CI logs)."""
    from rich.console import Console

    terminal = shutil.get_terminal_size((100, 24)).columns
    return Console(file=sys.stdout, width=max(100, terminal, width or 0))


def print_table(table) -> None:
    """Print a rich ``table`` on a console wide enough that no cell is cut or wrapped."""
    from rich.console import Console
    from rich.measure import Measurement

    probe = Console(width=10_000, file=sys.stdout)
    console(Measurement.get(probe, probe.options, table).maximum).print(table)
