"""Property-based fuzzing of the CLI (issue 15, item 4): no traceback, no wrong exit 0.

For each category of :data:`support.fuzz_files.CATEGORIES` (random and mutated ONNX models,
accelerator configs and quantization specs, edited bundles, odd input arrays) hypothesis
draws a bounded, derandomized set of cases; each runs the real CLI in-process and must end
in a clean ``error:`` line or an exit 0 whose result the case's independent oracle finds
correct (:mod:`support.fuzz`). The long campaign is ``scripts/fuzz_campaign.py``.

The harness itself is tested first: a case that reaches the internal-error handler, one
that accepts what must be refused, one with a wrong result and one that leaks a Python
warning are each classified as the failure they are, so the category tests can fail.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from support.fuzz import DIR, Case, baseline, run_case
from support.fuzz_files import CATEGORIES

#: Examples per category in the suite (the campaign runs thousands); about 15 s of CPU in all.
EXAMPLES = {"onnx": 50, "config": 50, "bundle": 60, "input": 60}


def _bounded(examples: int):
    return settings(max_examples=examples, derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


@pytest.mark.parametrize("category", sorted(EXAMPLES))
def test_fuzzed_cli_gives_a_clean_error_or_a_correct_result(category):
    seen = []

    @_bounded(EXAMPLES[category])
    @given(CATEGORIES[category])
    def property_(case):
        outcome = run_case(case)
        seen.append(outcome.verdict)
        assert outcome.verdict in ("error", "ok"), (
            f"{outcome.verdict}: {case.kind}: {case.description}: {outcome.detail}")

    property_()
    # the category reaches both sides: inputs bitline refuses and ones it runs correctly
    assert "error" in seen and "ok" in seen, seen


# ------------------------------------------------------------- the harness can fail
def _tiny_compile(expect="either", check=None) -> Case:
    return Case("test", "tiny", "the tiny MLP",
                ["compile", f"{DIR}/tiny.onnx", "-s", "bwq", "-o", f"{DIR}/out", "-q"],
                expect, files={"tiny.onnx": baseline().onnx_bytes}, check=check)


def test_the_internal_error_path_is_a_traceback_not_a_clean_error(monkeypatch):
    import bitline.sw.flow.compile as flow_compile

    def explode(*args, **kwargs):
        raise ZeroDivisionError("float division by zero")

    case = _tiny_compile()              # the baseline compiles before the patch
    monkeypatch.setattr(flow_compile, "compile_model", explode)
    outcome = run_case(case)
    assert outcome.verdict == "traceback"
    assert "internal-error path" in outcome.detail and "ZeroDivisionError" in outcome.detail
    assert outcome.results[0].code == 1


def test_exit_0_for_an_input_to_refuse_and_a_wrong_result_are_silent_accepts():
    assert run_case(_tiny_compile()).verdict == "ok"
    outcome = run_case(_tiny_compile(expect="refuse"))
    assert outcome.verdict == "silent" and "must be refused" in outcome.detail
    outcome = run_case(_tiny_compile(check=lambda folder, run: "off by one"))
    assert outcome.verdict == "silent" and outcome.detail == "off by one"
    refused = Case("test", "bad", "missing model", ["info", f"{DIR}/none.onnx"], "accept")
    outcome = run_case(refused)
    assert outcome.verdict == "silent" and "refused a valid input" in outcome.detail


def test_a_leaked_python_warning_and_a_follow_up_crash_are_tracebacks(monkeypatch):
    import bitline.sw.flow.compile as flow_compile

    original = flow_compile.compile_model

    def noisy(*args, **kwargs):
        warnings.warn("overflow encountered in matmul", RuntimeWarning)
        return original(*args, **kwargs)

    case = _tiny_compile()
    monkeypatch.setattr(flow_compile, "compile_model", noisy)
    outcome = run_case(case)
    assert outcome.verdict == "traceback" and "RuntimeWarning" in outcome.detail
    monkeypatch.setattr(flow_compile, "compile_model", original)

    def follow_up(folder, run):
        from bitline.sim import backends

        np.save(folder / "x.npy", np.zeros((1, 8), np.float32))
        monkeypatch.setattr(backends, "check_run_input",
                            lambda *a, **k: (_ for _ in ()).throw(TypeError("oops")))
        run(["run", folder / "out", "-i", folder / "x.npy", "-o", folder / "y.npz"])
        monkeypatch.undo()

    outcome = run_case(_tiny_compile(check=follow_up))
    assert outcome.verdict == "traceback" and len(outcome.results) == 2
    assert outcome.detail.startswith("follow-up `bitline run") and "TypeError: oops" in \
        outcome.detail


def test_a_bare_key_error_line_is_not_a_clean_error(monkeypatch):
    """``main`` prints a KeyError as its key alone (``error: scale``): a bug's message
    naming nothing, which the harness must not count as a clean error."""
    import bitline.sw.flow.compile as flow_compile

    def missing(*args, **kwargs):
        raise KeyError("scale")

    case = _tiny_compile()
    monkeypatch.setattr(flow_compile, "compile_model", missing)
    outcome = run_case(case)
    assert outcome.results[0].code == 2 and outcome.results[0].err == "error: scale\n"
    assert outcome.verdict == "traceback" and "bare KeyError" in outcome.detail
