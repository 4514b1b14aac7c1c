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

__all__ = ["RULES", "INHERITING_OPS", "calibrate_activations", "act_params_from_threshold",
           "clip_threshold"]

#: Threshold rules: ``"max"`` (largest magnitude), ``"percentile"`` (the given percentile
#: of the magnitudes), ``"mse"`` (the threshold on a grid of ``(k/grid) * max`` that
#: minimizes the mean squared quantization error of the calibration values).
RULES = ("max", "percentile", "mse")

#: Ops whose output tensor takes its input's ActParams (docs/contract.md section 3).
INHERITING_OPS = ("maxpool", "avgpool", "gap", "flatten", "relu", "relu6")

_SIGNED_PRODUCERS = ("conv", "gemm", "add")
_MAX_BITS = 16


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
        tensor, a bad rule / width, or a calibration batch of the wrong shape.
    """
    calib_x = np.asarray(calib_x, dtype=np.float32)
    if calib_x.shape[1:] != tuple(model.input_shape) or calib_x.shape[0] == 0:
        raise ValueError(
            f"calib_x must be a non-empty batch of shape "
            f"(N, {', '.join(map(str, model.input_shape))}), not {calib_x.shape}"
        )
    tensor_bits = dict(tensor_bits or {})
    known = {model.input_name} | {layer.output for layer in model.layers}
    unknown = sorted(set(tensor_bits) - known)
    if unknown:
        raise ValueError(
            f"tensor_bits names unknown tensor(s) {', '.join(unknown)} of model {model.name}"
        )
    values = float_tensors(model, calib_x)          # shared with the other steps

    def calibrate(name: str, signed: bool) -> ActParams:
        width = tensor_bits.get(name, bits)
        tensor = values[name]
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
