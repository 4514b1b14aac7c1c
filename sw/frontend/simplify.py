"""Graph simplification on the ONNX model, before the conversion to the IR.

Exporters (``torch.onnx.export`` above all) write shape arithmetic into the graph:
``x.view(x.size(0), -1)`` becomes ``Shape -> Gather -> Unsqueeze -> Concat -> Reshape``,
and a graph may carry Identity / Dropout nodes, Constant nodes, dead branches and unused
initializers. :func:`simplify_onnx` removes all of this on a *copy* of the model (the user's
file and ``ModelProto`` are never modified), so that the converter
(:mod:`bitline.sw.frontend.onnx_import`) only sees the operators that compute.

Three steps, in order:

1. **The batch dimension is fixed to 1** (the IR is per sample; the importer accepts only a
   batch of 1 or a dynamic one), so that every shape in the graph is static.
2. **onnxruntime's basic-level optimizer** (``GraphOptimizationLevel.ORT_ENABLE_BASIC``, the
   graph written through ``SessionOptions.optimized_model_filepath``): constant folding (with
   static shapes that includes ``Shape`` and everything computed from it), Identity / Dropout
   / Slice / Unsqueeze / Cast / Expand elimination, dead nodes. Its *fusions* are disabled
   (:data:`ORT_DISABLED`): folding BatchNorm / Mul / Add into convolutions is the job of
   :mod:`bitline.sw.passes` (one place for that algebra, in float64, with node names that
   stay the user's), and its QDQ rewrites would change an already-quantized graph. The
   result must use only default-domain ops; a model onnxruntime cannot load (an op it does
   not know, e.g. a QONNX ``Quant`` node) skips this step.
3. **bitline's own folding** (:func:`fold_constants`): whatever is left whose inputs are all
   constants is evaluated with ``onnx.reference`` (one node at a time), ``Shape`` / ``Size``
   of a tensor with a static inferred shape becomes a constant, two Transposes that cancel
   are removed, Identity / Dropout that do not write a graph output are bypassed, chains of
   pure reshapes collapse (a Reshape restoring its input's shape goes), then dead nodes and
   unused initializers are dropped. Quantize/Dequantize nodes and random
   generators are never folded (an already-quantized graph keeps its quantization).

onnxruntime is chosen over ``onnxsim`` / ``onnxslim`` / ``onnxoptimizer`` because it is
already a dependency (the float backend is checked against it), it is maintained with every
opset, and its basic level stays in the default ONNX domain; what it leaves, the short
fallback here folds.
"""

from __future__ import annotations

import heapq
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

__all__ = ["ORT_DISABLED", "fold_constants", "simplify_onnx"]

#: onnxruntime basic-level rewrites that are switched off: the fusions (the IR passes fold,
#: keeping the user's node names) and the QDQ rewrites (an already-quantized graph is read
#: as it is written).
ORT_DISABLED = (
    "ConvBNFusion", "ConvAddFusion", "ConvMulFusion", "FuseReluClip", "MatmulBNFusion",
    "MatMulAddFusion", "PadFusion", "GemmSumFusion", "GemmTransposeFusion", "DivMulFusion",
    "ClipQuantFusion", "ReluQuantFusion", "ConstantSharing", "CommonSubexpressionElimination",
    "QDQPropagationTransformer", "DoubleQDQPairsRemover", "QDQS8ToU8Transformer",
    "QDQFinalCleanupTransformer", "EnsureUniqueDQForNodeUnit", "NotWhereFusion",
    "MatMulScaleFusion", "LabelEncoderFusion",
)

# Never evaluated at compile time: quantization must stay visible, random ops are random.
_NO_FOLD = {
    "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "RandomNormal",
    "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli",
}

# Folding a node whose output exceeds this many elements is left to the converter.
_MAX_FOLD_ELEMENTS = 1 << 24


def simplify_onnx(proto: onnx.ModelProto, *, use_onnxruntime: bool = True) -> onnx.ModelProto:
    """Return a simplified copy of ``proto`` (``proto`` itself is not modified).

    Parameters
    ----------
    proto:
        A model that passed ``onnx.checker.check_model``.
    use_onnxruntime:
        Run onnxruntime's basic-level optimizer first (step 2 of the module docstring);
        ``False`` runs only bitline's own folding.

    Returns
    -------
    onnx.ModelProto
        The same function of the graph input for a batch of 1, with shape subgraphs folded
        into initializers, Identity / Dropout removed where they do not write a graph output,
        and no dead nodes or unused initializers.
    """
    model = onnx.ModelProto()
    model.CopyFrom(proto)
    _fix_batch(model)
    if use_onnxruntime:
        model = _onnxruntime_basic(model)
    fold_constants(model)
    return model


def _fix_batch(model: onnx.ModelProto) -> None:
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    for value in [*graph.input, *graph.output]:
        if value.name in initializers or not value.type.HasField("tensor_type"):
            continue
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].Clear()
            dims[0].dim_value = 1
    # Stale intermediate shapes (with a symbolic batch) would only confuse the inference.
    del graph.value_info[:]


