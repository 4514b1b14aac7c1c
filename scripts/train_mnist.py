"""Train LeNet-5 and a small ResNet on the bundled 5,000-image MNIST subset; export to ONNX.

Writes ``sw/models/mnist_lenet5.onnx`` (Conv, Relu, MaxPool, Flatten, Gemm) and
``sw/models/mnist_resnet.onnx`` (residual net with un-fused BatchNormalization and Add),
checks each exported file with onnxruntime on the ``"test"`` split of
:func:`bitline.sw.datasets.load_mnist5k`, and rewrites the ``mnist`` section of
``sw/models/README.md`` with the measured accuracies.

Needs the ``train`` extra (torch) and onnxruntime::

    pip install -e ".[dev,train]"
    python scripts/train_mnist.py

Training is deterministic (fixed seeds, deterministic algorithms, one CPU thread), so a
rerun with the same torch version reproduces the committed files' accuracies.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch import nn
from training_common import (
    MODELS_DIR, OPSET, check_and_save, conv_bn, export_onnx, ops_line, replace_section,
    setup_determinism, train,
)

from bitline.sw.datasets import load_mnist5k

SEED = 0
EPOCHS = 30
PEAK_LR = 3e-3
WEIGHT_DECAY = 1e-2
BATCH_SIZE = 64
MAX_SHIFT = 2
INPUT_SHAPE = (1, 28, 28)
THREADS = 1

#: ONNX ops each exported graph may contain (the importer's supported subset).
ALLOWED_OPS = {
    "mnist_lenet5": {"Conv", "Relu", "MaxPool", "Flatten", "Gemm"},
    "mnist_resnet": {
        "Conv", "BatchNormalization", "Relu", "Add", "GlobalAveragePool", "Flatten", "Gemm",
    },
}


class LeNet5(nn.Module):
    """LeNet-5 on 28x28 inputs: the first conv pads by 2 (as on LeNet's 32x32 input).

    Conv 1→6 5x5 p2, ReLU, MaxPool 2; Conv 6→16 5x5, ReLU, MaxPool 2; FC 400→120→84→10
    with ReLU (max-pooling and ReLU instead of the original's subsampling and tanh).
    """

    def __init__(self) -> None:
        super().__init__()
        # Named attributes (not nn.Sequential) so the ONNX layers read conv1, fc1, ...
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.pool1 = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.pool2 = nn.MaxPool2d(2, 2)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu(self.conv1(x)))
        x = self.pool2(self.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        return self.fc3(self.relu(self.fc2(self.relu(self.fc1(x)))))


class BasicBlock(nn.Module):
    """Two 3x3 conv+BN with a ReLU between; identity or 1x1 conv+BN shortcut; Add, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.a = conv_bn(in_channels, out_channels, 3, stride)
        self.b = conv_bn(out_channels, out_channels, 3)
        self.shortcut = (conv_bn(in_channels, out_channels, 1, stride)
                         if stride != 1 or in_channels != out_channels else nn.Identity())
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.b(self.relu(self.a(x))) + self.shortcut(x))


class MnistResNet(nn.Module):
    """Three-stage residual net for 28x28 inputs (16, 32, 64 channels).

    Stem Conv 1→16 3x3 s2 + BN + ReLU (14x14); stage 1: identity block 16; stage 2: block
    16→32 s2 (7x7); stage 3: block 32→64 s2 (4x4); GlobalAveragePool; FC 64→10.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_bn(1, 16, 3, stride=2)
        self.stage1 = BasicBlock(16, 16, 1)
        self.stage2 = BasicBlock(16, 32, 2)
        self.stage3 = BasicBlock(32, 64, 2)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage3(self.stage2(self.stage1(self.relu(self.stem(x)))))
        return self.fc(torch.flatten(self.pool(x), 1))


#: name -> (factory, keep BatchNormalization un-fused, architecture line of the README)
RECIPES = {
    "mnist_lenet5": (LeNet5, False,
                     "Conv 1→6 5x5 p2, ReLU; MaxPool 2x2/2; Conv 6→16 5x5, ReLU; MaxPool "
                     "2x2/2; Flatten (400); Gemm 400→120, ReLU; Gemm 120→84, ReLU; Gemm 84→10"),
    "mnist_resnet": (MnistResNet, True,
                     "stem Conv 1→16 3x3 s2 + BN + ReLU (14x14); stage 1: Conv 16→16 3x3 + BN "
                     "+ ReLU, Conv 16→16 3x3 + BN, Add identity, ReLU; stage 2: Conv 16→32 3x3 "
                     "s2 + BN + ReLU, Conv 32→32 3x3 + BN, shortcut Conv 16→32 1x1 s2 + BN, "
                     "Add, ReLU (7x7); stage 3: the same 32→64 (4x4); GlobalAveragePool; "
                     "Flatten; Gemm 64→10"),
}


def write_readme(results: dict[str, dict]) -> None:
    """Rewrite the ``mnist`` section of ``sw/models/README.md`` (other sections stay)."""
    rows = "\n".join(
        f"| `{name}.onnx` | {RECIPES[name][2]} | {ops_line(result['proto'])} | "
        f"{result['parameters']} | {result['bytes']} | {result['onnx_accuracy']:.2%} |"
        for name, result in results.items()
    )
    text = f"""## mnist-lenet5, mnist-resnet (28x28 MNIST subset)

Trained on the bundled 5,000-image MNIST subset (`mnist5k`, see *Data* above). Both take an
input named `input` of shape `(batch, 1, 28, 28)` (float32, pixels scaled to [0, 1]) and
return `logits` of shape `(batch, 10)`; ONNX opset {OPSET}, dynamic batch dimension. LeNet-5
takes the 28x28 image directly and pads its first conv by 2 (the classic 32x32 input).

Data split (`bitline.sw.datasets.load_mnist5k`): a fixed stratified split seeded with
`np.random.default_rng(0)`: 100 test images per class (1000 test), the other 4000 train;
`calib` is the first 256 train images.

| file | architecture | ONNX ops | parameters | bytes | test accuracy (onnxruntime) |
|---|---|---|---|---:|---|
{rows}

`mnist_resnet.onnx` keeps BatchNormalization un-fused like `digits_resnet.onnx`; its convs
have no bias.

Training: AdamW (peak learning rate {PEAK_LR:g}, weight decay {WEIGHT_DECAY:g}) with a
one-cycle schedule, {EPOCHS} epochs, batch {BATCH_SIZE}, random ±{MAX_SHIFT}-pixel shifts;
seed {SEED} (`torch.manual_seed`, deterministic algorithms, {THREADS} thread); trained with torch
{torch.__version__}.

Regenerate (needs `pip install -e ".[dev,train]"`):

    python scripts/train_mnist.py
"""
    replace_section("mnist", text)


def main(argv: list[str] | None = None) -> None:
    """Train both models, export them, check them with onnxruntime and write the README."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=MODELS_DIR,
                        help="folder for the ONNX files (default: sw/models)")
    parser.add_argument("--only", choices=sorted(RECIPES), action="append",
                        help="train only this model (repeatable; the README is then not "
                             "rewritten)")
    parser.add_argument("--epochs", type=int, default=EPOCHS,
                        help=f"training epochs (default {EPOCHS}; the README is rewritten "
                             "only with the default)")
    args = parser.parse_args(argv)

    # One thread: on the shared 2-core machine two threads spin-wait and run 20x slower.
    setup_determinism(threads=THREADS)
    splits = {split: load_mnist5k(split) for split in ("train", "test")}
    results = {}
    for name in args.only or RECIPES:
        factory, keep_batchnorm, _ = RECIPES[name]
        start = time.perf_counter()
        torch.manual_seed(SEED)
        model = train(factory(), *splits["train"], epochs=args.epochs, lr=PEAK_LR,
                      weight_decay=WEIGHT_DECAY, seed=SEED, batch_size=BATCH_SIZE,
                      max_shift=MAX_SHIFT)
        proto = export_onnx(model, name, input_shape=INPUT_SHAPE,
                            allowed_ops=ALLOWED_OPS[name], keep_batchnorm=keep_batchnorm,
                            producer="bitline scripts/train_mnist.py")
        result = results[name] = check_and_save(model, proto, args.out / f"{name}.onnx",
                                                splits)
        print(f"{name}: train {result['train_accuracy']:.4f}  test (torch) "
              f"{result['torch_accuracy']:.4f}  test (onnxruntime) "
              f"{result['onnx_accuracy']:.4f}  {result['parameters']} parameters  "
              f"{result['bytes']} bytes  {time.perf_counter() - start:.0f} s  "
              f"[{ops_line(proto)}]", flush=True)
    if args.out.resolve() == MODELS_DIR and not args.only and args.epochs == EPOCHS:
        write_readme(results)


if __name__ == "__main__":
    main()
