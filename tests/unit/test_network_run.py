"""run_nodes (the node interpreter) equals the golden model, node by node.

The golden model walks the IR graph with ``tensor_ops`` and ``arith.compute_output`` on
whole tensors; ``run_nodes`` reads the compiled node records on a flat buffer (window
addresses, pad values, producer-order writes at the allocated slots). Equal outputs after
every node check the records and the allocation; the digits networks and random small
graphs (hypothesis, derandomized) cover conv with pads / stride / dilation, max pool,
average pool with both padding rules, global average pool, residual adds, flatten, gemm.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bitline.hw.spec.network import NodeKind, WindowParams
from bitline.sim.golden import run_golden
from bitline.sw import api
from bitline.sw.frontend.im2col import conv_output_hw
from bitline.sw.frontend.ir import Layer, Model
from bitline.sw.integer import arith
from bitline.sw.integer.network import producer_order, run_nodes, window_addresses

MODELS = Path(__file__).resolve().parents[2] / "sw" / "models"


def assert_node_by_node(compiled, x):
    """run_nodes on ``x`` equals the golden model after every node and at the output."""
    qmodel, program = compiled.qmodel, compiled.program
    golden = run_golden(qmodel, x, return_all=True)
    trace = []
    out = run_nodes(program, qmodel, arith.quantize_input(x, qmodel.input), trace=trace)
    assert len(trace) == len(program.nodes)
    for node, tensor in zip(program.nodes, trace):
        expected = golden.layers[node.name]
        np.testing.assert_array_equal(tensor.reshape(expected.shape), expected,
                                      err_msg=f"node {node.name}")
    np.testing.assert_array_equal(out, golden.output_int)
    return out


@pytest.mark.parametrize(("model", "strategy", "spec"), [
    ("digits_cnn.onnx", "bwq", "bwq3"),          # block-wise activation widths
    ("digits_resnet.onnx", "bwq", None),
    ("digits_resnet.onnx", "isaac", "int8"),
])
def test_digits_networks_equal_golden(model, strategy, spec):
    compiled = api.compile(str(MODELS / model), strategy, spec=spec, network=True)
    x, _ = api.dataset("digits", "test")
    out = assert_node_by_node(compiled, x[:32])
    assert out.shape == (32, 10)


def test_a_wrong_record_is_seen():
    """The comparison fails when one field of one record is wrong (the test can fail)."""
    compiled = api.compile(str(MODELS / "digits_resnet.onnx"), "bwq", network=True)
    x, _ = api.dataset("digits", "test")
    program = compiled.program
    add = next(i for i, node in enumerate(program.nodes) if node.kind == NodeKind.ADD)
    stem = program.nodes[0]
    # the add reads the stem's slot as its second operand; point it at the input instead
    assert program.nodes[add].src1_base == stem.dst_base
    for broken in (replace(program.nodes[add], src1_base=0),
                   replace(program.nodes[1], window=replace(program.nodes[1].window,
                                                            pad_value=77))):
        nodes = list(program.nodes)
        index = nodes.index(next(n for n in nodes if n.name == broken.name))
        nodes[index] = broken
        bad = replace(compiled, program=replace(program, nodes=nodes))
        with pytest.raises(AssertionError):
            assert_node_by_node(bad, x[:8])


def test_window_addresses_against_im2col():
    """The interpreter's addresses read a stored map the way im2col builds its columns."""
    from bitline.sw.frontend.im2col import im2col

    rng = np.random.default_rng(5)
    for _ in range(20):
        c, h, w = rng.integers(1, 4), rng.integers(2, 7), rng.integers(2, 7)
        k = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        window = WindowParams(int(c), int(h), int(w), kernel=k,
                              stride=(int(rng.integers(1, 3)), int(rng.integers(1, 3))),
                              pads=tuple(int(v) for v in rng.integers(0, 3, 4)),
                              dilation=(int(rng.integers(1, 3)), 1), pad_value=9,
                              base=int(rng.integers(0, 20)))
        try:
            window.out_hw()
        except ValueError:
            continue
        image = rng.integers(0, 256, (1, c, h, w))
        buffer = np.zeros(window.base + image.size + 5, dtype=np.int64)
        buffer[window.base:window.base + image.size] = image.reshape(-1)
        addr, pad = window_addresses(window)
        values = np.where(pad, 9, buffer[np.maximum(addr, 0)])
        expected = im2col(image, window.kernel, window.stride, window.pads, window.dilation,
                          pad_value=9).reshape(values.shape)
        np.testing.assert_array_equal(values, expected)


