"""Train the two reference models on the digits set and export them to ONNX.

Writes ``sw/models/digits_cnn.onnx`` (plain CNN: Conv, Relu, MaxPool, Flatten, Gemm) and
``sw/models/digits_resnet.onnx`` (residual net with un-fused BatchNormalization and Add,
so that bitline's importer exercises BN folding), checks each exported file with
onnxruntime on the ``"test"`` split, and writes ``sw/models/README.md`` with the measured
accuracies.

Needs the ``train`` and ``dev`` extras (torch, onnxruntime, scikit-learn)::

    pip install -e ".[dev,train]"
    python scripts/train_digits.py

Training is deterministic (fixed seeds, deterministic algorithms, two CPU threads), so a
rerun with the same torch version reproduces the committed files' accuracies.
"""

from __future__ import annotations

import argparse
import io
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch
from torch import nn

from bitline.sw.datasets import load_digits

SEED = 0
OPSET = 13
EPOCHS = 60
PEAK_LR = 3e-3
WEIGHT_DECAY = 1e-2
BATCH_SIZE = 64
MODELS_DIR = Path(__file__).resolve().parents[1] / "sw" / "models"

#: ONNX ops each exported graph may contain (the importer's supported subset).
ALLOWED_OPS = {
    "digits_cnn": {"Conv", "Relu", "MaxPool", "Flatten", "Gemm"},
    "digits_resnet": {
        "Conv", "BatchNormalization", "Relu", "Add", "GlobalAveragePool", "Flatten", "Gemm",
    },
}


class DigitsCNN(nn.Module):
    """Plain CNN: 3 convs, 2 max-pools, 2 fully connected layers (about 23 k weights)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2, 2),
        )
        self.classifier = nn.Sequential(
            nn.Linear(32 * 2 * 2, 64), nn.ReLU(),
            nn.Linear(64, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def _conv_bn(in_channels: int, out_channels: int, kernel: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2,
                  bias=False),
        nn.BatchNorm2d(out_channels),
    )


class DigitsResNet(nn.Module):
    """Small residual net: stem, identity block, strided block with 1x1 shortcut, GAP, FC."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = _conv_bn(1, 16, 3)
        self.block1_a = _conv_bn(16, 16, 3)
        self.block1_b = _conv_bn(16, 16, 3)
        self.block2_a = _conv_bn(16, 32, 3, stride=2)
        self.block2_b = _conv_bn(32, 32, 3)
        self.block2_shortcut = _conv_bn(16, 32, 1, stride=2)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.stem(x))
        x = self.relu(self.block1_b(self.relu(self.block1_a(x))) + x)
        x = self.relu(self.block2_b(self.relu(self.block2_a(x))) + self.block2_shortcut(x))
        return self.fc(torch.flatten(self.pool(x), 1))


