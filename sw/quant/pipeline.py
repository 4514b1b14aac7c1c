"""The quantize step: spec + float model + calibration batch -> :class:`QuantizedModel`.

:func:`quantize_model` ties the pieces together:

1. load and check the spec (:mod:`.spec`) against the model;
2. calibrate every activation tensor (:func:`~.calibrate.calibrate_activations`), with the
   per-layer ``activation_bits`` overrides;
3. for ``varied`` and ``bwq``, measure per-layer sensitivities on the calibration batch
   (:func:`layer_statistics`: ``E[x_i**2]`` of the im2col inputs, the layer output power,
   and for BWQ the truncation statistics of the input codes);
4. quantize the weights: fixed rules per layer / channel, :func:`~.varied.assign_varied`,
   or BWQ-A (:mod:`.bwq`), and for BWQ allocate row-block activation widths;
5. build the integer model (:func:`~.build.build_quantized_model`).

``qmodel.spec`` keeps ``name``, ``mode``, ``quant`` (the spec as data), ``ou_rows`` /
``ou_cols`` (the OU geometry BWQ blocks refer to) and ``stats``:

* ``avg_weight_bits`` — storage bits per weight, sign included, averaged over all weights
  of all compute layers (BWQ: each weight counts its block's width);
* ``avg_activation_bits`` — width with which each compute layer's input vector element is
  streamed, averaged over all im2col inputs (wordlines) of all compute layers (BWQ: each
  input counts its row block's width);
* ``zero_block_fraction`` — fraction of the OU-sized blocks (``ou_cols x ou_rows`` of each
  ``(O, K)`` matrix, counting only blocks that hold weights) whose weights are all zero;
* ``weight_bits_histogram`` — weights per width; ``block_bits_histogram`` (BWQ) — blocks
  per width; ``scheme_histogram`` (varied) — channels per scheme.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from bitline.hw.spec.config import AcceleratorConfig
from bitline.sw.frontend.float_model import run_float, run_float_from
from bitline.sw.frontend.im2col import im2col
from bitline.sw.frontend.ir import Layer, Model
from bitline.sw.integer.arith import quantize_input
from bitline.sw.integer.qmodel import ActParams, QuantizedModel
from bitline.sw.quant import blockwise, forward
from bitline.sw.quant.build import LayerWeights, build_quantized_model
from bitline.sw.quant.calibrate import INHERITING_OPS, calibrate_activations
from bitline.sw.quant.schemes import quantize
from bitline.sw.quant.spec import QuantSpec, layer_channel_rules
from bitline.sw.quant.spec_file import load_spec
from bitline.sw.quant.tensor import QuantizedTensor
from bitline.sw.quant.varied import assign_varied

__all__ = ["LayerStats", "layer_statistics", "quantize_model", "zero_block_fraction"]

#: Im2col rows (output pixels x samples) used for a layer's statistics, at most; fewer
#: when the rows are long, so that one layer's sample stays within MAX_STAT_ELEMENTS.
MAX_STAT_ROWS = 1 << 16
MAX_STAT_ELEMENTS = 1 << 23

#: Multiply-accumulates the gain probes of :func:`layer_gains` may spend in total (one
#: float forward pass per compute layer); the probe batch shrinks to fit, down to
#: MIN_GAIN_SAMPLES images.
GAIN_MAC_BUDGET = 2e10
MIN_GAIN_SAMPLES = 1
#: ``[(key, model, gains)]``: the last :func:`layer_gains` result (the model is held so
#: that the ids in the key stay unique while the entry lives).
_LAST_GAINS: list[tuple] = []


@dataclasses.dataclass
class LayerStats:
    """Calibration statistics of one compute layer's input (im2col order, dense K).

    ``input_power`` ``E[x_i**2]``, ``input_mean`` ``E[x_i]`` (float values);
    ``output_power`` ``sum_n E[y_n**2]`` of ``y = W x`` (bias excluded);
    ``truncation_mean`` / ``truncation_var`` ``(a+1, K)``: mean and variance of
    ``q_i mod 2**d`` of the input codes for ``d = 0..a`` (only when ``acts`` were given).
    """

    input_power: np.ndarray
    input_mean: np.ndarray
    output_power: float
    truncation_mean: np.ndarray | None = None
    truncation_var: np.ndarray | None = None


def _conv_windows(layer: Layer) -> dict:
    attrs = layer.attrs
    return dict(
        kernel=tuple(int(k) for k in layer.weight.shape[2:]),
        stride=tuple(attrs.get("stride", (1, 1))),
        pads=tuple(attrs.get("pads", (0, 0, 0, 0))),
        dilation=tuple(attrs.get("dilation", (1, 1))),
    )


def _columns(layer: Layer, x: np.ndarray, pad_value, rows: np.ndarray | None) -> np.ndarray:
    """im2col rows of a compute layer's input batch (all rows, or the given row indices)."""
    if layer.op == "gemm":
        cols = x.reshape(x.shape[0], -1)
    else:
        cols = im2col(x, pad_value=pad_value, **_conv_windows(layer))
        cols = cols.reshape(-1, cols.shape[-1])
    return cols if rows is None else cols[rows]