def test_producer_order():
    tensor = np.arange(2 * 3 * 2 * 2).reshape(2, 3, 2, 2)
    stream = producer_order(tensor)
    # output k = p*C + c of sample n is tensor[n, c, p // W, p % W]
    n, k = 1, 7
    p, c = divmod(k, 3)
    assert stream[n, k] == tensor[n, c, p // 2, p % 2]
    assert np.array_equal(producer_order(tensor[:, :, :1, :1].reshape(2, 3)),
                          tensor[:, :, 0, 0])


# ---------------------------------------------------------------------- random graphs
def _span(size, before, after, kernel, stride, dilation=1):
    return size + before + after >= dilation * (kernel - 1) + 1


@st.composite
def graphs(draw):
    """A random small graph: image steps, then an ending (gemm head, gap head, or image)."""
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    shape = (draw(st.integers(1, 3)), draw(st.integers(3, 7)), draw(st.integers(3, 7)))
    layers, tensor, count = [], "x", 0

    def name(prefix):
        nonlocal count
        count += 1
        return f"{prefix}{count}"

    def weight(*dims):
        fan_in = int(np.prod(dims[1:]))
        return rng.normal(0, 1 / np.sqrt(fan_in), dims).astype(np.float32)

    def conv(src, in_shape, out_c, kernel, stride, pads, dilation, activation):
        c, h, w = in_shape
        out_h, out_w = conv_output_hw(h, w, kernel, stride, pads, dilation)
        out = name("t")
        layers.append(Layer(name("conv"), "conv", [src], out, in_shape, (out_c, out_h, out_w),
                            attrs={"stride": stride, "pads": pads, "dilation": dilation,
                                   "groups": 1},
                            weight=weight(out_c, c, *kernel),
                            bias=rng.normal(0, 0.1, out_c).astype(np.float32),
                            activation=activation))
        return out, (out_c, out_h, out_w)

    for _ in range(draw(st.integers(1, 4))):
        step = draw(st.sampled_from(["conv", "maxpool", "avgpool", "residual"]))
        c, h, w = shape
        k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
        stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
        if step == "conv":
            pads = tuple(draw(st.integers(0, 2)) for _ in range(4))
            dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
            if not (_span(h, pads[0], pads[2], k[0], stride[0], dilation[0])
                    and _span(w, pads[1], pads[3], k[1], stride[1], dilation[1])):
                continue
            tensor, shape = conv(tensor, shape, draw(st.integers(1, 4)), k, stride, pads,
                                 dilation, draw(st.sampled_from([None, "relu"])))
        elif step in ("maxpool", "avgpool"):
            pads = tuple(draw(st.integers(0, kk - 1)) for kk in (k[0], k[1], k[0], k[1]))
            if not (_span(h, pads[0], pads[2], k[0], stride[0])
                    and _span(w, pads[1], pads[3], k[1], stride[1])):
                continue
            out_h, out_w = conv_output_hw(h, w, k, stride, pads)
            attrs = {"kernel": k, "stride": stride, "pads": pads}
            if step == "avgpool":
                attrs["count_include_pad"] = draw(st.booleans())
            out = name("t")
            layers.append(Layer(name(step), step, [tensor], out, shape, (c, out_h, out_w),
                                attrs=attrs))
            tensor, shape = out, (c, out_h, out_w)
        else:   # conv branch (same shape) + add with its input; the input stays live
            branch, _ = conv(tensor, shape, c, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1),
                             draw(st.sampled_from([None, "relu"])))
            out = name("t")
            layers.append(Layer(name("add"), "add", [branch, tensor], out, shape, shape,
                                activation=draw(st.sampled_from([None, "relu"]))))
            tensor = out
    ending = draw(st.sampled_from(["gemm", "gap", "image"]))
    if ending == "image" and any(layer.is_compute for layer in layers):
        final = tensor
    else:
        if ending == "gap":
            out = name("t")
            layers.append(Layer(name("gap"), "gap", [tensor], out, shape, (shape[0], 1, 1)))
            tensor, shape = out, (shape[0], 1, 1)
        flat = name("t")
        size = int(np.prod(shape))
        layers.append(Layer(name("flatten"), "flatten", [tensor], flat, shape, (size,)))
        tensor, width = flat, size
        for _ in range(draw(st.integers(1, 2))):
            out_f = draw(st.integers(2, 6))
            out = name("t")
            layers.append(Layer(name("gemm"), "gemm", [tensor], out, (width,), (out_f,),
                                weight=weight(out_f, width),
                                bias=rng.normal(0, 0.1, out_f).astype(np.float32),
                                activation=draw(st.sampled_from([None, "relu"]))))
            tensor, width = out, out_f
        final = tensor
    model = Model(f"random{seed}", "x", tuple(int(v) for v in
                                             (layers[0].input_shape if layers else shape)),
                  layers, final)
    return model, seed


