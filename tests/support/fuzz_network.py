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
golden`` output tracks onnx's reference evaluator (onnxruntime where that raises, see
:func:`_float_reference`) within :data:`support.fuzz_onnx.QUANT_TOLERANCE`, both on the 16
seeded inputs compile calibrates with (the float comparison is skipped for a graph whose
Adds nearly cancel, :data:`CANCELLATION`).

A third of the cases compile with ``--network --pipeline`` (docs/network.md section 6): an
exit 0 must then also give one stage engine per node, and
:func:`bitline.sw.integer.network.run_pipelined` (the 16 inputs as successive images
through one buffer, every map's copies) must equal the golden model bit for bit. Half of
those also pass ``--budget xbars:4096`` (:data:`REPLICA_BUDGET`): the compiler gives the
bottleneck layer replicas where the pipeline schedule gains (section 7), and the same
checks hold -- one engine per node, replicas included, and ``run_pipelined`` (which sends
image ``n`` to the replica of phase ``n mod R``) equal to golden.
"""

from __future__ import annotations

import re
import zlib

import numpy as np
from hypothesis import strategies as st

from support.fuzz import DIR, Case, compare_float, onnx_reference
from support.fuzz_onnx import QUANT_TOLERANCE, STRATEGIES, _Graph, _proto, random_graph

__all__ = ["NEVER", "RUNS", "SPELLINGS", "network_cases", "network_expectation",
           "network_graph"]

#: ONNX ops whole-network mode runs as nodes (or aliases, for Flatten / Reshape).
RUNS = frozenset({"Conv", "Gemm", "MatMul", "MaxPool", "AveragePool", "GlobalAveragePool",
                  "Add", "Flatten", "Reshape"})
#: ONNX ops it never runs (docs/network.md 2.3: concat, leaky_relu).
NEVER = frozenset({"Concat", "LeakyRelu"})
#: Producers a ReLU / ReLU6 fuses into (their clamp).
FUSES_RELU = frozenset({"Conv", "Gemm", "MatMul", "Add"})
COMPUTE = frozenset({"Conv", "Gemm", "MatMul"})
#: The crossbar budget of the replicated cases (``--pipeline --budget xbars:N``): far more
#: units than a fuzz graph's layers take, so it never refuses one.
REPLICA_BUDGET = 4096
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


def _float_reference(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    """onnx's reference evaluator, or onnxruntime where it raises or gives another shape:
    onnx 1.x's reference MaxPool / AveragePool fail on windows that start in the padding
    (895 of 8,262 valid small pools, e.g. a 1x2 map, kernel 1x2, left pad 1: "zero-size
    array to reduction"), and its MaxPool sizes some asymmetrically padded outputs wrong
    (a 3x3 map, kernel 2x3, pads (1, 1, 0, 1), stride 1: 4x2 where the formula and
    onnxruntime give 3x3)."""
    import onnxruntime

    try:
        reference = onnx_reference(model_bytes, x)
    except Exception:           # noqa: BLE001 - a known gap of the reference, not bitline's
        reference = None
    try:
        session = onnxruntime.InferenceSession(model_bytes,
                                               providers=["CPUExecutionProvider"])
        runtime = np.asarray(session.run(None, {session.get_inputs()[0].name: x})[0])
    except Exception:           # noqa: BLE001 - then the reference's answer stands
        if reference is None:
            raise
        return reference
    return reference if reference is not None and np.shape(reference) == runtime.shape \
        else runtime


#: An Add whose operands reach this many times its output's magnitude (they nearly cancel)
#: multiplies the operands' 8-bit quantization error by as much: the output is then no
#: longer comparable with the float reference within QUANT_TOLERANCE (seen: two Gemms of
#: magnitude 1.82 summing to 0.019, 0.67 of the range off after 8-bit codes). The bit-exact
#: comparison with the golden model still holds for such graphs.
CANCELLATION = 4.0


def _cancellation(model_bytes: bytes, x: np.ndarray) -> float:
    """The largest ``max(|a|, |b|) / |a + b|`` (magnitudes over the batch) of the graph's
    Adds, from onnx's reference evaluator's intermediate tensors (1 without Adds, or when
    the reference cannot run the graph)."""
    import onnx
    from onnx.reference import ReferenceEvaluator

    model = onnx.load_from_string(model_bytes)
    adds = [node for node in model.graph.node if node.op_type == "Add"]
    if not adds:
        return 1.0
    try:
        with np.errstate(all="ignore"):
            values = ReferenceEvaluator(model).run(None, {"x": x}, intermediate=True)
    except Exception:           # noqa: BLE001 - the reference's pool gap (_float_reference)
        return 1.0
    gain = 1.0
    for node in adds:
        operands = max(float(np.abs(values[name]).max()) for name in node.input)
        gain = max(gain, operands / max(float(np.abs(values[node.output[0]]).max()), 1e-12))
    return gain


def _network_check(model_bytes: bytes, input_shape, pipeline: bool = False):
    """Check of an exit-0 ``compile --network`` (``--pipeline`` too with ``pipeline``;
    module docstring)."""
    def check(folder, run):
        from bitline.sim.golden import run_golden
        from bitline.sw.bundle import read_bundle
        from bitline.sw.integer.arith import quantize_input
        from bitline.sw.integer.network import run_nodes, run_pipelined

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
        if pipeline:
            if program.config.pipeline_stages != len(program.nodes):
                return (f"compile --pipeline gave pipeline_stages = "
                        f"{program.config.pipeline_stages} for {len(program.nodes)} nodes")
            piped = run_pipelined(program, qmodel, codes)
            if piped.size != want.size or not np.array_equal(piped.reshape(want.shape), want):
                return "run_pipelined differs from the golden model"
        try:
            reference = _float_reference(model_bytes, x)
        except Exception as error:      # noqa: BLE001 - neither reference can run it
            return f"bitline accepted a model no float reference runs ({error!r:.120})"
        np.save(folder / "x.npy", x)
        result = run(["run", folder / "out", "-i", folder / "x.npy", "-o", folder / "y.npz",
                      "-b", "golden", "-q"])
        if result.code != 0:
            return "bitline run -b golden refused the compiled bundle: " + result.err[-200:]
        if not np.isfinite(reference).all() or _cancellation(model_bytes, x) > CANCELLATION:
            return None
        with np.load(folder / "y.npz") as data:
            problem = compare_float(data["output"], reference, QUANT_TOLERANCE)
        return problem and "golden vs the ONNX reference: " + problem
    return check


def _span(size: int, before: int, after: int, kernel: int, stride: int,
          dilation: int = 1) -> int:
    """Output size of a window over ``size`` (ONNX floor rule); 0 if none fits."""
    room = size + before + after - (kernel - 1) * dilation - 1
    return room // stride + 1 if room >= 0 else 0


def _window_step(draw, g: _Graph, op: str) -> None:
    """A Conv or pool with a rectangular kernel, asymmetric pads, strides (and dilation for
    Conv) that still fit the map; nothing if the drawn window does not."""
    c, h, w = g.shape
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2))) if op == "Conv" else (1, 1)
    # ONNX pools want pads < kernel; convs may pad up to the kernel's span
    limit = [(k - 1) * d + 1 if op == "Conv" else k for k, d in zip(kernel, dilation)]
    pads = [draw(st.integers(0, limit[i % 2] - 1)) for i in range(4)]   # top left bottom right
    out_h = _span(h, pads[0], pads[2], kernel[0], stride[0], dilation[0])
    out_w = _span(w, pads[1], pads[3], kernel[1], stride[1], dilation[1])
    if not (out_h and out_w):
        return
    onnx_pads = [pads[0], pads[1], pads[2], pads[3]]
    if op == "Conv":
        out_c = draw(st.integers(1, 5))
        weight = g.weight((out_c, c, *kernel), c * kernel[0] * kernel[1])
        g.node("Conv", [g.name, weight], (out_c, out_h, out_w), kernel_shape=list(kernel),
               strides=list(stride), pads=onnx_pads, dilations=list(dilation))
        if draw(st.booleans()):
            g.node("Relu", [g.name], g.shape)
        return
    extra = {"count_include_pad": int(draw(st.booleans()))} if op == "AveragePool" else {}
    g.node(op, [g.name], (c, out_h, out_w), kernel_shape=list(kernel), strides=list(stride),
           pads=onnx_pads, **extra)


def _same_conv(g: _Graph, src: str, relu: bool) -> str:
    c, h, w = g.shape
    out = g.conv(src, (c, h, w), c, 3, 1, 1)
    if relu:
        out = g.node("Relu", [out], g.shape)
    return out


@st.composite
def network_graph(draw):
    """Return ``(_Graph, onnx.ModelProto)``: a chain of the ops whole-network mode runs,
    shaped to stress its records and slots: windows with rectangular kernels, asymmetric
    pads, strides and dilation; residual branches that stay live over 1-3 convs (or from
    the network input); ``Add(t, t)``; a gemm head, a global-average-pool head or an image
    output (the last node's map goes to the host)."""
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    g = _Graph(rng, (draw(st.integers(1, 4)), draw(st.integers(1, 9)),
                     draw(st.integers(1, 9))))
    for _ in range(draw(st.integers(1, 5))):
        step = draw(st.sampled_from(["Conv", "Conv", "MaxPool", "AveragePool", "residual",
                                     "self_add"]))
        if step in ("Conv", "MaxPool", "AveragePool"):
            _window_step(draw, g, step)
        elif step == "residual":
            saved, relu = g.name, draw(st.booleans())
            for _ in range(draw(st.integers(1, 3))):
                _same_conv(g, g.name, draw(st.booleans()))
            g.node("Add", [g.name, saved] if draw(st.booleans()) else [saved, g.name],
                   g.shape)
            if relu:
                g.node("Relu", [g.name], g.shape)
        else:
            if g.name == "x":
                _same_conv(g, g.name, False)
            g.node("Add", [g.name, g.name], g.shape)
    ending = draw(st.sampled_from(["gemm", "gap", "image"]))
    if ending == "image" and g.name != "x" and any(node.op_type == "Conv" for node in g.nodes):
        pass
    else:
        if ending == "gap":
            g.node("GlobalAveragePool", [g.name], (g.shape[0], 1, 1))
        features = int(np.prod(g.shape))
        g.node("Flatten", [g.name], (features,), axis=1)
        for _ in range(draw(st.integers(1, 2))):
            classes = draw(st.integers(1, 8))
            g.node("Gemm", [g.name, g.weight((classes, features), features)], (classes,),
                   transB=1)
            features = classes
    g.nodes[-1].output[0] = "y"
    return g, _proto(g)


@st.composite
def network_cases(draw):
    """A random valid graph compiled with ``--network`` (module docstring): half from
    :func:`support.fuzz_onnx.random_graph` (every op the front-end knows), half from
    :func:`network_graph` (the ops network mode runs, in shapes that stress it)."""
    g, proto = draw(st.one_of(random_graph(), network_graph()))
    strategy = draw(st.sampled_from(STRATEGIES))
    expect, refusable = network_expectation(proto)
    ops = [node.op_type for node in proto.graph.node]
    data = proto.SerializeToString()
    # a third with --pipeline, picked by the model's CRC: no extra draw, so the cases (and
    # the campaign's counts) are those the category drew before the pipeline existed
    pipeline = zlib.crc32(data) % 3 == 0
    # half of those with a crossbar budget the graph's layers never exceed: the compiler
    # replicates the bottleneck layer (docs/network.md section 7.3) where that pays
    replicas = pipeline and zlib.crc32(data) // 3 % 2 == 0
    flags = ["--pipeline"] if pipeline else []
    flags += ["--budget", f"xbars:{REPLICA_BUDGET}"] if replicas else []
    return Case("network", expect, f"{len(ops)} nodes {'-'.join(ops)}, input "
                f"{g.input_shape}, {strategy}"
                f"{', pipelined' if pipeline else ''}{' with replicas' if replicas else ''}",
                ["compile", f"{DIR}/m.onnx", "-s", strategy, "--network", *flags,
                 "-o", f"{DIR}/out", "-q"], expect,
                files={"m.onnx": data},
                check=_network_check(data, g.input_shape, pipeline),
                refusal=_refusal_check(refusable, bool(set(ops) & COMPUTE)))
