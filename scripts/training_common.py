"""Pieces shared by the training scripts (``train_digits.py``, ``train_mnist.py``).

Deterministic training (AdamW, one-cycle schedule, random pixel shifts), ONNX export with
the importer's op subset checked and the onnxruntime cross-check of the export;
``replace_section`` (from ``readme_sections``) rewrites a script's own section of
``sw/models/README.md``. Imported by the scripts as ``from training_common import ...``
(``python scripts/x.py`` puts ``scripts/`` on ``sys.path``). Needs torch (the ``train``
extra) and onnxruntime.
"""

from __future__ import annotations

import io
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch
from readme_sections import replace_section  # noqa: F401  (re-exported for the scripts)
from torch import nn

OPSET = 13
THREADS = 2
MODELS_DIR = Path(__file__).resolve().parents[1] / "sw" / "models"


def setup_determinism(threads: int = THREADS) -> None:
    """Few CPU threads (the machine is shared) and deterministic torch algorithms.

    Results are reproducible for one torch version and thread count; a different thread
    count may change the float reduction order and so the trained weights.
    """
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)


def conv_bn(in_channels: int, out_channels: int, kernel: int, stride: int = 1) -> nn.Sequential:
    """Bias-free convolution (padding ``kernel // 2``) followed by BatchNorm."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2,
                  bias=False),
        nn.BatchNorm2d(out_channels),
    )


def shift_images(images: torch.Tensor, generator: torch.Generator,
                 max_shift: int = 1) -> torch.Tensor:
    """Shift each image by a random ``-max_shift..max_shift`` pixels per axis (zero fill)."""
    batch, _, height, width = images.shape
    m = max_shift
    padded = nn.functional.pad(images, (m, m, m, m))
    offsets = torch.randint(0, 2 * m + 1, (batch, 2), generator=generator)
    out = torch.empty_like(images)
    # One slice per offset (at most (2m+1)^2), not per image; the same result as shifting
    # each image by its own offset.
    for dy in range(2 * m + 1):
        for dx in range(2 * m + 1):
            members = torch.nonzero((offsets[:, 0] == dy) & (offsets[:, 1] == dx))[:, 0]
            if len(members):
                out[members] = padded[members, :, dy:dy + height, dx:dx + width]
    return out


def train(model: nn.Module, x: np.ndarray, y: np.ndarray, *, epochs: int, lr: float,
          weight_decay: float, seed: int, batch_size: int = 64,
          max_shift: int = 1) -> nn.Module:
    """Train ``model`` with AdamW, a one-cycle schedule and random pixel shifts.

    Returns the model in eval mode. Deterministic for a given seed and torch version once
    :func:`setup_determinism` has run.
    """
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.from_numpy(x)
    labels = torch.from_numpy(y)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * ((len(inputs) + batch_size - 1) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(inputs), generator=generator)
        for start in range(0, len(inputs), batch_size):
            batch = order[start:start + batch_size]
            optimizer.zero_grad()
            loss = loss_fn(model(shift_images(inputs[batch], generator, max_shift)),
                           labels[batch])
            loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval()


@torch.no_grad()
def torch_accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of ``model`` (eval mode) on ``(x, y)``."""
    logits = model.eval()(torch.from_numpy(x))
    return float((logits.argmax(1).numpy() == y).mean())


def _drop_identities(model: onnx.ModelProto) -> None:
    """Remove Identity nodes (the exporter aliases equal-valued initializers with them)."""
    graph = model.graph
    outputs = {output.name for output in graph.output}
    alias = {}
    for node in list(graph.node):
        if node.op_type == "Identity" and node.output[0] not in outputs:
            alias[node.output[0]] = node.input[0]
            graph.node.remove(node)
    for node in graph.node:
        for position, name in enumerate(node.input):
            while name in alias:
                name = alias[name]
            node.input[position] = name


def export_onnx(model: nn.Module, name: str, *, input_shape: tuple[int, ...],
                allowed_ops: set[str], keep_batchnorm: bool,
                producer: str) -> onnx.ModelProto:
    """Export ``model`` (eval mode, opset 13, dynamic batch) and check its op set.

    ``input_shape`` excludes the batch axis. The graph's input is ``input``, its output
    ``logits``. Raises ``RuntimeError`` for an op outside ``allowed_ops`` or for
    BatchNormalization folded away although ``keep_batchnorm`` asks to keep it.
    """
    model.eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The torch.export-based exporter needs onnxscript and targets opset >= 18; the
        # legacy TorchScript exporter is chosen on purpose, so its deprecation is noise.
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export")
        torch.onnx.export(
            model, (torch.zeros(1, *input_shape),), buffer,
            dynamo=False,
            opset_version=OPSET,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            # PRESERVE with an eval-mode model keeps BatchNormalization (in inference form)
            # instead of folding it into the conv: bitline's importer must fold it itself.
            # The exporter skips constant folding in PRESERVE mode anyway, so say so.
            training=(torch.onnx.TrainingMode.PRESERVE if keep_batchnorm
                      else torch.onnx.TrainingMode.EVAL),
            do_constant_folding=not keep_batchnorm,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    _drop_identities(proto)
    proto.graph.name = name
    proto.producer_name = producer
    onnx.checker.check_model(proto, full_check=True)
    ops = Counter(node.op_type for node in proto.graph.node)
    unexpected = set(ops) - allowed_ops
    if unexpected:
        raise RuntimeError(f"{name}: exported graph has unsupported ops {sorted(unexpected)}")
    if keep_batchnorm and not ops["BatchNormalization"]:
        raise RuntimeError(f"{name}: BatchNormalization was folded away by the exporter")
    return proto


def onnxruntime_logits(proto: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """Logits of an ONNX model run by onnxruntime (CPU, one thread) on the batch ``x``."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(
        proto.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    (logits,) = session.run(["logits"], {"input": x})
    return logits


def ops_line(proto: onnx.ModelProto) -> str:
    """``"Conv x3, Gemm x2, ..."``: the graph's op counts, sorted by op name."""
    ops = Counter(node.op_type for node in proto.graph.node)
    return ", ".join(f"{op} x{count}" for op, count in sorted(ops.items()))


def check_and_save(model: nn.Module, proto: onnx.ModelProto, path: Path,
                   splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict:
    """Save ``proto`` to ``path`` and cross-check it with onnxruntime against torch.

    ``splits`` maps ``"train"`` and ``"test"`` to ``(x, y)``. Returns ``proto``,
    ``parameters``, ``bytes``, ``train_accuracy``, ``torch_accuracy`` (test) and
    ``onnx_accuracy`` (test, onnxruntime). Raises ``RuntimeError`` if onnxruntime's logits
    differ from torch's.
    """
    onnx.save(proto, path)
    x_test, y_test = splits["test"]
    onnx_logits = onnxruntime_logits(proto, x_test)
    with torch.no_grad():
        torch_logits = model(torch.from_numpy(x_test)).numpy()
    if not np.allclose(onnx_logits, torch_logits, rtol=1e-4, atol=1e-4):
        raise RuntimeError(f"{path.name}: onnxruntime and torch logits differ")
    return dict(
        proto=proto,
        parameters=sum(p.numel() for p in model.parameters()),
        bytes=path.stat().st_size,
        train_accuracy=torch_accuracy(model, *splits["train"]),
        torch_accuracy=torch_accuracy(model, x_test, y_test),
        onnx_accuracy=float((onnx_logits.argmax(1) == y_test).mean()),
    )