def shift_images(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Shift each image by a random -1, 0 or +1 pixel in each direction (zero fill)."""
    batch, _, height, width = images.shape
    padded = nn.functional.pad(images, (1, 1, 1, 1))
    offsets = torch.randint(0, 3, (batch, 2), generator=generator)
    out = torch.empty_like(images)
    for index in range(batch):
        dy, dx = offsets[index].tolist()
        out[index] = padded[index, :, dy:dy + height, dx:dx + width]
    return out


def train(model: nn.Module, x: np.ndarray, y: np.ndarray, *, epochs: int, lr: float,
          weight_decay: float, seed: int) -> nn.Module:
    """Train ``model`` with AdamW, a cosine schedule and random 1-pixel shifts."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.from_numpy(x)
    labels = torch.from_numpy(y)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    batch_size = BATCH_SIZE
    steps = epochs * ((len(inputs) + batch_size - 1) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(inputs), generator=generator)
        for start in range(0, len(inputs), batch_size):
            batch = order[start:start + batch_size]
            optimizer.zero_grad()
            loss = loss_fn(model(shift_images(inputs[batch], generator)), labels[batch])
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


def export_onnx(model: nn.Module, name: str, *, keep_batchnorm: bool) -> onnx.ModelProto:
    """Export ``model`` (eval mode, opset 13, dynamic batch) and check its op set."""
    model.eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The torch.export-based exporter needs onnxscript and targets opset >= 18; the
        # legacy TorchScript exporter is chosen on purpose, so its deprecation is noise.
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export")
        torch.onnx.export(
            model, (torch.zeros(1, 1, 8, 8),), buffer,
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
    proto.producer_name = "bitline scripts/train_digits.py"
    onnx.checker.check_model(proto, full_check=True)
    ops = Counter(node.op_type for node in proto.graph.node)
    unexpected = set(ops) - ALLOWED_OPS[name]
    if unexpected:
        raise RuntimeError(f"{name}: exported graph has unsupported ops {sorted(unexpected)}")
    if keep_batchnorm and not ops["BatchNormalization"]:
        raise RuntimeError(f"{name}: BatchNormalization was folded away by the exporter")
    return proto


def onnxruntime_logits(proto: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """Logits of an ONNX model run by onnxruntime (CPU) on the batch ``x``."""
    session = onnxruntime.InferenceSession(
        proto.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    (logits,) = session.run(["logits"], {"input": x})
    return logits


def _ops_line(proto: onnx.ModelProto) -> str:
    ops = Counter(node.op_type for node in proto.graph.node)
    return ", ".join(f"{op} x{count}" for op, count in sorted(ops.items()))


def write_readme(results: dict[str, dict]) -> None:
    """Write ``sw/models/README.md`` describing the committed models."""
    cnn, resnet = results["digits_cnn"], results["digits_resnet"]
    text = f"""# Reference models

Two small classifiers for scikit-learn's bundled 8x8 `digits` set, used as end-to-end
workloads for the compiler, the golden models and the hardware. Both take an input named
`input` of shape `(batch, 1, 8, 8)` (float32, pixels scaled to [0, 1]) and return `logits`
of shape `(batch, 10)`; ONNX opset {OPSET}, dynamic batch dimension.

Data split (`bitline.sw.datasets.load_digits`): a fixed stratified split seeded with
`np.random.default_rng(0)`: 45 test images per class (450 test), the other 1347 train;
`calib` is the first 256 train images.

| file | architecture | ONNX ops | parameters | test accuracy (onnxruntime) |
|---|---|---|---|---|
| `digits_cnn.onnx` | Conv 1→16 3x3 p1, ReLU; Conv 16→32 3x3 p1, ReLU; MaxPool 2x2/2; Conv 32→32 3x3 p1, ReLU; MaxPool 2x2/2; Flatten (128); Gemm 128→64, ReLU; Gemm 64→10 | {_ops_line(cnn["proto"])} | {cnn["parameters"]} | {cnn["onnx_accuracy"]:.2%} |
| `digits_resnet.onnx` | stem Conv 1→16 3x3 + BN + ReLU; block1: Conv 16→16 3x3 + BN + ReLU, Conv 16→16 3x3 + BN, Add identity, ReLU; block2: Conv 16→32 3x3 s2 + BN + ReLU, Conv 32→32 3x3 + BN, shortcut Conv 16→32 1x1 s2 + BN, Add, ReLU; GlobalAveragePool; Flatten; Gemm 32→10 | {_ops_line(resnet["proto"])} | {resnet["parameters"]} | {resnet["onnx_accuracy"]:.2%} |

`digits_resnet.onnx` keeps its BatchNormalization nodes un-fused (exported with
`training=TrainingMode.PRESERVE` from an eval-mode model) so that the importer's BN folding
is exercised; its convs have no bias. The two BatchNormalization nodes that feed block 2's
Add read the same bias initializer: both biases start at zero and get the same gradient, so
they stay equal and the exporter stores the tensor once (valid ONNX; importers must look
initializers up by name, not consume them).

Training: AdamW (peak learning rate {PEAK_LR:g}, weight decay {WEIGHT_DECAY:g} to keep weights
moderate for low-bit quantization) with a one-cycle schedule, {EPOCHS} epochs, batch
{BATCH_SIZE}, random ±1-pixel shifts; seed {SEED}
(`torch.manual_seed`, deterministic algorithms, 2 threads); trained with torch
{torch.__version__}.

Regenerate (needs `pip install -e ".[dev,train]"`):

    python scripts/train_digits.py
"""
    (MODELS_DIR / "README.md").write_text(text)


def main(argv: list[str] | None = None) -> None:
    """Train both models, export them, check them with onnxruntime and write the README."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=MODELS_DIR,
                        help="folder for the ONNX files (default: sw/models)")
    args = parser.parse_args(argv)

    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    x_train, y_train = load_digits("train")
    x_test, y_test = load_digits("test")

    recipes = {
        "digits_cnn": (DigitsCNN, False),
        "digits_resnet": (DigitsResNet, True),
    }
    results = {}
    for name, (factory, keep_batchnorm) in recipes.items():
        torch.manual_seed(SEED)
        model = train(factory(), x_train, y_train, epochs=EPOCHS, lr=PEAK_LR,
                      weight_decay=WEIGHT_DECAY, seed=SEED)
        proto = export_onnx(model, name, keep_batchnorm=keep_batchnorm)
        path = args.out / f"{name}.onnx"
        onnx.save(proto, path)
        result = dict(
            proto=proto,
            parameters=sum(p.numel() for p in model.parameters()),
            train_accuracy=torch_accuracy(model, x_train, y_train),
            torch_accuracy=torch_accuracy(model, x_test, y_test),
        )
        onnx_logits = onnxruntime_logits(proto, x_test)
        with torch.no_grad():
            torch_logits = model(torch.from_numpy(x_test)).numpy()
        if not np.allclose(onnx_logits, torch_logits, rtol=1e-4, atol=1e-4):
            raise RuntimeError(f"{name}: onnxruntime and torch logits differ")
        result["onnx_accuracy"] = float((onnx_logits.argmax(1) == y_test).mean())
        results[name] = result
        print(f"{name}: train {result['train_accuracy']:.4f}  test (torch) "
              f"{result['torch_accuracy']:.4f}  test (onnxruntime) "
              f"{result['onnx_accuracy']:.4f}  {path.stat().st_size} bytes  "
              f"[{_ops_line(proto)}]")
    if args.out.resolve() == MODELS_DIR:
        write_readme(results)


if __name__ == "__main__":
    main()
