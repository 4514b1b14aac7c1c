"""Fuzz harness of the ``bitline`` CLI (issue 15, item 4): run a case, classify the outcome.

A :class:`Case` is a set of files, a command line and what an oracle *independent of
bitline* says about it: ``expect="refuse"`` (the input is invalid: NaN weights, a complex
input array, an unknown config key, ...), ``"accept"`` or ``"either"`` (bitline may refuse
it cleanly or run it), plus an optional ``check`` that judges an exit 0 (it may run more
commands: a compiled bundle is run and compared with the golden model and the ONNX
reference). :func:`run_case` runs the command in-process through
:func:`bitline.sw.cli.main` (the console script's own error path) and returns one
:class:`Outcome` whose ``verdict`` is

* ``"error"`` -- a clean ``error: ...`` line, exit 2 (or 1 for a failed run that is not the
  internal-error path), for an input that may be refused;
* ``"ok"`` -- exit 0 with a result the check found correct;
* ``"traceback"`` -- an exception escaped :func:`main`, the top-level ``internal error``
  handler answered (that line means a bug, see :mod:`bitline.sw.cli`), a Python warning
  leaked to stderr (``file.py:LINE: RuntimeWarning: ...``), or the error line is one bare
  word (``error: scale``: :func:`main` prints a ``KeyError`` as its key alone);
* ``"silent"`` -- exit 0 for an input the oracle says must be refused, or exit 0 with a
  wrong result; also a clean error for an input the oracle says must be accepted, or one
  that does not name what the case's ``refusal`` judge expects (the ``network`` category:
  the op whole-network mode does not run).

The case generators (hypothesis strategies) are in :mod:`support.fuzz_onnx`,
:mod:`support.fuzz_network` and :mod:`support.fuzz_files`; the suite
tests are ``tests/unit/test_fuzz_*.py`` and the long campaign is ``scripts/fuzz_campaign.py``.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
from click.testing import CliRunner

__all__ = [
    "VERDICTS",
    "Case",
    "Outcome",
    "Result",
    "baseline",
    "check_bundle_against_golden",
    "cli",
    "compare_float",
    "onnx_reference",
    "run_case",
    "save_case",
]

VERDICTS = ("error", "ok", "traceback", "silent")

#: The top-level handler's line for an unexpected exception (bitline.sw.cli.main).
INTERNAL = "error: internal error:"
#: A warning printed by Python's warnings module: the user sees a line of library source.
PY_WARNING = re.compile(r"^\S+\.py:\d+: \w*Warning: ", re.MULTILINE)
#: Placeholder of the case's work folder in :attr:`Case.argv`.
DIR = "{d}"
#: Warning categories Python's default filters hide from a user of a console script.
HIDDEN_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, ImportWarning,
                   ResourceWarning)


@dataclass
class Result:
    """What one command did: exit code, stdout, stderr and an escaped exception."""

    argv: list[str]
    code: int | None
    out: str
    err: str
    exception: BaseException | None = None


@dataclass
class Case:
    """One fuzz case (module docstring). ``files`` maps names in the work folder to bytes
    (or a callable ``f(folder)`` that writes them, e.g. a bundle copy); ``check(folder,
    result)`` returns ``None`` for a correct exit 0, or what is wrong; ``refusal(stderr)``
    judges a clean error the same way (``None``: the error names what the oracle expects)."""

    category: str
    kind: str
    description: str
    argv: list[str]
    expect: str = "either"
    files: dict[str, bytes] = field(default_factory=dict)
    setup: Callable[[Path], None] | None = None
    check: Callable[[Path, Result], str | None] | None = None
    refusal: Callable[[str], str | None] | None = None

    def __post_init__(self):
        assert self.expect in ("refuse", "accept", "either"), self.expect


@dataclass
class Outcome:
    """The verdict of one case (module docstring) with the commands' results."""

    case: Case
    verdict: str
    detail: str
    results: list[Result]


def cli(argv: list[str]) -> Result:
    """Run ``bitline ARGV`` in-process through :func:`bitline.sw.cli.main`."""
    from bitline.sw.cli import main

    runner = CliRunner()
    argv = [str(arg) for arg in argv]
    exception = None
    with runner.isolation(env={"BITLINE_DEBUG": None}) as (out, err, *_):
        # recorded (also under pytest, which records warnings itself) and printed after the
        # command, as Python prints the ones its default filters show a user
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            try:
                code = main(argv)
            except SystemExit as exit_:     # click may still exit for --help and the like
                code = exit_.code if isinstance(exit_.code, int) else 1
            except BaseException as error:      # noqa: BLE001 - the very thing we look for
                code, exception = None, error
        shown = [warnings.formatwarning(w.message, w.category, w.filename, w.lineno)
                 for w in caught if not issubclass(w.category, HIDDEN_WARNINGS)]
        return Result(argv, code, out.getvalue().decode(errors="replace"),
                      err.getvalue().decode(errors="replace") + "".join(shown), exception)


