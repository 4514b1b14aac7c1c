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
from pathlib import Path

import torch
from torch import nn
from training_common import (
    MODELS_DIR, OPSET, check_and_save, conv_bn, export_onnx, ops_line, replace_section,
    setup_determinism, train,
)

from bitline.sw.datasets import load_digits

SEED = 0
EPOCHS = 60
PEAK_LR = 3e-3
WEIGHT_DECAY = 1e-2
BATCH_SIZE = 64

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


class DigitsResNet(nn.Module):
    """Small residual net: stem, identity block, strided block with 1x1 shortcut, GAP, FC."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_bn(1, 16, 3)
        self.block1_a = conv_bn(16, 16, 3)
        self.block1_b = conv_bn(16, 16, 3)
        self.block2_a = conv_bn(16, 32, 3, stride=2)
        self.block2_b = conv_bn(32, 32, 3)
        self.block2_shortcut = conv_bn(16, 32, 1, stride=2)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.stem(x))
        x = self.relu(self.block1_b(self.relu(self.block1_a(x))) + x)
        x = self.relu(self.block2_b(self.relu(self.block2_a(x))) + self.block2_shortcut(x))
        return self.fc(torch.flatten(self.pool(x), 1))


def write_readme(results: dict[str, dict]) -> None:
    """Rewrite the ``digits`` section of ``sw/models/README.md`` (other sections stay)."""
    cnn, resnet = results["digits_cnn"], results["digits_resnet"]
    text = f"""## digits-cnn, digits-resnet (8x8 digits)

Two small classifiers for scikit-learn's bundled 8x8 `digits` set. Both take an input named
`input` of shape `(batch, 1, 8, 8)` (float32, pixels scaled to [0, 1]) and return `logits`
of shape `(batch, 10)`; ONNX opset {OPSET}, dynamic batch dimension.

Data split (`bitline.sw.datasets.load_digits`): a fixed stratified split seeded with
`np.random.default_rng(0)`: 45 test images per class (450 test), the other 1347 train;
`calib` is the first 256 train images.

| file | architecture | ONNX ops | parameters | test accuracy (onnxruntime) |
|---|---|---|---|---|
| `digits_cnn.onnx` | Conv 1→16 3x3 p1, ReLU; Conv 16→32 3x3 p1, ReLU; MaxPool 2x2/2; Conv 32→32 3x3 p1, ReLU; MaxPool 2x2/2; Flatten (128); Gemm 128→64, ReLU; Gemm 64→10 | {ops_line(cnn["proto"])} | {cnn["parameters"]} | {cnn["onnx_accuracy"]:.2%} |
| `digits_resnet.onnx` | stem Conv 1→16 3x3 + BN + ReLU; block1: Conv 16→16 3x3 + BN + ReLU, Conv 16→16 3x3 + BN, Add identity, ReLU; block2: Conv 16→32 3x3 s2 + BN + ReLU, Conv 32→32 3x3 + BN, shortcut Conv 16→32 1x1 s2 + BN, Add, ReLU; GlobalAveragePool; Flatten; Gemm 32→10 | {ops_line(resnet["proto"])} | {resnet["parameters"]} | {resnet["onnx_accuracy"]:.2%} |

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
    replace_section("digits", text)


def main(argv: list[str] | None = None) -> None:
    """Train both models, export them, check them with onnxruntime and write the README."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=MODELS_DIR,
                        help="folder for the ONNX files (default: sw/models)")
    args = parser.parse_args(argv)

    setup_determinism()
    splits = {split: load_digits(split) for split in ("train", "test")}
    recipes = {
        "digits_cnn": (DigitsCNN, False),
        "digits_resnet": (DigitsResNet, True),
    }
    results = {}
    for name, (factory, keep_batchnorm) in recipes.items():
        torch.manual_seed(SEED)
        model = train(factory(), *splits["train"], epochs=EPOCHS, lr=PEAK_LR,
                      weight_decay=WEIGHT_DECAY, seed=SEED, batch_size=BATCH_SIZE)
        proto = export_onnx(model, name, input_shape=(1, 8, 8), allowed_ops=ALLOWED_OPS[name],
                            keep_batchnorm=keep_batchnorm,
                            producer="bitline scripts/train_digits.py")
        path = args.out / f"{name}.onnx"
        result = results[name] = check_and_save(model, proto, path, splits)
        print(f"{name}: train {result['train_accuracy']:.4f}  test (torch) "
              f"{result['torch_accuracy']:.4f}  test (onnxruntime) "
              f"{result['onnx_accuracy']:.4f}  {result['bytes']} bytes  "
              f"[{ops_line(proto)}]")
    if args.out.resolve() == MODELS_DIR:
        write_readme(results)


if __name__ == "__main__":
    main()
