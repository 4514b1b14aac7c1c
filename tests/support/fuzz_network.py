"""Fuzz cases of the ``network`` category: random ONNX graphs compiled with ``--network``.

Each case is a random valid graph of :func:`support.fuzz_onnx.random_graph` (Conv with
pads, strides, dilation and groups, Gemm / MatMul, Relu / Clip, max and average pools with
both padding rules, global average pools, residual Adds, Concat, LeakyRelu, BatchNorm,
Mul / Sub / Div by constants, Pad, Flatten / Reshape, Softmax ...) and a strategy, run as
``bitline compile m.onnx -s STRATEGY --network``. The oracle is decided from the graph's
ONNX op list and the contract's list of what whole-network mode runs (docs/network.md
section 2.3: conv, gemm, max / average / global average pool, add, flatten; a ReLU or
ReLU6 fused into its producer), not from bitline's checks:

* a graph with an op whole-network mode never runs (:data:`NEVER`: Concat, LeakyRelu) must
  be refused, and the error must name an op of the graph outside :data:`RUNS` (the IR's
  spelling of it, :data:`SPELLINGS`);
* a graph of :data:`RUNS` ops only (ReLU / Clip counted as runnable when they directly
  follow a Conv, Gemm, MatMul or Add that feeds nothing else) must compile;
* any other graph (a BatchNorm, a scale by a constant, a Pad or a Softmax the front-end
  may or may not fold, a standalone ReLU, a graph without a compute op) may be refused,
  but a refusal must name one of its ops outside :data:`RUNS` or, for a graph without a
  Conv / Gemm / MatMul, may name none.

An exit 0 must give a bundle with node records whose :func:`bitline.sw.integer.network.
run_nodes` output (the NETWORK records executed on a flat buffer, as the hardware does)
equals :func:`bitline.sim.golden.run_golden` bit for bit, and whose ``bitline run -b
golden`` output tracks onnx's reference evaluator within
:data:`support.fuzz_onnx.QUANT_TOLERANCE`, both on the 16 seeded inputs compile
calibrates with.
"""

from __future__ import annotations

import re

import numpy as np
from hypothesis import strategies as st

from support.fuzz import DIR, Case, compare_float, onnx_reference
from support.fuzz_onnx import QUANT_TOLERANCE, STRATEGIES, random_graph

__all__ = ["NEVER", "RUNS", "SPELLINGS", "network_cases", "network_expectation"]

#: ONNX ops whole-network mode runs as nodes (or aliases, for Flatten / Reshape).
RUNS = frozenset({"Conv", "Gemm", "MatMul", "MaxPool", "AveragePool", "GlobalAveragePool",
                  "Add", "Flatten", "Reshape"})
#: ONNX ops it never runs (docs/network.md 2.3: concat, leaky_relu).
NEVER = frozenset({"Concat", "LeakyRelu"})
#: Producers a ReLU / ReLU6 fuses into (their clamp).
FUSES_RELU = frozenset({"Conv", "Gemm", "MatMul", "Add"})
COMPUTE = frozenset({"Conv", "Gemm", "MatMul"})
#: How an error may spell an ONNX op (the ONNX name or the IR op it imports as; a
#: BatchNormalization and a scale by a constant import as batchnorm / add_constant).
SPELLINGS = {
    "Concat": ("concat",), "LeakyRelu": ("leakyrelu",), "Relu": ("relu",),
    "Clip": ("relu6", "clip"), "BatchNormalization": ("batchnorm", "batchnormalization"),
    "Mul": ("mul", "batchnorm"), "Div": ("div", "batchnorm"),
    "Sub": ("sub", "addconstant", "batchnorm"), "Pad": ("pad",),
    "Softmax": ("softmax",), "LogSoftmax": ("logsoftmax",), "Identity": ("identity",),
    "Dropout": ("dropout",),
}


def _op_named(error: str) -> str | None:
    """The op a refusal names: ``(op NAME)`` or ``op NAME``, normalized; else ``None``."""
    match = re.search(r"\bop[ :]+['\"]?([A-Za-z_0-9]+)", error)
    return match.group(1).replace("_", "").lower() if match else None