def _broken(result: Result) -> str | None:
    """Return why ``result`` is a traceback verdict, or ``None``."""
    if result.exception is not None:
        return f"{type(result.exception).__name__} escaped main: {result.exception}"
    if INTERNAL in result.err or "error: out of memory" in result.err:
        return "internal-error path: " + result.err.strip().splitlines()[-1]
    match = PY_WARNING.search(result.err)
    if match:
        line = result.err[match.start():].splitlines()[0]
        return f"Python warning leaked: {line}"
    if result.code not in (0, 1, 2):
        return f"exit code {result.code}"
    if result.code != 0 and not re.search(r"^error: \S", result.err, re.MULTILINE):
        return f"exit {result.code} without an error line: {result.err.strip()[:200]!r}"
    bare = re.search(r"^error: \S+$", result.err, re.MULTILINE)
    if result.code != 0 and bare:       # main prints a KeyError as its key alone
        return f"an error that names nothing (a bare KeyError?): {bare.group(0)}"
    return None


def run_case(case: Case, workdir: Path | None = None, keep: bool = False) -> Outcome:
    """Write the case's files into a fresh folder, run it and classify it (module docstring)."""
    folder = Path(tempfile.mkdtemp(prefix=f"fuzz-{case.category}-", dir=workdir))
    try:
        for name, data in case.files.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(data)
        if case.setup is not None:
            case.setup(folder)
        result = cli([arg.replace(DIR, str(folder)) for arg in case.argv])
        results = [result]
        broken = _broken(result)
        if broken:
            return Outcome(case, "traceback", broken, results)
        if result.code != 0:
            if case.expect == "accept":
                return Outcome(case, "silent", "refused a valid input: "
                               + result.err.strip()[-300:], results)
            problem = case.refusal(result.err) if case.refusal is not None else None
            if problem:
                return Outcome(case, "silent", "refused for the wrong reason: " + problem
                               + ": " + result.err.strip()[-300:], results)
            return Outcome(case, "error", result.err.strip()[-300:], results)
        if case.expect == "refuse":
            return Outcome(case, "silent", "exit 0 for an input that must be refused", results)
        if case.check is not None:
            checker = _Recorder(results)
            problem = case.check(folder, checker)
            if checker.broken:
                return Outcome(case, "traceback", checker.broken, results)
            if problem:
                return Outcome(case, "silent", problem, results)
        return Outcome(case, "ok", "", results)
    finally:
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)


class _Recorder:
    """Passed to a check: runs follow-up commands, records them, notes a traceback."""

    def __init__(self, results: list[Result]):
        self.results = results
        self.broken: str | None = None

    def __call__(self, argv: list[str]) -> Result:
        result = cli(argv)
        self.results.append(result)
        broken = _broken(result)
        if broken and self.broken is None:
            self.broken = f"follow-up `bitline {' '.join(result.argv)}`: {broken}"
        return result


def save_case(outcome: Outcome, folder: Path) -> Path:
    """Write a reproducer of ``outcome`` under ``folder``: the case's files, ``case.json``
    (category, kind, description, verdict, detail, commands and their stderr) and
    ``repro.sh`` (the first command with the placeholder replaced by the folder)."""
    case = outcome.case
    Path(folder).mkdir(parents=True, exist_ok=True)
    target = Path(tempfile.mkdtemp(prefix=f"{case.category}-{case.kind}-", dir=folder))
    for name, data in case.files.items():
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        (target / name).write_bytes(data)
    if case.setup is not None:
        case.setup(target)
    (target / "case.json").write_text(json.dumps({
        "category": case.category, "kind": case.kind, "description": case.description,
        "expect": case.expect, "verdict": outcome.verdict, "detail": outcome.detail,
        "commands": [{"argv": r.argv, "code": r.code, "stderr": r.err[-2000:]}
                     for r in outcome.results]}, indent=2))
    argv = " ".join(f"'{arg.replace(DIR, '.')}'" for arg in case.argv)
    (target / "repro.sh").write_text(f"#!/bin/sh\ncd \"$(dirname \"$0\")\"\nbitline {argv}\n")
    return target