def _onnxruntime_basic(model: onnx.ModelProto) -> onnx.ModelProto:
    import onnxruntime as ort  # imported on first use: it takes a while to load

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.log_severity_level = 3
    with tempfile.TemporaryDirectory(prefix="bitline-simplify-") as folder:
        path = Path(folder) / "basic.onnx"
        options.optimized_model_filepath = str(path)
        try:
            ort.InferenceSession(model.SerializeToString(), options,
                                 providers=["CPUExecutionProvider"],
                                 disabled_optimizers=list(ORT_DISABLED))
            optimized = onnx.load(str(path))
        except Exception:  # noqa: BLE001 -- any failure: the converter names what it cannot take
            return model
    if any(node.domain not in ("", "ai.onnx") for node in optimized.graph.node):
        return model  # basic level stayed out of the default domain: do not use it
    # onnxruntime lists every domain it knows; keep the model's own opset imports.
    del optimized.opset_import[:]
    optimized.opset_import.extend(model.opset_import)
    optimized.graph.name = model.graph.name
    _restore_order(optimized.graph, model.graph)
    return optimized


def _restore_order(graph: onnx.GraphProto, original: onnx.GraphProto) -> None:
    """Sort ``graph``'s nodes topologically, in ``original``'s node order where possible.

    onnxruntime writes its own topological order; the IR's layer order (and so every
    listing and report) should stay the order the user wrote.
    """
    index = {node.name: position for position, node in enumerate(original.node) if node.name}
    keys, last = [], -1.0
    for node in graph.node:
        last = float(index[node.name]) if node.name in index else last + 1e-3
        keys.append(last)
    produced = {name: i for i, node in enumerate(graph.node) for name in node.output if name}
    waiting = [sum(1 for name in set(node.input) if name in produced) for node in graph.node]
    consumers: dict[int, list[int]] = {}
    for i, node in enumerate(graph.node):
        for name in set(node.input):
            if name in produced:
                consumers.setdefault(produced[name], []).append(i)
    ready = [(keys[i], i) for i, count in enumerate(waiting) if count == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        _, i = heapq.heappop(ready)
        order.append(i)
        for j in consumers.get(i, []):
            waiting[j] -= 1
            if waiting[j] == 0:
                heapq.heappush(ready, (keys[j], j))
    if len(order) != len(graph.node):
        return  # not a DAG as seen here (should not happen): keep onnxruntime's order
    nodes = [graph.node[i] for i in order]
    del graph.node[:]
    graph.node.extend(nodes)


def _opset(model: onnx.ModelProto) -> int:
    return next((int(e.version) for e in model.opset_import if e.domain in ("", "ai.onnx")), 13)


def _evaluate(node: onnx.NodeProto, values: list[np.ndarray], opsets) -> list[np.ndarray]:
    from onnx.reference import ReferenceEvaluator

    feeds = {name: value for name, value in zip(node.input, values) if name}
    return ReferenceEvaluator(node, opsets=opsets).run(None, feeds)


def _static_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # noqa: BLE001 -- without inferred shapes, Shape nodes stay
        return {}
    shapes = {}
    graph = inferred.graph
    for value in [*graph.input, *graph.value_info, *graph.output]:
        dims = value.type.tensor_type.shape.dim
        if value.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = tuple(int(d.dim_value) for d in dims)
    return shapes


def _shape_value(node: onnx.NodeProto, shape: tuple[int, ...]) -> np.ndarray:
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type == "Size":
        return np.asarray(int(np.prod(shape)), dtype=np.int64)
    start, end = int(attrs.get("start", 0)), attrs.get("end")
    return np.asarray(shape[start:None if end is None else int(end)], dtype=np.int64)


def _fold_pass(model: onnx.ModelProto, constants: dict[str, np.ndarray]) -> bool:
    """Fold every foldable node once; return whether anything changed."""
    graph = model.graph
    opsets = {e.domain or "": int(e.version) for e in model.opset_import}
    outputs = {o.name for o in graph.output}
    shapes = None
    kept, changed = [], False
    for node in graph.node:
        value = None
        if node.domain in ("", "ai.onnx") and node.op_type not in _NO_FOLD:
            if node.op_type == "Constant":
                value = [_evaluate(node, [], opsets)[0]]
            elif node.op_type in ("Shape", "Size") and node.input[0] not in constants:
                shapes = _static_shapes(model) if shapes is None else shapes
                if node.input[0] in shapes:
                    value = [_shape_value(node, shapes[node.input[0]])]
            elif node.input and all(not name or name in constants for name in node.input):
                try:
                    value = _evaluate(node, [constants.get(name) for name in node.input], opsets)
                except Exception:  # noqa: BLE001 -- the converter will name the node
                    value = None
        if value is not None and not any(name in outputs for name in node.output) and all(
            np.asarray(v).size <= _MAX_FOLD_ELEMENTS for v in value
        ):
            for name, array in zip(node.output, value):
                if name:
                    constants[name] = np.asarray(array)
                    graph.initializer.append(numpy_helper.from_array(np.asarray(array), name))
            changed = True
            continue
        kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)
    return changed


