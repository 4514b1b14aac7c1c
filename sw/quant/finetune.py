"""Optional quantization-aware fine-tuning of BWQ-A weights (needs the ``train`` extra).

After the post-training allocation fixes every block's width, plane offset and every
channel's scale, :func:`finetune_bwq` fine-tunes the float weights and biases for a few
epochs with the block quantizer in the forward pass (straight-through estimator), by
distillation: the loss is the squared error between the fake-quantized model's outputs and
the FP32 model's outputs on the calibration batch, so no labels are needed. The widths do
not change; the caller re-quantizes the tuned weights on the same grid
(:func:`bitline.sw.quant.blockwise.realize` with ``weight=``) and recalibrates the activations.

Only PyTorch is needed (``pip install -e ".[train]"``); without it a spec asking for
fine-tuning fails with a message naming the field, and the post-training path is unaffected.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from bitline.sw.frontend.ir import Layer, Model
from bitline.sw.quant.blockwise import BlockPlan, matrix_positions

__all__ = ["finetune_bwq", "torch_available"]


def torch_available() -> bool:
    """True when PyTorch can be imported."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _block_grid(plan: BlockPlan, block_bits: np.ndarray):
    """Per-weight width, plane offset and channel scale (weight shape) of a plan."""
    rows, cols = matrix_positions(plan.weight_shape, plan.groups)
    flat_bits = np.asarray(block_bits).reshape(-1)
    lsb_table = plan.lsb[np.arange(len(flat_bits)), flat_bits].reshape(plan.shape)
    block_r, block_c = rows // plan.ou_cols, cols // plan.ou_rows
    width = np.asarray(block_bits)[block_r, block_c].reshape(plan.weight_shape)
    lsb = lsb_table[block_r, block_c].reshape(plan.weight_shape)
    scale = plan.scale[rows].reshape(plan.weight_shape)
    return width, lsb, scale


def _forward(torch, model: Model, params: dict, x, quantizers: dict | None):
    functional = torch.nn.functional
    tensors = {model.input_name: x}

    def activation(y, kind):
        if kind == "relu":
            return functional.relu(y)
        if kind == "relu6":
            return torch.clamp(y, 0.0, 6.0)
        return y

    for layer in model.layers:
        inputs = [tensors[name] for name in layer.inputs]
        h = inputs[0]
        attrs = layer.attrs
        if layer.is_compute:
            weight, bias = params[layer.name]
            if quantizers is not None:
                weight = quantizers[layer.name](weight)
            if layer.op == "conv":
                top, left, bottom, right = attrs.get("pads", (0, 0, 0, 0))
                h = functional.pad(h, (left, right, top, bottom))
                y = functional.conv2d(h, weight, bias, stride=tuple(attrs.get("stride", (1, 1))),
                                      dilation=tuple(attrs.get("dilation", (1, 1))),
                                      groups=int(attrs.get("groups", 1)))
            else:
                y = functional.linear(h.reshape(h.shape[0], -1), weight, bias)
        elif layer.op == "maxpool":
            top, left, bottom, right = attrs.get("pads", (0, 0, 0, 0))
            h = functional.pad(h, (left, right, top, bottom), value=float("-inf"))
            y = functional.max_pool2d(h, tuple(attrs["kernel"]), tuple(attrs.get("stride", (1, 1))))
        elif layer.op == "avgpool":
            top, left, bottom, right = attrs.get("pads", (0, 0, 0, 0))
            if (top, left) != (bottom, right):
                raise ValueError(f"fine-tuning: layer {layer.name}: asymmetric average-pool "
                                 "padding is not supported")
            y = functional.avg_pool2d(h, tuple(attrs["kernel"]), tuple(attrs.get("stride", (1, 1))),
                                      padding=(top, left),
                                      count_include_pad=bool(attrs.get("count_include_pad", False)))
        elif layer.op == "gap":
            y = h.mean(dim=(2, 3), keepdim=True)
        elif layer.op == "add":
            y = h + inputs[1]
        elif layer.op == "flatten":
            y = h.reshape(h.shape[0], -1)
        elif layer.op == "concat":
            y = torch.cat(inputs, dim=1)
        elif layer.op == "leaky_relu":
            alpha = torch.as_tensor(np.asarray(layer.attrs["alpha"], dtype=np.float32))
            y = torch.where(h >= 0, h, h * alpha.reshape((-1,) + (1,) * (h.dim() - 2)))
        elif layer.op in ("relu", "relu6"):
            y = activation(h, layer.op)
        else:
            raise ValueError(f"fine-tuning: layer {layer.name}: op {layer.op!r} not supported")
        tensors[layer.output] = activation(y, layer.activation)
    return tensors[model.output_name]


