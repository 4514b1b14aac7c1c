"""Activation calibration: an :class:`~bitline.sw.integer.qmodel.ActParams` for every tensor.

The float reference (:func:`bitline.sw.frontend.float_model.run_float`) is run on a calibration
batch; each tensor's clipping threshold ``T`` comes from one of the rules in :data:`RULES`
and sets the scale (docs/contract.md section 1):

* unsigned (``zero_point = 0``): ``scale = T / (2**a - 1)``;
* signed (``zero_point = 2**(a-1)``): ``scale = T / (2**(a-1) - 1)`` (symmetric codes
  ``z - (2**(a-1) - 1) .. z + 2**(a-1) - 1``; the code 0 is never produced by rounding).

A tensor is *signed* when a calibration value is negative, or when it is the output of a
``conv`` / ``gemm`` / ``add`` layer without fused ReLU / ReLU6 and not the model output.
Tensors written by ``maxpool``, ``avgpool``, ``gap``, ``flatten``, ``relu`` and ``relu6``
inherit their input's parameters, so those integer ops stay exact.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from bitline.sw.frontend.ir import Model
from bitline.sw.integer.qmodel import ActParams
from bitline.sw.quant.forward import float_tensors

__all__ = ["RULES", "INHERITING_OPS", "CALIBRATION_MEMORY_LIMIT", "calibrate_activations",
           "act_params_from_threshold", "clip_threshold", "check_quantizable",
           "calibration_bytes", "check_calibration_size"]

#: Threshold rules: ``"max"`` (largest magnitude), ``"percentile"`` (the given percentile
#: of the magnitudes), ``"mse"`` (the threshold on a grid of ``(k/grid) * max`` that
#: minimizes the mean squared quantization error of the calibration values).
RULES = ("max", "percentile", "mse")

#: Ops whose output tensor takes its input's ActParams (docs/contract.md section 3).
INHERITING_OPS = ("maxpool", "avgpool", "gap", "flatten", "relu", "relu6")

_SIGNED_PRODUCERS = ("conv", "gemm", "add")
_MAX_BITS = 16

#: Largest float working set (bytes) the calibration forward pass may allocate: every tensor
#: of the batch is kept, plus the largest convolution's im2col matrix. 8 GiB is about 90x
#: what 16 ResNet-18 CIFAR images need (93 MB); a model over it is refused before anything is
#: allocated (a 4096x4096 input reached hundreds of GiB).
CALIBRATION_MEMORY_LIMIT = 8 << 30
_FLOAT_BYTES = 4


def check_quantizable(model: Model) -> None:
    """Refuse a model the quantizer and the mapper have nothing to work on.

    Raises
    ------
    ValueError
        For a model without compute layers (an ONNX file that is only an Identity or a
        Relu), an input or a compute layer with a zero-sized dimension (a layer with no
        output channels), naming the model, the layer and the shape.
    """
    if any(int(size) <= 0 for size in model.input_shape):
        raise ValueError(f"model {model.name}: input {model.input_name} has shape "
                         f"{tuple(model.input_shape)}, with an empty dimension")
    compute = model.compute_layers
    if not compute:
        ops = ", ".join(sorted({layer.op for layer in model.layers})) or "none"
        raise ValueError(f"model {model.name} has no compute layer (conv, gemm, matmul) to "
                         f"quantize and map onto crossbars; its layers: {ops}")
    for layer in compute:
        shape = tuple(layer.weight.shape)
        if layer.weight.size == 0:
            what = ("no output channels" if shape and shape[0] == 0
                    else "an empty dimension")
            raise ValueError(f"model {model.name}: {layer.op} layer {layer.name} has "
                             f"{what} (weight shape {shape})")
        if any(int(size) <= 0 for size in layer.output_shape):
            raise ValueError(f"model {model.name}: {layer.op} layer {layer.name} has an "
                             f"empty output (shape {tuple(layer.output_shape)})")


def calibration_bytes(model: Model, samples: int) -> tuple[int, str]:
    """Return the bytes the float forward pass of ``samples`` inputs holds, and its biggest part.

    Every tensor of the batch is kept (the input and each layer's output, float32) and a
    convolution builds an im2col matrix of ``samples * OH * OW * C * KH * KW`` floats
    (:func:`bitline.sw.frontend.im2col.im2col`); the largest one is added. The second value
    names the biggest single allocation, for the error message. ``model`` is an IR
    model, or any object with ``input_shape`` (then the input batch alone is counted).
    """
    samples = int(samples)
    layers = getattr(model, "layers", ())      # the input alone for a model-like object
    elements = int(np.prod(model.input_shape, dtype=np.float64))
    biggest, where = elements, f"the input {tuple(model.input_shape)}"
    for layer in layers:
        size = int(np.prod(layer.output_shape, dtype=np.float64))
        elements += size
        if size > biggest:
            biggest = size
            where = f"{layer.op} layer {layer.name} output {tuple(layer.output_shape)}"
    window = 0
    for layer in layers:
        if layer.op == "conv" and layer.weight is not None and len(layer.output_shape) == 3:
            _, out_h, out_w = layer.output_shape
            size = out_h * out_w * int(np.prod(layer.weight.shape[2:])) * layer.input_shape[0]
            if size > window:
                window = size
                if size > biggest:
                    biggest, where = size, f"the im2col matrix of conv layer {layer.name}"
    return samples * (elements + window) * _FLOAT_BYTES, where


def check_calibration_size(model: Model, samples: int,
                           limit: int = CALIBRATION_MEMORY_LIMIT) -> None:
    """Refuse a calibration whose forward pass would allocate more than ``limit`` bytes.

    Raises
    ------
    ValueError
        Naming the model, the input count and shape, the bytes needed and the biggest part.
    """
    needed, where = calibration_bytes(model, samples)
    if needed > limit:
        raise ValueError(
            f"model {model.name}: calibrating on {samples} input(s) of shape "
            f"{tuple(model.input_shape)} needs {needed / 2**30:,.1f} GiB of float tensors "
            f"(the biggest: {where}), over the {limit / 2**30:g} GiB limit; use fewer "
            "calibration inputs (--calib-samples) or a smaller input")


def act_params_from_threshold(threshold: float, bits: int, signed: bool) -> ActParams:
    """Return the ActParams that map ``[-T, T]`` (signed) or ``[0, T]`` onto ``bits`` codes.

    A zero or non-finite threshold (a constant-zero tensor) uses ``T = 1``.

    Raises
    ------
    ValueError
        If ``bits`` is out of range (signed tensors need at least 2 bits).
    """
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not (
        (2 if signed else 1) <= bits <= _MAX_BITS
    ):
        raise ValueError(
            f"activation bits must be an integer between {2 if signed else 1} and "
            f"{_MAX_BITS}{' for a signed tensor' if signed else ''}, not {bits!r}"
        )
    threshold = float(threshold)
    if not np.isfinite(threshold) or threshold <= 0:
        threshold = 1.0
    bits = int(bits)
    if signed:
        return ActParams(bits, threshold / ((1 << (bits - 1)) - 1), 1 << (bits - 1))
    return ActParams(bits, threshold / ((1 << bits) - 1), 0)


def _fake_quantize(values: np.ndarray, act: ActParams) -> np.ndarray:
    codes = np.clip(np.rint(values / act.scale) + act.zero_point, 0, act.qmax)
    return act.scale * (codes - act.zero_point)


def clip_threshold(
    values: np.ndarray,
    bits: int,
    signed: bool,
    *,
    rule: str = "percentile",
    percentile: float = 99.99,
    grid: int = 128,
    max_samples: int = 1 << 18,
    seed: int = 0,
) -> float:
    """Return the clipping threshold ``T`` of one tensor's calibration values.

    Parameters
    ----------
    values:
        Float calibration values (any shape).
    bits, signed:
        Code width and signedness (used by ``"mse"``).
    rule:
        One of :data:`RULES`.
    percentile:
        Percentile of ``|values|`` for ``"percentile"``, in ``(0, 100]``.
    grid:
        Candidate count for ``"mse"``: thresholds ``max|values| * k / grid``, ``k = 1..grid``.
    max_samples, seed:
        ``"mse"`` evaluates at most ``max_samples`` values, drawn with ``seed``.

    Raises
    ------
    ValueError
        For an unknown rule or an out-of-range percentile.
    """
    magnitude = np.abs(np.asarray(values, dtype=np.float64)).reshape(-1)
    if magnitude.size == 0:
        return 0.0
    if rule == "max":
        return float(magnitude.max())
    if rule == "percentile":
        if not 0 < percentile <= 100:
            raise ValueError(f"percentile must be in (0, 100], not {percentile!r}")
        return float(np.percentile(magnitude, percentile))
    if rule == "mse":
        peak = float(magnitude.max())
        if peak == 0:
            return 0.0
        sample = np.asarray(values, dtype=np.float64).reshape(-1)
        if sample.size > max_samples:
            sample = np.random.default_rng(seed).choice(sample, max_samples, replace=False)
        candidates = peak * np.arange(1, grid + 1) / grid
        errors = [
            np.mean((sample - _fake_quantize(sample, act_params_from_threshold(t, bits, signed)))
                    ** 2)
            for t in candidates
        ]
        return float(candidates[int(np.argmin(errors))])
    raise ValueError(f"calibration rule must be one of {', '.join(RULES)}, not {rule!r}")


def calibrate_activations(
    model: Model,
    calib_x: np.ndarray,
    *,
    bits: int = 8,
    rule: str = "percentile",
    percentile: float = 99.99,
    tensor_bits: Mapping[str, int] | None = None,
    seed: int = 0,
) -> dict[str, ActParams]:
    """Calibrate the ActParams of the model input and every layer output.

    Parameters
    ----------
    model:
        The float IR model.
    calib_x:
        Float calibration batch ``(N, *model.input_shape)``.
    bits:
        Default activation width.
    rule, percentile:
        Threshold rule (see :data:`RULES` and :func:`clip_threshold`).
    tensor_bits:
        Widths for individual tensors (name -> bits), overriding ``bits`` (varied
        activation widths). A tensor that inherits its input's params must not get a
        different width.
    seed:
        Seed of the ``"mse"`` subsampling.

    Returns
    -------
    dict
        Tensor name -> :class:`ActParams`, the input first, then the layer outputs in order.

    Raises
    ------
    ValueError
        For an unknown tensor name in ``tensor_bits``, a conflicting width of an inheriting
        tensor, a bad rule / width, a calibration batch of the wrong shape, a tensor
        that is not finite (NaN, infinity), a model with nothing to quantize
        (:func:`check_quantizable`) or a forward pass over :data:`CALIBRATION_MEMORY_LIMIT`
        (:func:`check_calibration_size`).
    """
    check_quantizable(model)
    calib_x = np.asarray(calib_x, dtype=np.float32)
    if calib_x.shape[1:] != tuple(model.input_shape) or calib_x.shape[0] == 0:
        raise ValueError(
            f"calib_x must be a non-empty batch of shape "
            f"(N, {', '.join(map(str, model.input_shape))}), not {calib_x.shape}"
        )
    check_calibration_size(model, calib_x.shape[0])
    tensor_bits = dict(tensor_bits or {})
    known = {model.input_name} | {layer.output for layer in model.layers}
    unknown = sorted(set(tensor_bits) - known)
    if unknown:
        raise ValueError(
            f"tensor_bits names unknown tensor(s) {', '.join(unknown)} of model {model.name}"
        )
    # an overflow is caught below by the finiteness check, which names the tensor: numpy's
    # own RuntimeWarning would only print a line of library source before that error
    with np.errstate(over="ignore", invalid="ignore"):
        values = float_tensors(model, calib_x)      # shared with the other steps

    def calibrate(name: str, signed: bool) -> ActParams:
        width = tensor_bits.get(name, bits)
        tensor = values[name]
        if not np.isfinite(tensor).all():
            # an overflow (float32 weights near 3e38) or a NaN input: a threshold from it
            # would fall back to T = 1 and quantize every value wrongly
            raise ValueError(f"model {model.name}: tensor {name} is not finite on the "
                             "calibration inputs (NaN or infinity: an input, or a float "
                             "overflow of the weights)")
        signed = signed or bool(np.any(tensor < 0))
        threshold = clip_threshold(tensor, width, signed, rule=rule, percentile=percentile,
                                   seed=seed)
        try:
            return act_params_from_threshold(threshold, width, signed)
        except ValueError as error:
            raise ValueError(f"tensor {name}: {error}") from None

    params = {model.input_name: calibrate(model.input_name, False)}
    for layer in model.layers:
        if layer.op in INHERITING_OPS:
            inherited = params[layer.inputs[0]]
            width = tensor_bits.get(layer.output, inherited.bits)
            if width != inherited.bits:
                raise ValueError(
                    f"tensor {layer.output} of {layer.op} layer {layer.name} inherits "
                    f"{inherited.bits}-bit params from {layer.inputs[0]}; tensor_bits asks "
                    f"for {width}"
                )
            params[layer.output] = inherited
        else:
            signed = (
                layer.op in _SIGNED_PRODUCERS
                and layer.activation is None
                and layer.output != model.output_name
            )
            params[layer.output] = calibrate(layer.output, signed)
    return params