def _dense_matrix(layer: Layer) -> np.ndarray:
    groups = int(layer.attrs.get("groups", 1)) if layer.op == "conv" else 1
    rows, cols = blockwise.matrix_positions(layer.weight.shape, groups)
    in_features = int(np.prod(layer.weight.shape[1:])) * groups
    dense = np.zeros((layer.weight.shape[0], in_features))
    dense[rows, cols] = np.asarray(layer.weight, dtype=np.float64).reshape(-1)
    return dense


def layer_statistics(
    model: Model,
    calib_x: np.ndarray,
    acts: dict[str, ActParams] | None = None,
    *,
    seed: int = 0,
) -> dict[str, LayerStats]:
    """Measure each compute layer's input statistics on a calibration batch.

    At most :data:`MAX_STAT_ROWS` im2col rows per layer (and at most
    :data:`MAX_STAT_ELEMENTS` values) are used: the first images of the batch that provide
    them, then rows drawn with ``seed``. With ``acts`` the input codes' truncation
    statistics are measured too (BWQ).
    """
    tensors = forward.float_tensors(model, calib_x)   # the pass calibration ran
    rng = np.random.default_rng(seed)
    stats = {}
    for layer in model.compute_layers:
        in_features = int(np.prod(layer.weight.shape[1:])) * (
            int(layer.attrs.get("groups", 1)) if layer.op == "conv" else 1)
        cap = max(256, min(MAX_STAT_ROWS, MAX_STAT_ELEMENTS // in_features))
        pixels = int(np.prod(layer.output_shape[1:])) if layer.op == "conv" else 1
        images = max(1, -(-cap // pixels))
        x = np.asarray(tensors[layer.inputs[0]][:images], dtype=np.float64)
        cols = _columns(layer, x, 0.0, None)
        rows = None
        if cols.shape[0] > cap:
            rows = np.sort(rng.choice(cols.shape[0], cap, replace=False))
            cols = cols[rows]
        dense = _dense_matrix(layer)
        output = cols @ dense.T
        entry = LayerStats(
            input_power=np.mean(np.square(cols), axis=0),
            input_mean=np.mean(cols, axis=0),
            output_power=float(np.mean(np.square(output), axis=0).sum()),
        )
        if acts is not None:
            act = acts[layer.inputs[0]]
            codes = quantize_input(x, act)
            code_cols = _columns(layer, codes, act.zero_point, rows)
            means, variances = [], []
            for dropped in range(act.bits + 1):
                residue = (code_cols & ((1 << dropped) - 1)).astype(np.float64)
                means.append(residue.mean(axis=0))
                variances.append(residue.var(axis=0))
            entry.truncation_mean = np.stack(means)
            entry.truncation_var = np.stack(variances)
        stats[layer.name] = entry
    return stats


def layer_gains(model: Model, calib_x: np.ndarray, stats: dict[str, LayerStats],
                probe_bits: int = 4) -> dict[str, float]:
    """Measure how a layer's relative output error reaches the model output.

    For every compute layer, its weights alone are replaced by a probe quantization
    (``int<probe_bits>`` per channel) and the float model is run on the calibration batch.
    The gain is the model-output relative squared error divided by the layer-output relative
    error the Hessian-diagonal proxy predicts, ``sum h (w - w_q)**2 / power``. Multiplying a
    layer's proxy errors by its gain makes errors of different layers comparable in units of
    model-output error. The probes run on the first images of ``calib_x``, as many as
    :data:`GAIN_MAC_BUDGET` allows (all 256 calibration images of the digits CNN; one for
    a ResNet-18).
    """
    calib_x = np.asarray(calib_x, dtype=np.float32)
    macs = sum(layer.macs for layer in model.compute_layers) * len(model.compute_layers)
    samples = max(MIN_GAIN_SAMPLES, int(GAIN_MAC_BUDGET // max(macs, 1)))
    calib_x = calib_x[:samples]
    # A varied and a bwq spec of one comparison probe the same model on the same batch with
    # the same statistics: the last result is kept (keyed by content, see .forward).
    key = (forward.model_key(model), forward.digest([calib_x]), probe_bits,
           forward.digest(array for name in sorted(stats) for array in (
               stats[name].input_power, np.float64(stats[name].output_power))))
    if _LAST_GAINS and _LAST_GAINS[0][0] == key:
        return dict(_LAST_GAINS[0][2])
    _LAST_GAINS.clear()
    # Each probe reruns only the layers from the probed one on, from the reference tensors.
    before = run_float(model, calib_x, return_all=True)
    reference = np.asarray(before[model.output_name], dtype=np.float64)
    energy = float(np.mean(np.square(reference))) or 1.0
    gains = {}
    for index, layer in enumerate(model.layers):
        if not layer.is_compute:
            continue
        probe = quantize(layer.weight, "int", probe_bits, axis=0)
        dense = _dense_matrix(layer)
        probed = dataclasses.replace(layer, weight=probe.dequantize().astype(np.float32))
        error_dense = dense - _dense_matrix(probed)
        entry = stats[layer.name]
        predicted = float((np.square(error_dense) @ entry.input_power).sum()) / entry.output_power
        layers = list(model.layers)
        layers[index] = probed
        output = np.asarray(run_float_from(dataclasses.replace(model, layers=layers), before,
                                           index), dtype=np.float64)
        measured = float(np.mean(np.square(output - reference))) / energy
        gains[layer.name] = measured / predicted if predicted > 0 else 1.0
    _LAST_GAINS.append((key, model, dict(gains)))
    return gains


def _origin_tensor(model: Model, tensor: str) -> str:
    """Follow inheriting ops (pool, flatten, relu) back to the tensor that owns the params."""
    producers = {layer.output: layer for layer in model.layers}
    while tensor in producers and producers[tensor].op in INHERITING_OPS:
        tensor = producers[tensor].inputs[0]
    return tensor


def _activation_widths(spec: QuantSpec, model: Model) -> dict[str, int]:
    widths: dict[str, int] = {}
    for name, rule in spec.layers.items():
        if rule.activation_bits is None:
            continue
        tensor = _origin_tensor(model, model.layer(name).inputs[0])
        if widths.get(tensor, rule.activation_bits) != rule.activation_bits:
            raise spec.error(f'layers."{name}".activation_bits',
                             f"tensor {tensor} is read by another layer at {widths[tensor]} bits")
        widths[tensor] = rule.activation_bits
    return widths


def _fixed_weights(spec: QuantSpec, layer: Layer) -> QuantizedTensor:
    """Quantize one layer with the spec's layer / channel rules."""
    parts = layer_channel_rules(spec, layer)
    if len(parts) == 1:
        rule = parts[0][1]
        return quantize(layer.weight, rule.scheme, rule.bits, axis=rule.axis, **rule.options)
    out_channels = layer.weight.shape[0]
    values = np.zeros(layer.weight.shape, dtype=np.int64)
    scale = np.zeros(out_channels)
    schemes = np.empty(out_channels, dtype=object)
    bits = np.zeros(out_channels, dtype=np.int64)
    for mask, rule in parts:
        if rule.granularity == "tensor":
            # A per-tensor rule shares one scale among the channels it covers.
            q = quantize(layer.weight[mask], rule.scheme, rule.bits, axis=None, **rule.options)
            scale[mask] = float(q.scale.reshape(-1)[0])
        else:
            q = quantize(layer.weight[mask], rule.scheme, rule.bits, axis=0, **rule.options)
            scale[mask] = q.scale.reshape(-1)
        values[mask] = q.values
        schemes[mask] = rule.scheme
        bits[mask] = rule.bits
    return QuantizedTensor(values=values,
                           scale=scale.reshape((-1,) + (1,) * (layer.weight.ndim - 1)),
                           scheme=schemes, bits=bits, options={})


def zero_block_fraction(model: Model, weights: dict[str, QuantizedTensor],
                        ou_rows: int, ou_cols: int) -> float:
    """Fraction of OU-sized blocks holding weights whose weights are all zero."""
    zero = total = 0
    for layer in model.compute_layers:
        values = weights[layer.name].values
        groups = int(layer.attrs.get("groups", 1)) if layer.op == "conv" else 1
        rows, cols = blockwise.matrix_positions(values.shape, groups)
        blocks_per_row = -(-int(np.prod(values.shape[1:])) * groups // ou_rows)
        block = (rows // ou_cols) * blocks_per_row + cols // ou_rows
        count = np.bincount(block)
        nonzero = np.bincount(block, weights=(values.reshape(-1) != 0).astype(np.float64),
                              minlength=len(count))
        real = count > 0
        total += int(real.sum())
        zero += int((real & (nonzero == 0)).sum())
    return zero / total if total else 0.0


def _check_planes(model: Model, weights: dict[str, QuantizedTensor], config: AcceleratorConfig,
                  spec: QuantSpec) -> None:
    limit = config.max_weight_bits - 1
    for layer in model.compute_layers:
        planes = weights[layer.name].magnitude_bits
        if planes > limit:
            raise ValueError(
                f"spec {spec.source}: layer {layer.name} needs {planes} magnitude bit planes "
                f"(scheme {np.atleast_1d(weights[layer.name].scheme)[0]}), but the config's "
                f"max_weight_bits = {config.max_weight_bits} allows {limit}; raise "
                "max_weight_bits in the config or narrow the scheme"
            )


def _with_bias(model: Model, delta: dict[str, np.ndarray]) -> Model:
    """Copy of ``model`` whose layers in ``delta`` have ``bias + delta`` (float32)."""
    layers = []
    for layer in model.layers:
        if layer.name in delta and np.any(delta[layer.name]):
            bias = np.zeros(layer.weight.shape[0]) if layer.bias is None else layer.bias
            layer = dataclasses.replace(
                layer, bias=(np.asarray(bias, dtype=np.float64) + delta[layer.name]).astype(
                    np.float32))
        layers.append(layer)
    return dataclasses.replace(model, layers=layers)


def quantize_model(
    model: Model,
    spec,
    calib_x: np.ndarray,
    config: AcceleratorConfig | None = None,
    *,
    seed: int = 0,
) -> QuantizedModel:
    """Quantize ``model`` as ``spec`` says, calibrating on ``calib_x``.

    Parameters
    ----------
    model:
        Float IR model.
    spec:
        A :class:`~.spec.QuantSpec`, a spec file path (TOML/JSON), a shorthand (``int8``,
        ``apot4``, ``varied4``, ``bwq3``, ...) or a dict; see :mod:`.spec`.
    calib_x:
        Float calibration batch ``(N, *model.input_shape)``.
    config:
        Accelerator config: its OU (``ou_rows x ou_cols``) is the BWQ block and the block
        grid of ``zero_block_fraction``; its ``max_weight_bits`` bounds the magnitude planes.
        Default :class:`~bitline.hw.spec.config.AcceleratorConfig()`.
    seed:
        Seed of the statistics subsampling (results are deterministic for a given seed).

    Returns
    -------
    QuantizedModel
        With ``spec`` as described in the module docstring. For BWQ with activation row
        blocks, ``qmodel.model`` is a copy of ``model`` whose biases carry the truncation
        bias correction; with ``finetune_epochs`` it is the fine-tuned copy.

    Raises
    ------
    ValueError
        For an invalid spec (naming the field), a model the spec does not fit, or weights
        wider than the config allows.
    """
    spec = load_spec(spec)
    spec.check_model(model)
    config = config or AcceleratorConfig()
    activations = spec.activations
    if activations.bits > config.max_act_bits:
        raise spec.error("activations.bits", f"{activations.bits} exceeds the config's "
                         f"max_act_bits ({config.max_act_bits})")
    acts = _calibrate(spec, model, calib_x, seed)
    if spec.mode == "fixed":
        chosen = _Chosen(model, acts, {layer.name: _fixed_weights(spec, layer)
                                       for layer in model.compute_layers})
    elif spec.mode == "varied":
        chosen = _varied_weights(spec, model, calib_x, acts, seed)
    else:
        chosen = _bwq_weights(spec, model, calib_x, acts, config, seed)
    model, acts = chosen.model, chosen.acts
    _check_planes(model, chosen.weights, config, spec)
    stats = dict(chosen.stats)
    stats.update(_bit_statistics(model, chosen, config))
    spec_data = {"name": spec.name, "mode": spec.mode, "quant": spec.to_dict(),
                 "ou_rows": config.ou_rows, "ou_cols": config.ou_cols, "stats": stats}
    layer_weights = {
        layer.name: LayerWeights(chosen.weights[layer.name], chosen.block_bits.get(layer.name),
                                 chosen.act_block_bits.get(layer.name))
        for layer in model.compute_layers
    }
    built_model = _with_bias(model, chosen.bias_delta) if chosen.bias_delta else model
    return build_quantized_model(built_model, layer_weights, acts, spec=spec_data)


@dataclasses.dataclass
class _Chosen:
    """What a weight rule chose: the (possibly fine-tuned) model, its activation parameters,
    the quantized weights per layer, and for BWQ the block widths, activation row-block widths,
    bias corrections and statistics."""

    model: Model
    acts: dict
    weights: dict
    block_bits: dict = dataclasses.field(default_factory=dict)
    act_block_bits: dict = dataclasses.field(default_factory=dict)
    bias_delta: dict = dataclasses.field(default_factory=dict)
    stats: dict = dataclasses.field(default_factory=dict)


def _calibrate(spec, model: Model, calib_x: np.ndarray, seed: int) -> dict:
    """Activation parameters of every tensor of ``model`` as the spec's rule sets them."""
    activations = spec.activations
    return calibrate_activations(
        model, calib_x, bits=activations.bits, rule=activations.rule,
        percentile=activations.percentile, tensor_bits=_activation_widths(spec, model),
        seed=seed,
    )


def _groups(layer) -> int:
    return int(layer.attrs.get("groups", 1)) if layer.op == "conv" else 1


def _varied_weights(spec, model: Model, calib_x: np.ndarray, acts: dict, seed: int) -> _Chosen:
    """The per-channel scheme choice of a ``varied`` spec at its average-bit budget."""
    rule = spec.varied
    compute = model.compute_layers
    hessian = rule.sensitivity in ("hessian", "output")
    layer_stats = layer_statistics(model, calib_x, seed=seed) if hessian else {}
    gains = layer_gains(model, calib_x, layer_stats) if rule.sensitivity == "output" else {}
    input_power, output_power = {}, {}
    for layer in compute:
        if layer.name not in layer_stats:
            continue
        entry = layer_stats[layer.name]
        h = entry.input_power
        if _groups(layer) > 1:
            _, cols = blockwise.matrix_positions(layer.weight.shape, _groups(layer))
            h = h[cols].reshape(layer.weight.shape[0], -1)
        input_power[layer.name] = h
        output_power[layer.name] = entry.output_power / gains.get(layer.name, 1.0)
    result = assign_varied(compute, rule.budget, rule.candidates(),
                           input_power=input_power, output_power=output_power,
                           source=f"spec {spec.source}: varied.budget")
    return _Chosen(model, acts, result.weights,
                   stats={"scheme_histogram": result.scheme_histogram})


def _bwq_weights(spec, model: Model, calib_x: np.ndarray, acts: dict,
                 config: AcceleratorConfig, seed: int) -> _Chosen:
    """Block-wise widths of a ``bwq`` spec (optionally fine-tuned), and with ``act_budget``
    the activation row-block widths and their bias correction."""
    rule = spec.bwq
    ou_rows, ou_cols = config.ou_rows, config.ou_cols
    compute = model.compute_layers
    hessian = rule.sensitivity in ("hessian", "output")
    need_acts = rule.act_budget is not None
    layer_stats = (layer_statistics(model, calib_x, acts if need_acts else None, seed=seed)
                   if hessian or need_acts else {})
    gains = layer_gains(model, calib_x, layer_stats) if rule.sensitivity == "output" else {}
    plans = []
    for layer in compute:
        entry = layer_stats.get(layer.name) if hessian else None
        plans.append(blockwise.plan_layer(
            layer, ou_rows, ou_cols,
            input_power=None if entry is None else entry.input_power,
            output_power=(None if entry is None
                          else entry.output_power / gains.get(layer.name, 1.0)),
        ))
    widths = blockwise.allocate_blocks(plans, rule.budget, min_bits=rule.min_bits,
                                       max_bits=rule.max_bits, fixed=rule.layers,
                                       source=f"spec {spec.source}: bwq.budget")
    if rule.finetune_epochs:
        from bitline.sw.quant.finetune import finetune_bwq

        # Widths, plane offsets and channel scales stay; weights and biases move, so the
        # activations and their statistics are measured again on the tuned model.
        model = finetune_bwq(model, plans, widths, calib_x, epochs=rule.finetune_epochs,
                             learning_rate=rule.finetune_lr, seed=seed)
        compute = model.compute_layers
        acts = _calibrate(spec, model, calib_x, seed)
        if need_acts:
            layer_stats = layer_statistics(model, calib_x, acts, seed=seed)
    chosen = _Chosen(model, acts, {})
    for plan, layer in zip(plans, compute):
        chosen.weights[plan.name], chosen.block_bits[plan.name] = blockwise.realize(
            plan, widths[plan.name], layer.weight if rule.finetune_epochs else None)
    chosen.stats["block_bits_histogram"] = \
        blockwise.block_histogram(chosen.block_bits, plans)["blocks"]
    if need_acts:
        _bwq_activation_blocks(spec, chosen, plans, layer_stats, ou_rows)
    return chosen


def _bwq_activation_blocks(spec, chosen: _Chosen, plans, layer_stats: dict,
                           ou_rows: int) -> None:
    """Allocate activation row-block widths at ``bwq.act_budget`` into ``chosen``."""
    rule = spec.bwq
    compute = chosen.model.compute_layers
    errors, sizes, widths = [], [], []
    for plan, layer in zip(plans, compute):
        act = chosen.acts[layer.inputs[0]]
        entry = layer_stats[layer.name]
        errors.append(blockwise.act_block_errors(plan, chosen.weights[plan.name], act.bits,
                                                 act.scale, entry.truncation_var))
        in_features = entry.truncation_var.shape[1]
        sizes.append(np.diff(np.minimum(np.arange(plan.shape[1] + 1) * ou_rows, in_features)))
        widths.append(act.bits)
    allocated = blockwise.allocate_act_blocks(
        errors, sizes, widths, rule.act_budget, min_bits=rule.min_act_bits,
        source=f"spec {spec.source}: bwq.act_budget")
    for plan, layer, chosen_widths in zip(plans, compute, allocated):
        act = chosen.acts[layer.inputs[0]]
        if np.all(chosen_widths == act.bits):
            continue
        chosen.act_block_bits[plan.name] = chosen_widths
        chosen.bias_delta[plan.name] = blockwise.act_bias_correction(
            plan, chosen.weights[plan.name], act.bits, act.scale,
            layer_stats[layer.name].truncation_mean, chosen_widths)


def _bit_statistics(model: Model, chosen: _Chosen, config: AcceleratorConfig) -> dict:
    """Average weight and activation bits, the zero-block fraction and the width histogram."""
    ou_rows, ou_cols = config.ou_rows, config.ou_cols
    compute = model.compute_layers
    total_weights = sum(int(layer.weight.size) for layer in compute)
    bits_total = 0.0
    histogram: dict[int, int] = {}
    for layer in compute:
        if layer.name in chosen.block_bits:
            rows, cols = blockwise.matrix_positions(layer.weight.shape, _groups(layer))
            per_weight = chosen.block_bits[layer.name][rows // ou_cols, cols // ou_rows]
        else:
            per_channel = np.broadcast_to(
                np.asarray(chosen.weights[layer.name].bits, dtype=np.int64),
                (layer.weight.shape[0],))
            per_weight = np.repeat(per_channel, int(np.prod(layer.weight.shape[1:])))
        bits_total += float(per_weight.sum())
        for width, count in zip(*np.unique(per_weight, return_counts=True)):
            histogram[int(width)] = histogram.get(int(width), 0) + int(count)
    act_total = act_inputs = 0.0
    for layer in compute:
        act = chosen.acts[layer.inputs[0]]
        in_features = int(np.prod(layer.weight.shape[1:])) * _groups(layer)
        if layer.name in chosen.act_block_bits:
            per_input = np.repeat(chosen.act_block_bits[layer.name], ou_rows)[:in_features]
            act_total += float(per_input.sum())
        else:
            act_total += act.bits * in_features
        act_inputs += in_features
    return dict(
        avg_weight_bits=bits_total / total_weights,
        avg_activation_bits=act_total / act_inputs,
        zero_block_fraction=zero_block_fraction(model, chosen.weights, ou_rows, ou_cols),
        weight_bits_histogram=dict(sorted(histogram.items())),
    )
