"""Whole-network mode on the host: the node list of a quantized model and its interpreter.

:func:`network_nodes` turns a :class:`~bitline.sw.integer.qmodel.QuantizedModel`'s layer
graph into the nodes of the NETWORK image section (docs/network.md section 2): one node
per layer in execution order, ``flatten`` aliasing its input's slot (a C-order map is the
flat vector), slots allocated by liveness (first fit; the network input at 0; a residual
branch stays live until its add), pad values from the zero points, the add's
requantization from its layer, ``to_host`` on the last node. ``bitline compile --network``
puts them in the program (:attr:`bitline.hw.spec.program.Program.nodes`) and sizes the
config's whole-network fields from :attr:`NetworkPlan.sizes`.

:func:`run_nodes` executes those node records on a flat numpy buffer as the hardware does
(the input written at 0, the window reads with their pad values, producer-order writes at
``dst_base + c*P + p``, the ``to_host`` node's outputs returned), computing compute layers
with the golden arithmetic of :mod:`bitline.sw.integer.arith` and the other nodes with the
formulas of :mod:`bitline.sw.integer.tensor_ops` restated on window elements. It is a
second, independent reading of the node records: tests compare it, node by node, with the
golden model's graph walk.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from bitline.hw.spec.network import NodeKind, NodeProgram, WindowParams
from bitline.sw.integer import arith
from bitline.sw.integer.graph import spec_ou_rows
from bitline.sw.integer.qmodel import QuantizedModel

__all__ = ["NETWORK_OPS", "NetworkPlan", "network_nodes", "run_nodes", "window_addresses",
           "producer_order"]

#: The ops ``compile --network`` runs (fused ReLUs are clamps of their producer).
NETWORK_OPS = ("conv", "gemm", "maxpool", "avgpool", "gap", "add", "flatten")


@dataclass(frozen=True)
class NetworkPlan:
    """What :func:`network_nodes` returns.

    Attributes
    ----------
    nodes:
        The nodes in execution order (names are the IR layers').
    depth:
        Codes the buffer needs: the largest end address of any slot (input included).
    max_channels, max_height, max_width:
        The largest feature map any node reads or writes (a flat vector of ``F`` codes is
        an ``F x 1 x 1`` map).
    """

    nodes: list[NodeProgram]
    depth: int
    max_channels: int
    max_height: int
    max_width: int

    @property
    def sizes(self) -> dict[str, int]:
        """The config's whole-network fields this network needs, by field name."""
        return {"act_buffer_depth": self.depth, "max_nodes": len(self.nodes),
                "max_map_channels": self.max_channels, "max_map_height": self.max_height,
                "max_map_width": self.max_width}


def _map_shape(shape, what: str) -> tuple[int, int, int]:
    """``(C, H, W)`` of an image tensor, ``(F, 1, 1)`` of a vector."""
    shape = tuple(int(size) for size in shape)
    if len(shape) == 3:
        return shape
    if len(shape) == 1:
        return (shape[0], 1, 1)
    raise ValueError(f"{what}: a tensor of shape {shape} is neither an image (C, H, W) nor a "
                     "vector; --network stores only those")


def _first_fit(live: dict[str, tuple[int, int]], size: int) -> int:
    """Lowest base at which ``size`` codes overlap no live slot ``(base, size)``."""
    base = 0
    for start, length in sorted(live.values()):
        if base + size <= start:
            break
        base = max(base, start + length)
    return base


def network_nodes(qmodel: QuantizedModel, layer_names: list[str]) -> NetworkPlan:
    """Return the whole-network nodes of ``qmodel`` (module docstring).

    Parameters
    ----------
    qmodel:
        The quantized model; its layers in execution order.
    layer_names:
        The program's layer table (names in record order): a COMPUTE node's ``layer``.

    Raises
    ------
    ValueError
        Naming the layer and op ``--network`` cannot run (an op outside
        :data:`NETWORK_OPS`, a compute layer without a layer record, a tensor that is no
        image or vector), or a graph whose output is not its last node's.
    """
    model = qmodel.model
    for layer in model.layers:
        if layer.op not in NETWORK_OPS:
            raise ValueError(f"layer {layer.name!r} (op {layer.op}): --network runs "
                             f"{', '.join(NETWORK_OPS)} (a ReLU fused into its producer is a "
                             "clamp); this op needs the per-layer mode (compile without "
                             "--network)")
    root = {model.input_name: model.input_name}         # tensor -> the tensor owning its slot
    shape = {model.input_name: _map_shape(model.input_shape, "network input")}
    for layer in model.layers:
        if layer.op == "flatten":
            root[layer.output] = root[layer.inputs[0]]
        else:
            root[layer.output] = layer.output
            shape[layer.output] = _map_shape(layer.output_shape, f"layer {layer.name!r}")
    steps = [layer for layer in model.layers if layer.op != "flatten"]
    if not steps:
        raise ValueError(f"model {model.name}: --network needs at least one layer that is "
                         "not a flatten")
    if root[model.output_name] != steps[-1].output:
        raise ValueError(f"model {model.name}: the output {model.output_name!r} is not the "
                         f"last layer's ({steps[-1].name!r}); --network sends only the last "
                         "node's outputs to the host")
    last_use: dict[str, int] = {}
    for index, layer in enumerate(steps):
        for name in layer.inputs:
            last_use[root[name]] = index

    input_shape = shape[model.input_name]
    live = {model.input_name: (0, int(np.prod(input_shape)))}
    base_of = {model.input_name: 0}
    depth = live[model.input_name][1]
    biggest = list(input_shape)
    nodes = []
    for index, layer in enumerate(steps):
        qlayer = qmodel.layers[layer.name]
        sources = [root[name] for name in layer.inputs]
        node = _node(layer, qlayer, [(base_of[s], shape[s]) for s in sources], layer_names)
        out_shape = (node.dst_channels, *node.window.out_hw())
        if out_shape != shape[layer.output]:
            raise ValueError(f"layer {layer.name!r} ({layer.op}): the node writes a "
                             f"{out_shape} map, the IR's output is {shape[layer.output]}")
        for dims in [shape[s] for s in sources] + [out_shape]:
            biggest = [max(a, b) for a, b in zip(biggest, dims)]
        if index == len(steps) - 1:
            nodes.append(replace(node, to_host=True, dst_base=0))
            break
        size = int(np.prod(out_shape))
        base = _first_fit(live, size)
        nodes.append(replace(node, dst_base=base))
        depth = max(depth, base + size)
        live[layer.output] = (base, size)
        base_of[layer.output] = base
        for name in set(sources) | {layer.output}:
            if last_use.get(name, -1) <= index:
                live.pop(name, None)
    return NetworkPlan(nodes, depth, *biggest)


def _node(layer, qlayer, sources: list[tuple[int, tuple]], layer_names: list[str]
          ) -> NodeProgram:
    """The node of one layer (``dst_base`` and ``to_host`` are set by the allocator)."""
    (base, (channels, height, width)) = sources[0]
    attrs = layer.attrs
    zero_in = qlayer.inputs[0].zero_point
    if layer.op in ("conv", "gemm"):
        if layer.name not in layer_names:
            raise ValueError(f"layer {layer.name!r} ({layer.op}): no layer record in the "
                             "program")
        if layer.op == "conv":
            weight = qlayer.weight.values if qlayer.weight is not None else layer.weight
            window = WindowParams(
                channels, height, width, kernel=tuple(int(k) for k in weight.shape[2:]),
                stride=tuple(attrs.get("stride", (1, 1))),
                pads=tuple(attrs.get("pads", (0, 0, 0, 0))),
                dilation=tuple(attrs.get("dilation", (1, 1))), pad_value=zero_in, base=base)
        else:
            window = WindowParams.flatten(channels, height, width, base=base)
        return NodeProgram(NodeKind.COMPUTE, window.canonical(), dst_base=0,
                           dst_channels=int(layer.output_shape[0]),
                           layer=layer_names.index(layer.name), name=layer.name)
    if layer.op in ("maxpool", "avgpool"):
        include = layer.op == "avgpool" and bool(attrs.get("count_include_pad", False))
        window = WindowParams(channels, height, width, kernel=tuple(attrs["kernel"]),
                              stride=tuple(attrs.get("stride", (1, 1))),
                              pads=tuple(attrs.get("pads", (0, 0, 0, 0))),
                              pad_value=zero_in if include else 0, base=base)
        kind = NodeKind.POOL_MAX if layer.op == "maxpool" else NodeKind.POOL_AVG
        return NodeProgram(kind, window.canonical(), dst_base=0, dst_channels=channels,
                           count_include_pad=include, name=layer.name)
    if layer.op == "gap":
        return NodeProgram(NodeKind.POOL_AVG,
                           WindowParams.flatten(channels, height, width, base=base),
                           dst_base=0, dst_channels=channels, name=layer.name)
    # add: both operands stream through a 1x1 window, pixel-major, channel innermost
    (other, other_shape) = sources[1]
    if other_shape != (channels, height, width):
        raise ValueError(f"layer {layer.name!r} (add): operands of shapes "
                         f"{(channels, height, width)} and {other_shape}")
    mult = np.asarray(qlayer.mult, dtype=np.int64).reshape(-1)
    shift = np.asarray(qlayer.shift, dtype=np.int64).reshape(-1)
    if mult.shape != (2,) or shift.size != 2 or shift[0] != shift[1]:
        raise ValueError(f"layer {layer.name!r} (add): needs two multipliers and one common "
                         f"shift, not mult={mult.tolist()} shift={shift.tolist()}")
    return NodeProgram(
        NodeKind.ADD, WindowParams(channels, height, width, base=base), dst_base=0,
        dst_channels=channels, src1_base=other, zero_a=zero_in,
        zero_b=qlayer.inputs[1].zero_point, zero_point=qlayer.output.zero_point,
        clamp_lo=int(qlayer.clamp_lo), clamp_hi=int(qlayer.clamp_hi),
        mult_a=int(mult[0]), mult_b=int(mult[1]), shift=int(shift[0]), name=layer.name)


# ------------------------------------------------------------------------- interpreter
def window_addresses(window: WindowParams) -> tuple[np.ndarray, np.ndarray]:
    """Return the buffer address of every window element and whether it is padding.

    int64 ``(P, C*KH*KW)`` addresses (``-1`` at padding) and bool padding flags, rows the
    output pixels (row-major), columns ``(c*KH + ky)*KW + kx`` - the reader's loop nest
    ``oy, ox, c, ky, kx``, with ``iy = oy*sh + ky*dh - top``, ``ix = ox*sw + kx*dw - left``
    and the map ``(c, y, x)`` at ``base + (c*H + y)*W + x``.
    """
    out_h, out_w = window.out_hw()
    (kh, kw), (sh, sw), (dh, dw) = window.kernel, window.stride, window.dilation
    top, left = window.pads[0], window.pads[1]
    oy, ox, c, ky, kx = np.meshgrid(np.arange(out_h), np.arange(out_w),
                                    np.arange(window.channels), np.arange(kh), np.arange(kw),
                                    indexing="ij")
    iy = oy * sh + ky * dh - top
    ix = ox * sw + kx * dw - left
    pad = (iy < 0) | (iy >= window.height) | (ix < 0) | (ix >= window.width)
    addr = window.base + (c * window.height + iy) * window.width + ix
    addr = np.where(pad, -1, addr)
    count = out_h * out_w
    return addr.reshape(count, -1).astype(np.int64), pad.reshape(count, -1)


def _read(buffer: np.ndarray, window: WindowParams) -> tuple[np.ndarray, np.ndarray]:
    """The window's elements ``(N, P, C*KH*KW)`` (pad value at padding) and the pad flags."""
    addr, pad = window_addresses(window)
    values = buffer[:, np.maximum(addr, 0)]
    return np.where(pad, np.int64(window.pad_value), values), pad


def producer_order(tensor: np.ndarray) -> np.ndarray:
    """Return a node's output ``(N, C, OH, OW)`` (or ``(N, F)``) as the stream the hardware
    emits: ``(N, P*C)``, output ``k = p*C + c`` (pixel-major, channel innermost)."""
    tensor = np.asarray(tensor)
    if tensor.ndim == 2:
        return tensor.copy()
    n, channels = tensor.shape[:2]
    return tensor.reshape(n, channels, -1).transpose(0, 2, 1).reshape(n, -1)


def run_nodes(program, qmodel: QuantizedModel, codes: np.ndarray, *,
              trace: list | None = None) -> np.ndarray:
    """Run a whole-network program's nodes on input codes, as the hardware does.

    Parameters
    ----------
    program:
        A :class:`~bitline.hw.spec.program.Program` with :attr:`nodes` (``compile
        --network``); its config's ``act_buffer_depth`` is the buffer.
    qmodel:
        The quantized model (a COMPUTE node's layer record names its layer).
    codes:
        int64 ``(N, *input_shape)`` network input codes
        (:func:`~bitline.sw.integer.arith.quantize_input`).
    trace:
        If given, a list that receives every node's output ``(N, C, OH, OW)`` in node order.

    Returns
    -------
    np.ndarray
        int64 ``(N, *model.output_shape)``: the ``to_host`` node's outputs in C order (a raw
        final layer's ``acc + bias``, else codes), the golden model's output tensor.
        :func:`producer_order` gives the order they stream to the host.

    Raises
    ------
    ValueError
        If the program has no nodes or the input does not fill node 0's map.
    """
    nodes = getattr(program, "nodes", None)
    if not nodes:
        raise ValueError("run_nodes: the program has no network nodes (compile with "
                         "--network)")
    codes = np.asarray(codes, dtype=np.int64)
    batch = codes.shape[0]
    flat = codes.reshape(batch, -1)
    first = nodes[0].window
    if flat.shape[1] != first.size:
        raise ValueError(f"run_nodes: {flat.shape[1]} input codes per sample, node 0 reads a "
                         f"{first.channels}x{first.height}x{first.width} map")
    depth = max(program.config.act_buffer_depth, first.size)
    buffer = np.zeros((batch, depth), dtype=np.int64)
    buffer[:, :first.size] = flat
    ou_rows = spec_ou_rows(qmodel)
    output = None
    for node in nodes:
        out = _run_node(node, buffer, program, qmodel, ou_rows)      # (N, P, C)
        out_h, out_w = node.window.out_hw()
        channels = out.shape[2]
        tensor = out.transpose(0, 2, 1).reshape(batch, channels, out_h, out_w)
        if trace is not None:
            trace.append(tensor)
        if node.to_host:
            output = tensor
            break
        buffer[:, node.dst_base:node.dst_base + channels * out_h * out_w] = \
            tensor.reshape(batch, -1)
    if output is None:
        raise ValueError("run_nodes: no node sends its outputs to the host (to_host)")
    return output.reshape(batch, *qmodel.model.output_shape)


def _run_node(node: NodeProgram, buffer: np.ndarray, program, qmodel: QuantizedModel,
              ou_rows: int | None) -> np.ndarray:
    """One node's outputs ``(N, P, C)`` in producer order."""
    batch = buffer.shape[0]
    window = node.window
    values, pad = _read(buffer, window)                 # (N, P, C*KH*KW)
    pixels = values.shape[1]
    if node.kind == NodeKind.COMPUTE:
        qlayer = qmodel.layers[program.layers[node.layer].name]
        cols = values.reshape(batch * pixels, -1)
        acc = arith.compute_acc(qlayer, cols, ou_rows=ou_rows)
        out = qlayer.output
        y = arith.output_unit(acc, qlayer.bias, qlayer.mult, qlayer.shift,
                              out.zero_point if out is not None else 0,
                              qlayer.clamp_lo, qlayer.clamp_hi, qlayer.mode)
        return y.reshape(batch, pixels, -1)
    if node.kind == NodeKind.ADD:
        other = WindowParams(window.channels, window.height, window.width,
                             base=node.src1_base)
        second, _ = _read(buffer, other)
        total = (node.mult_a * (values - node.zero_a) + node.mult_b * (second - node.zero_b))
        y = node.zero_point + arith.rounding_shift(total, node.shift)
        return np.clip(y, node.clamp_lo, node.clamp_hi)
    windows = values.reshape(batch, pixels, window.channels, -1)
    if node.kind == NodeKind.POOL_MAX:
        return windows.max(axis=-1)
    # average: floor((2*sum + count) / (2*count)), count the read (or all) elements
    size = windows.shape[-1]
    count = (np.int64(size) if node.count_include_pad
             else (~pad).reshape(pixels, window.channels, -1).sum(axis=-1))
    return (2 * windows.sum(axis=-1) + count) // (2 * count)