def _bypass(model: onnx.ModelProto) -> None:
    """Remove Identity / Dropout (inference) and Transpose pairs that cancel."""
    graph = model.graph
    outputs = {o.name for o in graph.output}
    rename: dict[str, str] = {}
    producers = {}
    kept = []
    for node in graph.node:
        for index, name in enumerate(node.input):
            node.input[index] = rename.get(name, name)
        passthrough = node.op_type in ("Identity", "Dropout") and not (
            node.op_type == "Dropout" and len(node.input) > 2 and node.input[2]
        )
        if node.op_type == "Transpose":
            first = producers.get(node.input[0])
            if first is not None and first.op_type == "Transpose":
                perm_a = _perm(first)
                perm_b = _perm(node)
                if perm_a is not None and perm_b is not None and len(perm_a) == len(perm_b) and [
                    perm_a[p] for p in perm_b
                ] == list(range(len(perm_a))):
                    if node.output[0] not in outputs:
                        rename[node.output[0]] = first.input[0]
                        continue
        if passthrough and node.output[0] not in outputs and not any(
            name and name != node.output[0] for name in node.output[1:] if _used(graph, name)
        ):
            rename[node.output[0]] = node.input[0]
            continue
        for name in node.output:
            producers[name] = node
        kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)


def _perm(node: onnx.NodeProto):
    for attr in node.attribute:
        if attr.name == "perm":
            return list(attr.ints)
    return None


def _used(graph: onnx.GraphProto, tensor: str) -> bool:
    return any(tensor == o.name for o in graph.output) or any(
        tensor in node.input for node in graph.node
    )


def _prune(model: onnx.ModelProto) -> None:
    """Drop nodes whose outputs nobody reads and initializers no node reads."""
    graph = model.graph
    needed = {o.name for o in graph.output}
    kept = []
    for node in reversed(graph.node):
        if any(name in needed for name in node.output if name):
            kept.append(node)
            needed.update(name for name in node.input if name)
    kept.reverse()
    del graph.node[:]
    graph.node.extend(kept)
    before = {init.name for init in graph.initializer}
    initializers = [init for init in graph.initializer if init.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    # Graph inputs that are initializers (old IR versions) go with their initializer.
    kept_inits = {init.name for init in initializers}
    inputs = [v for v in graph.input if v.name not in before or v.name in kept_inits]
    del graph.input[:]
    graph.input.extend(inputs)


# Ops that only re-label the shape of their first input (the bytes in C order stay).
_RESHAPING = ("Reshape", "Flatten", "Squeeze", "Unsqueeze")


def _collapse_reshapes(model: onnx.ModelProto, constants: dict[str, np.ndarray]) -> bool:
    """Make each Reshape read past earlier pure reshapes; drop it if it is then a no-op.

    A chain such as ``Flatten -> Reshape`` back to the image, or ``Reshape -> Reshape``, only
    relabels the same bytes: the last Reshape gets its static target shape as a constant and
    reads the chain's first input; when that input already has the target shape, the
    Reshape is bypassed. Returns whether anything changed.
    """
    graph = model.graph
    if not any(node.op_type == "Reshape" for node in graph.node):
        return False
    shapes = _static_shapes(model)
    producers = {name: node for node in graph.node for name in node.output}
    outputs = {o.name for o in graph.output}
    rename: dict[str, str] = {}
    changed = False
    for node in graph.node:
        for index, name in enumerate(node.input):
            node.input[index] = rename.get(name, name)
        if node.op_type != "Reshape" or node.output[0] not in shapes:
            continue
        source = node.input[0]
        while source in producers and producers[source].op_type in _RESHAPING \
                and source not in constants:
            source = producers[source].input[0]
        target = shapes[node.output[0]]
        if source in shapes and shapes[source] == target and node.output[0] not in outputs:
            rename[node.output[0]] = source
            changed = True
        elif source != node.input[0]:
            name = f"{node.output[0]}/static_shape"
            array = np.asarray(target, dtype=np.int64)
            constants[name] = array
            graph.initializer.append(numpy_helper.from_array(array, name))
            node.input[0], node.input[1] = source, name
            changed = True
    if rename:
        kept = [node for node in graph.node if node.output[0] not in rename]
        del graph.node[:]
        graph.node.extend(kept)
    return changed


def fold_constants(model: onnx.ModelProto) -> None:
    """bitline's own folding on ``model`` (modified in place; step 3 of the module docstring).

    Repeats until nothing changes: evaluate nodes whose inputs are all constants (and
    ``Shape`` / ``Size`` of tensors with a static inferred shape), bypass Identity / Dropout
    and cancelling Transpose pairs, collapse chains of pure reshapes (a Reshape that then
    restores its input's shape is removed); then prune dead nodes and unused initializers.
    """
    graph = model.graph
    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    while True:
        _bypass(model)
        if _fold_pass(model, constants):
            continue
        if not _collapse_reshapes(model, constants):
            break
    _prune(model)