@settings(max_examples=15, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(graphs())
def test_random_graphs_equal_golden(case):
    model, seed = case
    rng = np.random.default_rng(seed)
    # signed inputs: a nonzero input zero point, so conv and average-pool padding matter
    calib = rng.normal(0, 1, (16, *model.input_shape))
    compiled = api.compile(model, "isaac", calib=calib, network=True)
    assert_node_by_node(compiled, rng.normal(0, 1, (6, *model.input_shape)))


@pytest.mark.parametrize("operand", ["x", "t"])
def test_add_of_a_tensor_with_itself(operand):
    """``add(t, t)`` (ONNX ``Add(a, a)``, e.g. ``2 * a``): both ADD operands read one slot;
    the golden walk frees the tensor once (it raised ``KeyError`` here: ``bitline run``
    printed ``error: a``), run_nodes equals it, and it is twice the operand."""
    rng = np.random.default_rng(5)
    shape = (2, 5, 5)
    conv = Layer("conv", "conv", ["x"], "t", shape, shape,
                 attrs={"stride": (1, 1), "pads": (1, 1, 1, 1), "dilation": (1, 1),
                        "groups": 1},
                 weight=rng.normal(0, 0.3, (2, 2, 3, 3)).astype(np.float32),
                 bias=np.zeros(2, np.float32))
    add = Layer("add", "add", [operand, operand], "s", shape, shape)
    head = Layer("conv2", "conv", ["s"], "y", shape, (3, 5, 5),
                 attrs={"stride": (1, 1), "pads": (1, 1, 1, 1), "dilation": (1, 1),
                        "groups": 1},
                 weight=rng.normal(0, 0.3, (3, 2, 3, 3)).astype(np.float32),
                 bias=np.zeros(3, np.float32))
    layers = [add, head] if operand == "x" else [conv, add, head]
    model = Model(f"add_{operand}", "x", shape, layers, "y")
    calib = rng.normal(0, 1, (16, *shape))
    compiled = api.compile(model, "isaac", calib=calib, network=True)
    add_node = next(node for node in compiled.program.nodes if node.kind == NodeKind.ADD)
    assert add_node.src1_base == add_node.window.base
    x = rng.normal(0, 1, (4, *shape))
    golden = run_golden(compiled.qmodel, x, return_all=True)
    source = arith.quantize_input(x, compiled.qmodel.input) if operand == "x" else \
        golden.layers["conv"]
    q_add = compiled.qmodel.layers["add"]
    real = 2 * q_add.inputs[0].scale * (source - q_add.inputs[0].zero_point)
    dequant = q_add.output.scale * (golden.layers["add"] - q_add.output.zero_point)
    assert np.abs(dequant - np.clip(real, dequant.min(), dequant.max())).max() <= \
        q_add.output.scale
    assert_node_by_node(compiled, x)
