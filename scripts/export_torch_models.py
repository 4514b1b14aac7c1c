"""Export ordinary PyTorch CNNs to ONNX as the test fixtures of tests/fixtures/torch/.

Run with the training environment (torch is not part of the dev install)::

    /work/trainvenv/bin/python scripts/export_torch_models.py [--out tests/fixtures/torch]

Each architecture below is written the way PyTorch users write models (``x.view(x.size(0),
-1)``, ``x.mean([2, 3])``, ``F.relu6``, ``nn.Sequential`` blocks, a residual block, channel
concatenation, LeakyReLU / PReLU, explicit padding), small and randomly initialized with a
fixed seed (BatchNorm statistics are randomized too, so that BatchNorm is not an identity).
Every model is exported twice with ``torch.onnx.export``:

* ``<name>-opset18.onnx`` with the default exporter of the installed torch (the
  ``torch.export``-based one since torch 2.9; it needs ``onnxscript``), opset 18;
* ``<name>-opset13.onnx`` with the TorchScript exporter (``dynamo=False``) at opset 13,
  with a dynamic batch axis, which writes the ``Shape -> Gather -> Unsqueeze -> Concat ->
  Reshape`` chains of ``x.view(x.size(0), -1)``.

``<name>.npz`` holds a fixed input batch ``x`` (seeded) and PyTorch's output ``y`` for it
(eval mode), and ``manifest.json`` lists every file with the exporter, opset and the torch
version. The tests (tests/unit/test_torch_models.py) run without torch.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SEED = 0
BATCH = 2


class LeNet5(nn.Module):
    """LeNet-5 as in the PyTorch tutorials, with ``x.view(x.size(0), -1)``."""

    input_shape = (1, 28, 28)

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 32)
        self.fc2 = nn.Linear(32, 24)
        self.fc3 = nn.Linear(24, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.view(x.size(0), -1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class InvertedResidual(nn.Module):
    def __init__(self, c_in, c_out, stride, expand):
        super().__init__()
        hidden = c_in * expand
        self.use_res = stride == 1 and c_in == c_out
        self.expand = nn.Conv2d(c_in, hidden, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.dw = nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False)
        self.bn2 = nn.BatchNorm2d(hidden)
        self.project = nn.Conv2d(hidden, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)

    def forward(self, x):
        y = F.relu6(self.bn1(self.expand(x)))
        y = F.relu6(self.bn2(self.dw(y)))
        y = self.bn3(self.project(y))
        return x + y if self.use_res else y


class MobileNetV2Tiny(nn.Module):
    """MobileNetV2-style blocks: depthwise convs, ``F.relu6``, ``x.mean([2, 3])``."""

    input_shape = (3, 16, 16)

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, 2, 1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.blocks = nn.Sequential(InvertedResidual(8, 8, 1, 2), InvertedResidual(8, 12, 2, 2),
                                    InvertedResidual(12, 12, 1, 2))
        self.head = nn.Linear(12, 10)

    def forward(self, x):
        x = F.relu6(self.bn(self.stem(x)))
        x = self.blocks(x)
        x = x.mean([2, 3])
        return self.head(x)


def sequential_cnn() -> nn.Module:
    """An ``nn.Sequential`` CNN with BatchNorm, pooling, ``AdaptiveAvgPool2d`` and Flatten."""
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(16, 10),
    )
    net.input_shape = (3, 12, 12)
    return net


class BasicBlock(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                          nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNetTiny(nn.Module):
    """Residual blocks with an identity and a projection shortcut, ``torch.flatten``."""

    input_shape = (3, 12, 12)

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.layer1 = BasicBlock(8, 8, 1)
        self.layer2 = BasicBlock(8, 16, 2)
        self.pool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.pool(x), 1))


class InceptionTiny(nn.Module):
    """Inception / DenseNet-style channel concatenation (``torch.cat(..., 1)``)."""

    input_shape = (3, 12, 12)

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.b1 = nn.Conv2d(8, 4, 1)
        self.b3 = nn.Sequential(nn.Conv2d(8, 4, 1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1))
        self.bpool = nn.Conv2d(8, 4, 1)
        self.dense = nn.Conv2d(8 + 4 + 6 + 4, 8, 3, padding=1)
        self.fc = nn.Linear(8 + 8, 10)

    def forward(self, x):
        x = F.relu(self.stem(x))
        branches = [F.relu(self.b1(x)), F.relu(self.b3(x)),
                    F.relu(self.bpool(F.max_pool2d(x, 3, 1, 1)))]
        y = torch.cat([x, *branches], 1)                 # DenseNet: keep the input
        y = F.relu(self.dense(y))
        y = torch.cat([x, y], dim=1)
        y = F.adaptive_avg_pool2d(y, 1).view(y.size(0), -1)
        return self.fc(y)


class LeakyNet(nn.Module):
    """LeakyReLU and PReLU (per channel) activations."""

    input_shape = (3, 12, 12)

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 12, 3, stride=2, padding=1)
        self.prelu = nn.PReLU(12, init=0.2)
        self.fc1 = nn.Linear(12 * 6 * 6, 16)
        self.act = nn.PReLU()                            # one shared slope
        self.fc2 = nn.Linear(16, 10)

    def forward(self, x):
        x = F.leaky_relu(self.conv1(x), 0.1)
        x = self.prelu(self.conv2(x))
        x = self.act(self.fc1(x.reshape(x.shape[0], -1)))
        return self.fc2(x)


class PadNet(nn.Module):
    """Input normalization, explicit padding (``F.pad``, ``nn.ZeroPad2d``), a final softmax."""

    input_shape = (3, 12, 12)

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.conv1 = nn.Conv2d(3, 8, 3)
        self.pad = nn.ZeroPad2d((1, 2, 1, 2))
        self.conv2 = nn.Conv2d(8, 8, 3, stride=2)
        self.fc = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x):
        x = (x - self.mean) / self.std
        x = F.relu(self.conv1(F.pad(x, (1, 1, 1, 1))))
        x = F.relu(self.conv2(self.pad(x)))
        x = F.max_pool2d(F.pad(x, (0, 1, 0, 1)), 2)
        x = self.fc(torch.flatten(x, 1)) * 0.5
        return F.log_softmax(x, dim=1)


MODELS = {
    "lenet5": LeNet5,
    "mobilenetv2-tiny": MobileNetV2Tiny,
    "sequential-cnn": sequential_cnn,
    "resnet-tiny": ResNetTiny,
    "inception-tiny": InceptionTiny,
    "leaky-net": LeakyNet,
    "pad-net": PadNet,
}


def build(name: str) -> nn.Module:
    """Return model ``name`` with seeded weights and randomized BatchNorm statistics."""
    torch.manual_seed(SEED)
    model = MODELS[name]()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return model.eval()


def export(model: nn.Module, x: torch.Tensor, path: Path, opset: int) -> str:
    """Export ``model``; return the exporter used (``"dynamo"`` or ``"torchscript"``)."""
    if opset >= 18:
        torch.onnx.export(model, (x,), str(path), opset_version=opset, input_names=["x"],
                          output_names=["y"], external_data=False)
        return "dynamo"
    torch.onnx.export(model, (x,), str(path), opset_version=opset, dynamo=False,
                      input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    return "torchscript"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).resolve().parents[1] / "tests/fixtures/torch")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    entries = []
    for name in MODELS:
        model = build(name)
        rng = np.random.default_rng(SEED)
        x = rng.standard_normal((BATCH, *model.input_shape)).astype(np.float32)
        with torch.no_grad():
            y = model(torch.from_numpy(x)).numpy()
        np.savez_compressed(args.out / f"{name}.npz", x=x, y=y)
        for opset in (13, 18):
            path = args.out / f"{name}-opset{opset}.onnx"
            # The torch.export-based exporter traces batch 1 (static shapes); the
            # TorchScript one keeps the batch axis dynamic.
            exporter = export(model, torch.from_numpy(x[:1]), path, opset)
            entries.append({"file": path.name, "model": name, "opset": opset,
                            "exporter": exporter, "reference": f"{name}.npz"})
            print(f"{path.name}: {exporter}, {path.stat().st_size} bytes")
    manifest = {"torch": torch.__version__, "seed": SEED, "batch": BATCH, "files": entries}
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    main()