def network_expectation(proto) -> tuple[str, frozenset]:
    """Return ``(expect, refusable)`` for a graph (module docstring): ``expect`` is
    ``"refuse"``, ``"accept"`` or ``"either"``; ``refusable`` the ONNX ops of the graph a
    refusal may name."""
    nodes = list(proto.graph.node)
    producer = {out: node for node in nodes for out in node.output}
    readers: dict[str, int] = {}
    for node in nodes:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    outside = set()
    for node in nodes:
        if node.op_type in RUNS:
            continue
        if node.op_type in ("Relu", "Clip"):
            source = producer.get(node.input[0])
            if source is not None and source.op_type in FUSES_RELU and \
                    readers.get(node.input[0], 0) == 1:
                continue            # the producer's clamp
        outside.add(node.op_type)
    ops = {node.op_type for node in nodes}
    if outside & NEVER:
        return "refuse", frozenset(outside)
    if not outside and ops & COMPUTE:
        return "accept", frozenset()
    return "either", frozenset(outside)


def _refusal_check(refusable: frozenset, has_compute: bool):
    """Judge a clean refusal: it must name an op of ``refusable`` (module docstring)."""
    def judge(error: str) -> str | None:
        named = _op_named(error)
        flat = error.replace("_", "").lower()
        spellings = {spelling for op in refusable for spelling in SPELLINGS.get(op, ())}
        if named is not None and named in spellings:
            return None
        if named is None and any(re.search(rf"\b{s}\b", flat) for s in spellings):
            return None
        if not has_compute:
            return None
        return (f"refused naming op {named!r}, the graph's ops outside what --network runs "
                f"are {sorted(refusable)}")
    return judge


def _network_check(model_bytes: bytes, input_shape):
    """Check of an exit-0 ``compile --network`` (module docstring)."""
    def check(folder, run):
        from bitline.sim.golden import run_golden
        from bitline.sw.bundle import read_bundle
        from bitline.sw.integer.arith import quantize_input
        from bitline.sw.integer.network import run_nodes

        bundle = read_bundle(folder / "out")
        program, qmodel = bundle.program, bundle.qmodel
        if not program.nodes:
            return "compile --network exited 0 without node records"
        if not program.nodes[-1].to_host or any(node.to_host for node in program.nodes[:-1]):
            return "to_host is not set on the last node alone"
        x = np.random.default_rng(0).random((16, *input_shape), dtype=np.float32)
        golden = run_golden(qmodel, x)
        codes = quantize_input(x, qmodel.input)
        got = run_nodes(program, qmodel, codes)
        want = np.asarray(golden.output_int)
        if got.size != want.size or not np.array_equal(got.reshape(want.shape), want):
            bad = int(np.sum(got.reshape(want.shape) != want)) if got.size == want.size \
                else "all"
            return f"run_nodes differs from the golden model in {bad} values"
        try:
            reference = onnx_reference(model_bytes, x)
        except Exception as error:      # noqa: BLE001 - onnx itself cannot run it
            return f"bitline accepted a model onnx's reference cannot run ({error!r:.120})"
        np.save(folder / "x.npy", x)
        result = run(["run", folder / "out", "-i", folder / "x.npy", "-o", folder / "y.npz",
                      "-b", "golden", "-q"])
        if result.code != 0:
            return "bitline run -b golden refused the compiled bundle: " + result.err[-200:]
        if not np.isfinite(reference).all():
            return None
        with np.load(folder / "y.npz") as data:
            problem = compare_float(data["output"], reference, QUANT_TOLERANCE)
        return problem and "golden vs the ONNX reference: " + problem
    return check


@st.composite
def network_cases(draw):
    """A random valid graph compiled with ``--network`` (module docstring)."""
    g, proto = draw(random_graph())
    strategy = draw(st.sampled_from(STRATEGIES))
    expect, refusable = network_expectation(proto)
    ops = [node.op_type for node in proto.graph.node]
    data = proto.SerializeToString()
    return Case("network", expect, f"{len(ops)} nodes {'-'.join(ops)}, input "
                f"{g.input_shape}, {strategy}",
                ["compile", f"{DIR}/m.onnx", "-s", strategy, "--network", "-o",
                 f"{DIR}/out", "-q"], expect, files={"m.onnx": data},
                check=_network_check(data, g.input_shape),
                refusal=_refusal_check(refusable, bool(set(ops) & COMPUTE)))
