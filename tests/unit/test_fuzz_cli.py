"""Property-based fuzzing of the CLI (issue 15, item 4): no traceback, no wrong exit 0.

For each category of :data:`support.fuzz_files.CATEGORIES` (random and mutated ONNX models,
accelerator configs and quantization specs, edited bundles, odd input arrays, random graphs
compiled with ``--network``) hypothesis
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

#: Examples per category in the suite (the campaign runs thousands); about 20 s of CPU in all.
EXAMPLES = {"onnx": 50, "config": 50, "bundle": 60, "input": 60, "network": 40}


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


# ------------------------------------------------- the network category's oracle can fail
def _network_case(*ops_and_inputs):
    """A ``network`` case of a hand-written chain on a (1, 4, 4) input."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from support.fuzz_network import _network_check, _refusal_check, network_expectation

    rng = np.random.default_rng(0)
    arrays = {"w": rng.standard_normal((2, 1, 3, 3)).astype(np.float32),
              "v": rng.standard_normal((3, 32)).astype(np.float32),
              "v2": rng.standard_normal((3, 64)).astype(np.float32)}
    nodes = [helper.make_node(op, inputs, [out], **attrs)
             for op, inputs, out, attrs in ops_and_inputs]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        [numpy_helper.from_array(a, k) for k, a in arrays.items()])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    proto.ir_version = 8
    onnx.checker.check_model(proto)
    data = proto.SerializeToString()
    expect, refusable = network_expectation(proto)
    ops = {node.op_type for node in proto.graph.node}
    return Case("network", expect, "hand graph",
                ["compile", f"{DIR}/m.onnx", "-s", "bwq", "--network", "-o", f"{DIR}/out",
                 "-q"], expect, files={"m.onnx": data}, check=_network_check(data, (1, 4, 4)),
                refusal=_refusal_check(refusable, bool(ops & {"Conv", "Gemm", "MatMul"})))


CONV = ("Conv", ["x", "w"], "c", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]})
HEAD = [("Flatten", ["r"], "f", {}), ("Gemm", ["f", "v"], "y", {"transB": 1})]


def test_network_expectation_from_the_op_list():
    relu_after_conv = _network_case(CONV, ("Relu", ["c"], "r", {}), *HEAD)
    assert relu_after_conv.expect == "accept"
    pool_then_relu = _network_case(CONV, ("MaxPool", ["c"], "p", {"kernel_shape": [1, 1]}),
                                   ("Relu", ["p"], "r", {}), *HEAD)
    assert pool_then_relu.expect == "either"
    concat = _network_case(CONV, ("Concat", ["c", "c"], "r", {"axis": 1}),
                           ("Flatten", ["r"], "f", {}),
                           ("Gemm", ["f", "v2"], "y", {"transB": 1}))
    assert concat.expect == "refuse"
    outcome = run_case(concat)
    assert outcome.verdict == "error" and "(op concat)" in outcome.detail


def test_network_category_detects_a_wrong_run_nodes_and_a_misnamed_refusal(monkeypatch):
    import bitline.sw.integer.network as network

    case = _network_case(CONV, ("Relu", ["c"], "r", {}), *HEAD)
    assert run_case(case).verdict == "ok"
    original = network.run_nodes
    monkeypatch.setattr(network, "run_nodes", lambda *a, **k: original(*a, **k) + 1)
    outcome = run_case(case)
    assert outcome.verdict == "silent" and "run_nodes differs" in outcome.detail
    monkeypatch.undo()
    # a refusal that names a runnable op (here: none of the graph's) is for the wrong reason
    standalone = _network_case(CONV, ("MaxPool", ["c"], "p", {"kernel_shape": [1, 1]}),
                               ("Relu", ["p"], "r", {}), *HEAD)
    outcome = run_case(standalone)
    assert outcome.verdict == "error" and "(op relu)" in outcome.detail
    assert standalone.refusal("error: layer 'p' (op maxpool): no") is not None
    assert standalone.refusal("error: layer 'r' (op relu): no") is None