# ------------------------------------------------------------------------ oracles
def onnx_reference(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    """Run an ONNX model with onnx's own reference evaluator (independent of bitline)."""
    import onnx
    from onnx.reference import ReferenceEvaluator

    model = onnx.load_from_string(model_bytes)
    opset = next((o for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is not None and 9 <= opset.version < 15 and any(
            node.op_type == "BatchNormalization" for node in model.graph.node):
        # onnx 1.23's reference BatchNormalization of opsets 9-14 does not compute the
        # inference formula those opsets define (it does from opset 15, same formula)
        opset.version = 15
    session = ReferenceEvaluator(model)
    constants = {t.name for t in model.graph.initializer}
    name = next(i.name for i in model.graph.input if i.name not in constants)
    with np.errstate(all="ignore"):
        return np.asarray(session.run(None, {name: x})[0])


def compare_float(got: np.ndarray, want: np.ndarray, tolerance: float) -> str | None:
    """``None`` if ``got`` equals ``want`` within ``tolerance`` of its largest magnitude."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        if got.size != want.size:
            return f"output shape {got.shape}, reference {want.shape}"
        got = got.reshape(want.shape)
    if not np.isfinite(want).all():
        return None if np.array_equal(np.isfinite(got), np.isfinite(want)) else \
            "non-finite reference, different output"
    scale = max(float(np.abs(want).max()), 1e-6)
    error = float(np.abs(got - want).max()) / scale
    return None if error <= tolerance else \
        f"output differs from the reference by {error:.3g} of its range (> {tolerance})"


def check_bundle_against_golden(run: Callable, bundle: Path, x: np.ndarray,
                                folder: Path, backend: str = "executor") -> tuple[str | None,
                                                                                  dict | None]:
    """Run ``bundle`` on ``x`` with ``backend``; its integer output must equal
    :func:`bitline.sim.golden.run_golden` on the bundle's quantized model.

    Returns ``(problem, arrays)``: ``problem`` is ``None`` when equal (or when the run was
    refused cleanly: then ``arrays`` is ``None``).
    """
    from bitline.sim.golden import run_golden
    from bitline.sw.bundle import read_bundle

    np.save(folder / "x_check.npy", x)
    out = folder / "y_check.npz"
    result = run(["run", bundle, "-i", folder / "x_check.npy", "-o", out, "-b", backend, "-q"])
    if result.code != 0:
        return None, None
    with np.load(out) as data:
        arrays = {key: data[key] for key in data}
    expected = run_golden(read_bundle(bundle).qmodel, x).output_int
    if not np.array_equal(arrays["output_int"].reshape(expected.shape), expected):
        bad = int(np.sum(arrays["output_int"].reshape(expected.shape) != expected))
        return f"{backend} output_int differs from the golden model in {bad} values", arrays
    return None, arrays


# ---------------------------------------------------------------------- baselines
@dataclass
class Baseline:
    """A compiled tiny model shared by the bundle and input categories."""

    name: str
    onnx_bytes: bytes
    bundle: Path                     # a read-only compiled bundle (copy before editing)
    input_shape: tuple[int, ...]
    scale: float
    zero_point: int
    qmax: int
    x: np.ndarray                    # test batch, inside the calibrated range
    output: np.ndarray               # the executor's outputs on x (dequantized, integer)
    output_int: np.ndarray


_ROOT: list[Path] = []


def _root() -> Path:
    if not _ROOT:
        import atexit

        _ROOT.append(Path(tempfile.mkdtemp(prefix="bitline-fuzz-baselines-")))
        atexit.register(shutil.rmtree, _ROOT[0], True)
    return _ROOT[0]


@cache
def baseline(name: str = "tiny") -> Baseline:
    """Compile ``name`` (``tiny``: an MLP 8-6-4, ``small``: a conv net on (2, 8, 8),
    ``other``: the MLP with other weights, for mixing files of two compiles) once."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bitline.sim.golden import run_golden
    from bitline.sw.bundle import read_bundle

    from support.networks import small_cnn_onnx, tiny_mlp_onnx

    folder = _root() / name
    folder.mkdir(exist_ok=True)
    model = folder / f"{name}.onnx"
    if name == "small":
        small_cnn_onnx(model)
    else:
        tiny_mlp_onnx(model)
        if name == "other":
            import onnx
            from onnx import numpy_helper

            proto = onnx.load(model)
            for tensor in proto.graph.initializer:
                array = numpy_helper.to_array(tensor)
                tensor.CopyFrom(numpy_helper.from_array((array * 1.5)[::-1].copy(),
                                                        tensor.name))
            onnx.save(proto, model)
    result = cli(["compile", model, "-s", "bwq", "-o", folder / "bundle", "-q"])
    assert result.code == 0, result.err
    qmodel = read_bundle(folder / "bundle").qmodel
    act = qmodel.input
    shape = tuple(qmodel.model.input_shape)
    x = np.random.default_rng(1).random((3, *shape), dtype=np.float32) * 0.9
    golden = run_golden(qmodel, x)
    return Baseline(name, model.read_bytes(), folder / "bundle", shape, float(act.scale),
                    int(act.zero_point), int(2 ** act.bits - 1), x,
                    np.asarray(golden.output), np.asarray(golden.output_int))