def finetune_bwq(
    model: Model,
    plans: list[BlockPlan],
    block_bits: dict[str, np.ndarray],
    calib_x: np.ndarray,
    *,
    epochs: int,
    learning_rate: float = 1e-4,
    batch_size: int = 32,
    seed: int = 0,
) -> Model:
    """Return a copy of ``model`` whose weights and biases were fine-tuned through BWQ.

    Parameters
    ----------
    model:
        The float model.
    plans, block_bits:
        The BWQ-A plans and the chosen widths (fixed during fine-tuning).
    calib_x:
        Float batch used for distillation against the FP32 model.
    epochs:
        Passes over ``calib_x`` (Adam, ``learning_rate``, ``batch_size``, shuffled with
        ``seed``; deterministic PyTorch algorithms on one thread).

    Raises
    ------
    ValueError
        If PyTorch is not installed or the model uses an op the fine-tuner does not run.
    """
    try:
        import torch
    except ImportError:
        raise ValueError(
            "BWQ fine-tuning needs PyTorch, the optional training extra: "
            'pip install -e ".[train]"'
        ) from None
    torch.manual_seed(seed)
    previous = torch.are_deterministic_algorithms_enabled()
    previous_threads = torch.get_num_threads()
    torch.use_deterministic_algorithms(True)
    # One thread: reproducible sums, and faster than several for the small models the
    # fine-tuner is meant for (and no oversubscription next to numpy).
    torch.set_num_threads(1)
    try:
        params = {}
        quantizers = {}
        by_name = {plan.name: plan for plan in plans}
        for layer in model.compute_layers:
            weight = torch.tensor(np.asarray(layer.weight, dtype=np.float32), requires_grad=True)
            bias_init = (np.zeros(layer.weight.shape[0], np.float32) if layer.bias is None
                         else np.asarray(layer.bias, dtype=np.float32))
            bias = torch.tensor(bias_init, requires_grad=True)
            params[layer.name] = (weight, bias)
            width, lsb, scale = _block_grid(by_name[layer.name], block_bits[layer.name])
            quantizers[layer.name] = _make_quantizer(torch, width, lsb, scale)
        x_all = torch.tensor(np.asarray(calib_x, dtype=np.float32))
        with torch.no_grad():
            teacher = _forward(torch, model, params, x_all, None).detach()
        optimizer = torch.optim.Adam([p for pair in params.values() for p in pair],
                                     lr=learning_rate)
        generator = torch.Generator().manual_seed(seed)
        for _ in range(int(epochs)):
            order = torch.randperm(len(x_all), generator=generator)
            for start in range(0, len(x_all), batch_size):
                index = order[start:start + batch_size]
                output = _forward(torch, model, params, x_all[index], quantizers)
                loss = torch.mean((output - teacher[index]) ** 2)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    finally:
        torch.use_deterministic_algorithms(previous)
        torch.set_num_threads(previous_threads)
    layers: list[Layer] = []
    for layer in model.layers:
        if layer.is_compute:
            weight, bias = params[layer.name]
            layer = dataclasses.replace(
                layer, weight=weight.detach().numpy().astype(np.float32),
                bias=bias.detach().numpy().astype(np.float32))
        layers.append(layer)
    return dataclasses.replace(model, layers=layers)


def _make_quantizer(torch, width: np.ndarray, lsb: np.ndarray, scale: np.ndarray):
    """Fake-quantize weights onto the fixed block grid, straight-through gradient."""
    width_t = torch.tensor(width, dtype=torch.float32)
    step = torch.tensor(np.left_shift(1, lsb).astype(np.float32))
    top = torch.tensor(((1 << np.maximum(width - 1, 0)) - 1).astype(np.float32))
    scale_t = torch.tensor(scale.astype(np.float32))

    def quantizer(weight):
        ratio = weight.abs() / scale_t
        magnitude = torch.minimum(torch.round(ratio / step), top) * step
        magnitude = torch.where(width_t == 1, step, magnitude)
        magnitude = torch.where(width_t == 0, torch.zeros_like(magnitude), magnitude)
        sign = torch.where(weight < 0, -1.0, 1.0)
        quantized = sign * magnitude * scale_t
        return weight + (quantized - weight).detach()

    return quantizer
