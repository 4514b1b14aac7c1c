"""The `bitline` command line: click commands that parse, call the library and print.

The library halves are :mod:`bitline.sw.flow` (compile flow, compare, inputs) and, imported
inside the commands that need them, :mod:`bitline.sim.backends`, :mod:`bitline.sim.evaluate`
and :mod:`bitline.sim.sweep`. The flag conventions and the error style are described in
:mod:`bitline.sw.cli.common`. Subcommands live in their own modules and are imported only when invoked (a lazy click
group), so `bitline --help` stays fast and a command that needs a simulator or the FPGA
tools does not slow down the others.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

__all__ = ["main", "cli"]

#: command name -> "module:attribute" of a click command.
COMMANDS: dict[str, str] = {
    "info": "bitline.sw.cli.model:info",
    "run": "bitline.sw.cli.model:run",
    "compile": "bitline.sw.cli.compile:compile_cmd",
    "report": "bitline.sw.cli.compile:report",
    "compare": "bitline.sw.cli.compile:compare",
    "accuracy": "bitline.sw.cli.quant:accuracy",
    "quant": "bitline.sw.cli.quant:quant",
    "presets": "bitline.sw.cli.config:presets",
    "config": "bitline.sw.cli.config:config",
    "sweep": "bitline.sw.cli.sweep:sweep",
    "dse": "bitline.sw.cli.dse:dse",
    "explore": "bitline.sw.cli.explore:explore",
    "verilog": "bitline.sw.cli.hw:verilog",
    "fpga": "bitline.sw.cli.fpga:fpga",
    "board": "bitline.sw.cli.fpga:board",
}


#: Environment variable that turns ``--debug`` on (``BITLINE_DEBUG=1``).
DEBUG_ENV = "BITLINE_DEBUG"
_debug = False      # set by --debug for the running main() call


def _set_debug(ctx, param, value):
    global _debug
    _debug = _debug or bool(value)
    return value


def _debug_option() -> click.Option:
    return click.Option(["--debug"], is_flag=True, expose_value=False, is_eager=True,
                        callback=_set_debug,
                        help=f"Show the Python traceback of an error (also {DEBUG_ENV}=1).")


def _with_debug(command: click.Command) -> click.Command:
    """Give ``command`` (and a group's subcommands) the ``--debug`` flag, so it works after
    the command name too (``bitline run --debug ...``)."""
    if not any(param.name == "debug" for param in command.params):
        command.params.append(_debug_option())
    for sub in getattr(command, "commands", {}).values():
        _with_debug(sub)
    return command


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        return _with_debug(getattr(importlib.import_module(module_name), attribute))


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="bitline")
@click.option("--debug", is_flag=True, expose_value=False, is_eager=True,
              callback=_set_debug,
              help=f"Show the Python traceback of an error (also {DEBUG_ENV}=1).")
def cli():
    """bitline: ReRAM crossbar PIM accelerator generator (varied / block-wise quantization)."""


def _error(message: str) -> None:
    click.echo(f"error: {message}", err=True)


def _debug_requested() -> bool:
    return _debug or os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false",
                                                                          "no")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script: run a command, return its exit code.

    Every error is one ``error: ...`` line on stderr naming the file, field or option and
    the value. Exit codes: 0 success; 2 usage and input errors (a bad flag or choice, a
    file that is missing or invalid, a value out of range: click usage errors and
    ``ValueError`` / ``KeyError`` / ``OSError`` from the library); 1 a run that failed (a
    simulation, build or board run: :class:`~bitline.sw.cli.common.RunFailed`).

    Any other exception is a bug in bitline, not a user's mistake: it prints one line,
    ``error: internal error: <type>: <message> (rerun with --debug for the traceback)``,
    and exits 1 (``out of memory`` for a ``MemoryError``). ``--debug`` (before or after the
    command name, or ``BITLINE_DEBUG=1``) re-raises every exception that is not a click usage error, so
    the traceback is printed.
    """
    global _debug
    _debug = False
    try:
        cli.main(args=argv, prog_name="bitline", standalone_mode=False)
    except click.exceptions.Exit as exit_:
        return exit_.exit_code
    except click.UsageError as error:
        _error(error.format_message())
        return 2
    except click.ClickException as error:
        _error(error.format_message())
        return error.exit_code
    except click.exceptions.Abort:
        _error("aborted")
        return 1
    except (ValueError, KeyError, OSError) as error:
        if _debug_requested():
            raise
        _error(error.args[0] if isinstance(error, KeyError) and error.args else str(error))
        return 2
    except Exception as error:      # the one place a bug becomes a message
        if _debug_requested():
            raise
        hint = "rerun with --debug for the traceback"
        if isinstance(error, MemoryError):
            _error(f"out of memory: {error or type(error).__name__} ({hint})")
        else:
            _error(f"internal error: {type(error).__name__}: {error} ({hint})")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
