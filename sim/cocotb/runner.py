"""Build generated Verilog and run a cocotb bench on it, from Python (and so from pytest).

:func:`build_and_test` is the one entry point: it turns an Amaranth component (or Verilog
text / a ``.v`` file) into Verilog, builds it with the simulator :func:`simulator` picks
(Verilator by default, Icarus with ``BITLINE_SIM=icarus``) in a folder named by a digest of
everything that affects the build, runs the cocotb test module with
``cocotb_tools.runner`` and reads the results XML itself, raising :class:`BenchFailure` when a
test failed -- also outside pytest, where ``runner.test()`` does not check (cocotb 2 documentation of `cocotb_tools.runner`).

Build cache: ``<build_root>/<toplevel>-<simulator>-<digest>`` where ``digest`` is the
SHA-256 (first 16 hex digits) of the Verilog text, the simulator and its version, the cocotb
version, the build arguments and the waveform switch. A folder holding a finished build
(``bitline-build.json`` next to the executable) is reused as is, so repeated pytest runs pay
the Verilator C++ compile once. ``build_root`` defaults to ``$BITLINE_BUILD_DIR``, else
the user cache ``$XDG_CACHE_HOME/bitline/cocotb`` (``~/.cache/bitline/cocotb``), else
``<tmp>/bitline-cocotb-<uid>`` (:func:`default_build_root`).

Waveforms only when asked: ``waves=True`` or ``WAVES=1`` (cocotb's convention); they land in
the build folder (``dump.vcd`` for Verilator, ``<toplevel>.fst`` for Icarus).

Logs: a build's tool output goes to ``build.log`` in its folder, each run's simulator output to
``run-<module>-<env digest>.log`` next to it (the console stays quiet, e.g. under
``bitline run --backend rtl``); a :class:`BenchFailure` message ends with the log's tail.

Icarus builds compile :func:`icarus_start_up` of the Verilog, not the Verilog itself, so that
combinational outputs are defined from time 0; Verilator builds use the text unchanged.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import resource
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from bitline.hw.toolchain.tools import VERILATOR_WAIVERS, verilator_env

__all__ = [
    "SIMULATORS",
    "BenchResult",
    "BenchFailure",
    "simulator",
    "missing_tools",
    "simulator_version",
    "verilator_env",
    "component_verilog",
    "write_texts",
    "icarus_start_up",
    "default_build_root",
    "user_cache_dir",
    "build_and_test",
]

#: Simulators :func:`simulator` accepts (value of ``BITLINE_SIM``).
SIMULATORS = ("verilator", "icarus")

#: Verilator arguments of every build: the waivers of :data:`bitline.hw.toolchain.tools.VERILATOR_WAIVERS`
#: (Amaranth's width and unused-signal patterns, see there) and ``-Wno-fatal`` so that a
#: warning never stops a *simulation* build -- the lint test (``verilator_lint``) is where an
#: unexpected warning fails -- plus the speed options of :data:`VERILATOR_SPEED_ARGS`.
VERILATOR_BUILD_ARGS = ["-Wno-fatal"] + [f"-Wno-{name}" for name in VERILATOR_WAIVERS]

#: Verilator's own optimisation options (Verilator 5.048 manual), part of every build:
#:
#: * ``-O3`` -- Verilator's slow optimisations of the C++ it writes (``--inline-mult -1``);
#: * ``--x-assign fast`` / ``--x-initial fast`` -- an explicit X (Amaranth writes none but
#:   Yosys may, e.g. in unreachable ``casez`` arms) and a variable without initial value
#:   become whatever is cheapest instead of a randomisable value. Results stay bit-exact:
#:   Amaranth initialises every register, and the benches compare every output with the
#:   golden model and every counter with the performance model.
#:
#: Measured on the digits design (docs/verification.md, "Simulation speed"): together with
#: ``OPT_SLOW=-O0`` (:data:`VERILATOR_MAKE_VARIABLES`) the cold build took 27 % less CPU.
VERILATOR_SPEED_ARGS = ["-O3", "--x-assign", "fast", "--x-initial", "fast"]

#: ``make`` variables of every Verilator build (passed through ``MAKEFLAGS``):
#:
#: * ``CFG_CXXFLAGS_PCH_I=-include`` -- the PyPI wheel's ``verilated.mk`` leaves it empty, so
#:   any design large enough for Verilator's split (precompiled-header) build fails to
#:   compile ("Vtop__pch.h.fast: linker input file not found");
#: * ``OPT_FAST=-Og`` -- Verilator's default ``-Os`` (and ``-O2``) make GCC 12 spend minutes
#:   on some generated files of the accelerator (> 100 s per 650 kB file, measured); ``-O1``
#:   compiles them in ~7 s, ``-Og`` (``-O1`` without the passes that make code hard to
#:   debug) in about half that per file: on the digits design 16 % less build CPU than
#:   ``-O1`` for a model about 8 % slower (docs/verification.md, "Simulation speed");
#: * ``OPT_SLOW=-O0`` -- the ``__Slow`` files (half of the C++: construction, initial
#:   values, the first settle) run once per simulation, so they are not optimised at all.
VERILATOR_MAKE_VARIABLES = ("CFG_CXXFLAGS_PCH_I=-include", "OPT_FAST=-Og", "OPT_SLOW=-O0")

#: Yosys' start-up trigger of combinational processes, as ``write_verilog`` declares it: a
#: 1-bit register with an initializer, read (``if (\\$auto$...) begin end``) by every
#: ``always @*`` of the module.
_START_UP_TRIGGER = re.compile(
    r"^([ \t]*)reg (\\\$auto\$verilog_backend\.cc:\d+:dump_module\$\d+) += 0;$", re.MULTILINE)

#: File written into a build folder once its build succeeded.
_STAMP = "bitline-build.json"


class BenchFailure(AssertionError):
    """A cocotb bench failed (a test failed, none ran, or the simulator crashed).

    Attributes
    ----------
    result:
        The :class:`BenchResult` of the run (``None`` if the build itself failed).
    """

    def __init__(self, message: str, result: "BenchResult | None" = None):
        super().__init__(message)
        self.result = result


@dataclass
class BenchResult:
    """What :func:`build_and_test` measured.

    Attributes
    ----------
    tests, failed:
        cocotb tests run and failed (failures plus errors) according to the results XML.
    results_xml:
        The JUnit XML cocotb wrote.
    build_dir:
        The (digest-named) build folder.
    simulator:
        ``"verilator"`` or ``"icarus"``.
    cached:
        True when an earlier build was reused.
    build_seconds, test_seconds:
        Wall time of the build (0 when cached) and of the simulation run.
    build_cpu_seconds:
        CPU time (user + system) of the build's tools (Verilator, make, the C++ compiler;
        0 when cached): on a shared machine the figure that does not depend on the load.
    """

    tests: int
    failed: int
    results_xml: Path
    build_dir: Path
    simulator: str
    cached: bool
    build_seconds: float
    test_seconds: float
    build_cpu_seconds: float = 0.0


def simulator() -> str:
    """Return the simulator to use: ``$BITLINE_SIM``, default ``"verilator"``.

    Raises
    ------
    ValueError
        If ``BITLINE_SIM`` names another simulator.
    RuntimeError
        If ``BITLINE_SIM=icarus`` but ``iverilog`` / ``vvp`` are not on ``PATH``.
    """
    name = os.environ.get("BITLINE_SIM", "").strip().lower() or "verilator"
    if name not in SIMULATORS:
        raise ValueError(
            f"BITLINE_SIM must be one of {', '.join(SIMULATORS)}, not "
            f"{os.environ.get('BITLINE_SIM')!r}"
        )
    if name == "icarus" and (shutil.which("iverilog") is None or shutil.which("vvp") is None):
        raise RuntimeError(
            "BITLINE_SIM=icarus but iverilog/vvp are not on PATH: install Icarus Verilog "
            ">= 11 (e.g. apt-get install iverilog) or unset BITLINE_SIM to use the packaged "
            "Verilator"
        )
    return name


def missing_tools(name: str | None = None) -> list[str]:
    """Return the programs the simulator ``name`` (default :func:`simulator`) needs and lacks.

    Verilator builds C++ with ``make`` and a compiler and runs a Perl script; Icarus needs
    ``iverilog`` and ``vvp``. Test tiers skip themselves, naming these, only when this is
    non-empty.
    """
    if name is None:
        try:
            name = simulator()
        except RuntimeError:
            return ["iverilog", "vvp"]
    if name == "icarus":
        needed = ["iverilog", "vvp"]
    else:
        needed = ["perl", "make", os.environ.get("CXX", "g++")]
    return [tool for tool in needed if shutil.which(tool) is None]


@lru_cache(maxsize=None)
def simulator_version(name: str) -> str:
    """Return the first line of ``verilator --version`` / ``iverilog -V`` (part of the digest)."""
    if name == "verilator":
        command, env = ["verilator", "--version"], verilator_env()
    elif name == "icarus":
        command, env = ["iverilog", "-V"], None
    else:
        raise ValueError(f"unknown simulator {name!r}; known: {', '.join(SIMULATORS)}")
    try:
        process = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    except FileNotFoundError:
        raise RuntimeError(f"{command[0]} is not installed") from None
    lines = (process.stdout or process.stderr).strip().splitlines()
    return lines[0] if lines else "unknown"


def write_texts(texts: dict[Path, str]) -> None:
    """Write each ``{path: text}`` atomically (a temporary sibling renamed into place).

    Parallel sessions and pytest workers share the build cache and may generate the same
    design at once: a reader never sees a half-written file.
    """
    for path, text in texts.items():
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        temporary.write_text(text)
        temporary.replace(path)


def component_verilog(component, name: str) -> str:
    """Return the Verilog of an Amaranth ``wiring.Component`` with top module ``name``.

    Constant members of the signature (e.g. the ``ready`` of an ``always_ready`` stream)
    are not ports: Verilog has no constant ports, so they are left out; every other member
    becomes a port named by its path joined with ``__`` (``inputs__payload``).
    """
    from amaranth.hdl import Const, ValueCastable

    from bitline.hw.toolchain.memory_init import convert_verilog

    ports = []
    for _path, _member, value in component.signature.flatten(component):
        if isinstance(value, ValueCastable):
            value = value.as_value()
        if isinstance(value, Const):
            continue
        ports.append(value)
    # memory init formatted fast and written as one loop per constant memory
    return convert_verilog(component, name=name, ports=ports, emit_src=False)


def icarus_start_up(verilog: str) -> str:
    """Return ``verilog`` with Yosys' start-up trigger set by ``initial #0``, not an initializer.

    Why: Yosys' ``write_verilog`` (Amaranth's back end) prints each combinational process as
    ``always @*`` and, to make every such process run once at start-up, declares a dummy
    register with an initializer (``reg \\$auto$verilog_backend...$1 = 0;``) that each of them
    reads. Icarus Verilog 11 applies declaration initializers before the simulation starts,
    without a value-change event, so a process whose real inputs do not change during reset
    never runs: an FSM-decoded output such as the scheduler's ``busy`` stays ``X`` after
    reset until the state first changes. Here the register is declared without initializer
    and set to 0 by ``initial #0``: the ``#0`` runs after every process has started and waits
    on its inputs (IEEE 1364, inactive region), so the X -> 0 change wakes them all once at
    time 0 -- what the initializer is meant to do. Registers keep their own initializers.

    Only these declarations change (one per module with combinational processes); the
    processes stay ``always @*``. Rewriting them to ``always_comb`` instead (which Icarus runs
    at time 0) does not work: Icarus 11 makes an ``always_comb`` that reads a constant
    part-select sensitive to the whole vector ("sorry: constant selects in always_* processes
    are not currently supported"), and the accelerator then has processes that wake each
    other forever in one time step on the glitches of their default assignments (the
    ``SMALL`` bench stuck at 2.72 us simulated time, measured).
    """
    return _START_UP_TRIGGER.sub(r"\1reg \2 ;\n\1initial #0 \2 = 1'b0;", verilog)


def _tail(path: Path, lines: int = 60) -> str:
    """The last ``lines`` lines of a log (what a failure message shows of it)."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text[-lines:])


def user_cache_dir() -> Path:
    """Return the user's cache folder for bitline: ``$XDG_CACHE_HOME/bitline``, else
    ``~/.cache/bitline`` (the XDG base-directory default; no extra dependency)."""
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    if not base or not os.path.isabs(base):   # the XDG spec ignores relative values
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "bitline"


def default_build_root() -> Path:
    """Return the simulator build cache: ``$BITLINE_BUILD_DIR``, else
    ``<user cache>/cocotb`` (:func:`user_cache_dir`), else, when that cannot be created,
    ``<tmp>/bitline-cocotb-<uid>``.

    Not the source checkout: a clean clone, a read-only install and several checkouts all
    share one cache, whose folders are named by digests of everything a build depends on.
    """
    if os.environ.get("BITLINE_BUILD_DIR"):
        return Path(os.environ["BITLINE_BUILD_DIR"])
    root = user_cache_dir() / "cocotb"
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError:
        return Path(tempfile.gettempdir()) / f"bitline-cocotb-{os.getuid()}"
    if not os.access(root, os.W_OK):
        return Path(tempfile.gettempdir()) / f"bitline-cocotb-{os.getuid()}"
    return root


@contextlib.contextmanager
def _environment(changes: dict[str, str]):
    """Apply ``changes`` to ``os.environ`` for the block (cocotb's runner reads it)."""
    saved = {key: os.environ.get(key) for key in changes}
    os.environ.update(changes)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _verilog_text(design, toplevel: str) -> str:
    if isinstance(design, Path):
        return design.read_text()
    if isinstance(design, str):
        if "module" not in design and Path(design).is_file():
            return Path(design).read_text()
        return design
    if hasattr(design, "signature"):
        return component_verilog(design, toplevel)
    raise TypeError(
        f"design must be an Amaranth wiring.Component, Verilog text or a .v path, not "
        f"{type(design).__name__}"
    )


def build_and_test(
    design,
    toplevel: str,
    test_module: str,
    *,
    build_root: str | Path | None = None,
    extra_env: dict[str, str] | None = None,
    waves: bool | None = None,
    test_filter: str | None = None,
    verilator_args: list[str] | tuple[str, ...] = (),
) -> BenchResult:
    """Build ``design`` (cached by digest) and run the cocotb ``test_module`` on it.

    Parameters
    ----------
    design:
        An Amaranth ``wiring.Component`` (converted with :func:`component_verilog`), Verilog
        text, or the path of a Verilog file.
    toplevel:
        Top module name (the component is converted under this name).
    test_module:
        Importable module holding the ``@cocotb.test()`` functions, e.g.
        ``"bitline.sim.cocotb.tb_output_unit"``.
    build_root:
        Parent of the digest-named build folders (default :func:`default_build_root`).
    extra_env:
        Environment variables for the simulation (how a pytest function passes a config,
        a seed or a fault switch to the bench).
    waves:
        Dump waveforms; default ``WAVES=1`` in the environment.
    test_filter:
        Regular expression selecting tests of the module (``COCOTB_TEST_FILTER``).
    verilator_args:
        Extra Verilator build arguments (part of the digest; not used with Icarus), e.g.
        ``--no-public-flat-rw`` and a ``.vlt`` file that makes only the top-level ports
        public (``bitline.sim.rtl``): 3-4x faster simulation and smaller builds.

    Returns
    -------
    BenchResult

    Raises
    ------
    BenchFailure
        If the build fails, the simulator exits abnormally, no test ran or a test failed;
        the message names the results XML.
    """
    import cocotb
    from cocotb_tools.runner import get_runner

    if waves is None:
        waves = os.environ.get("WAVES") == "1"
    build = _prepare_build(design, toplevel, simulator(), bool(waves), verilator_args,
                           cocotb.__version__, build_root)
    with _environment(_tool_environment(build.simulator)), \
            open(build.directory / ".lock", "w") as lock:
        # One build per folder at a time (parallel pytest sessions share the cache).
        fcntl.flock(lock, fcntl.LOCK_EX)
        runner = get_runner(build.simulator)
        cached = (build.directory / _STAMP).is_file()
        build_seconds, build_cpu = (0.0, 0.0) if cached else _build(runner, build, toplevel)
        results_xml, test_log, test_seconds = _run_tests(
            runner, build, toplevel, test_module, extra_env, test_filter)
    result = _check_results(build, toplevel, test_module, results_xml, test_log, cached,
                            build_seconds, test_seconds)
    result.build_cpu_seconds = build_cpu
    return result


@dataclass(frozen=True)
class _Build:
    """A digest-named build folder, prepared by :func:`_prepare_build`."""

    simulator: str
    directory: Path
    source: Path
    args: list[str]
    key: str
    waves: bool


def _prepare_build(design, toplevel: str, name: str, waves: bool, verilator_args,
                   cocotb_version: str, build_root: str | Path | None) -> _Build:
    """Make the Verilog for simulator ``name``, its build key and folder; write the source.

    The source file is rewritten only when its text changed (an unchanged file keeps its
    time stamp).
    """
    text = _verilog_text(design, toplevel)
    if name == "verilator":
        build_args = VERILATOR_BUILD_ARGS + VERILATOR_SPEED_ARGS + list(verilator_args)
    else:
        text = icarus_start_up(text)
        build_args = []
    key = json.dumps({
        "verilog": hashlib.sha256(text.encode()).hexdigest(),
        "simulator": name, "version": simulator_version(name),
        "cocotb": cocotb_version, "build_args": build_args, "waves": waves,
        "make": list(VERILATOR_MAKE_VARIABLES) if name == "verilator" else [],
        "toplevel": toplevel,
    }, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    root = Path(build_root) if build_root is not None else default_build_root()
    build_dir = (root / f"{toplevel}-{name}-{digest}").resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    source = build_dir / f"{toplevel}.v"
    if not source.is_file() or source.read_text() != text:
        source.write_text(text)
    return _Build(simulator=name, directory=build_dir, source=source, args=build_args,
                  key=key, waves=waves)


def _tool_environment(name: str) -> dict[str, str]:
    """The environment changes a build and run with simulator ``name`` need."""
    env = verilator_env() if name == "verilator" else dict(os.environ)
    changes = {key: env[key] for key in ("PATH", "VERILATOR_ROOT", "CXXFLAGS") if key in env}
    if name == "verilator":
        changes["MAKEFLAGS"] = (os.environ.get("MAKEFLAGS", "") + " "
                                + " ".join(VERILATOR_MAKE_VARIABLES)).strip()
    return changes


def _children_cpu() -> float:
    """CPU seconds (user + system) of this process's finished child processes."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _build(runner, build: _Build, toplevel: str) -> tuple[float, float]:
    """Build ``build`` with cocotb's ``runner``, stamp the folder; return the wall and CPU
    time (the tools run as child processes).

    Raises
    ------
    BenchFailure
        If the build fails (the message ends with the tail of ``build.log``).
    """
    build_log = build.directory / "build.log"
    start, start_cpu = time.perf_counter(), _children_cpu()
    try:
        runner.build(sources=[build.source], hdl_toplevel=toplevel, build_dir=build.directory,
                     build_args=build.args, waves=build.waves,
                     timescale=("1ns", "1ps"), always=True, log_file=build_log)
    except (RuntimeError, SystemExit) as error:
        raise BenchFailure(f"{build.simulator} build of {toplevel} in {build.directory} "
                           f"failed: {error}\n{_tail(build_log)}") from None
    build_seconds, build_cpu = time.perf_counter() - start, _children_cpu() - start_cpu
    (build.directory / _STAMP).write_text(build.key + "\n")
    return build_seconds, build_cpu


def _run_tests(runner, build: _Build, toplevel: str, test_module: str,
               extra_env: dict[str, str] | None, test_filter: str | None):
    """Run ``test_module`` on the built design; return (results XML, log, wall time)."""
    # One results file per (module, environment): parallel variants never share one.
    env_digest = hashlib.sha256(json.dumps(extra_env or {}, sort_keys=True).encode())
    run_name = f"{test_module.rsplit('.', 1)[-1]}-{env_digest.hexdigest()[:8]}"
    results_xml = build.directory / f"results-{run_name}.xml"
    test_log = build.directory / f"run-{run_name}.log"
    start = time.perf_counter()
    try:
        runner.test(test_module=test_module, hdl_toplevel=toplevel, build_dir=build.directory,
                    hdl_toplevel_lang="verilog",
                    test_dir=build.directory, extra_env=dict(extra_env or {}),
                    waves=build.waves, results_xml=str(results_xml),
                    test_filter=test_filter, log_file=test_log)
    except SystemExit:
        pass  # under pytest the runner exits on failures; the XML says what happened
    return results_xml, test_log, time.perf_counter() - start


def _check_results(build: _Build, toplevel: str, test_module: str, results_xml: Path,
                   test_log: Path, cached: bool, build_seconds: float,
                   test_seconds: float) -> BenchResult:
    """Read the results XML; return the :class:`BenchResult` or raise :class:`BenchFailure`."""
    from cocotb_tools.check_results import get_results

    try:
        tests, failed = get_results(results_xml)
    except RuntimeError as error:
        raise BenchFailure(f"{test_module} on {toplevel}: {error}\n{_tail(test_log)}") from None
    result = BenchResult(tests=tests, failed=failed, results_xml=results_xml,
                         build_dir=build.directory, simulator=build.simulator, cached=cached,
                         build_seconds=build_seconds, test_seconds=test_seconds)
    if tests == 0 or failed:
        raise BenchFailure(
            f"{test_module} on {toplevel} ({build.simulator}): {failed} of {tests} cocotb "
            f"tests failed; see {results_xml} and the log {test_log}:\n{_tail(test_log)}",
            result)
    return result
