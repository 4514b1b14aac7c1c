"""Built-in models: trained digits / MNIST networks shipped as package data, synthetic CIFAR nets.

A command that takes a ``MODEL`` argument accepts a builtin name (:data:`BUILTIN_MODELS`) or
the path of an ``.onnx`` file; :func:`resolve_model` turns either into the IR.

* ``digits-cnn``, ``digits-resnet`` — small networks trained on scikit-learn's 8x8 digits,
  stored as ``digits_cnn.onnx`` / ``digits_resnet.onnx`` in this package.
* ``mnist-lenet5``, ``mnist-resnet`` — LeNet-5 and a small residual CNN trained on the
  bundled 5,000-image MNIST subset (``mnist5k``), stored as ``mnist_lenet5.onnx`` /
  ``mnist_resnet.onnx`` (trained by ``scripts/train_mnist.py``).
* ``resnet18-cifar``, ``vgg16``, ``mobilenetv2`` — generated on demand by
  :mod:`bitline.sw.models.synthetic` with seeded synthetic weights (performance work only).
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import onnx

from bitline.sw.frontend.ir import Model
from bitline.sw.frontend.onnx_import import load_onnx
from bitline.sw.models import synthetic

__all__ = ["BUILTIN_MODELS", "BuiltinModel", "builtin_onnx", "resolve_model"]

#: The script that regenerates the package-data models of each data set.
_TRAINING_SCRIPTS = {"digits": "scripts/train_digits.py", "mnist5k": "scripts/train_mnist.py"}


@dataclass(frozen=True)
class BuiltinModel:
    """A model known by name: either a package-data file or a synthetic generator.

    ``dataset`` names the data set (:data:`bitline.sw.datasets.DATASETS`) the model was
    trained on; commands calibrate and evaluate on it when no ``--dataset`` is given.
    """

    name: str
    description: str
    file: str | None = None
    generator: Callable[[], onnx.ModelProto] | None = None
    dataset: str | None = None

    def onnx(self) -> onnx.ModelProto:
        """Return the ONNX model (read from package data or generated)."""
        if self.generator is not None:
            return self.generator()
        return onnx.load_from_string(self._resource().read_bytes())

    def load(self) -> Model:
        """Return the IR of the model (errors name the package-data file, if any)."""
        if self.generator is not None:
            model = load_onnx(self.generator(), name=self.name)
            model.source = f"<builtin {self.name}>"
            return model
        with importlib.resources.as_file(self._resource()) as path:
            return load_onnx(path, name=self.name)

    def _resource(self):
        resource = importlib.resources.files(__package__).joinpath(self.file)
        if not resource.is_file():
            raise ValueError(
                f"builtin model {self.name!r}: package data file {self.file} is missing from "
                f"{importlib.resources.files(__package__)} (reinstall bitline or regenerate it "
                f"with {_TRAINING_SCRIPTS.get(self.dataset, 'its training script')})"
            )
        return resource


#: name -> builtin model, in the order `bitline info --help` would list them.
BUILTIN_MODELS: dict[str, BuiltinModel] = {
    model.name: model
    for model in (
        BuiltinModel("digits-cnn", "3-conv CNN trained on the 8x8 digits (input 1x8x8)",
                     file="digits_cnn.onnx", dataset="digits"),
        BuiltinModel("digits-resnet", "small residual CNN trained on the 8x8 digits",
                     file="digits_resnet.onnx", dataset="digits"),
        BuiltinModel("mnist-lenet5", "LeNet-5 trained on 5,000 MNIST digits (input 1x28x28)",
                     file="mnist_lenet5.onnx", dataset="mnist5k"),
        BuiltinModel("mnist-resnet", "small residual CNN trained on 5,000 MNIST digits",
                     file="mnist_resnet.onnx", dataset="mnist5k"),
        BuiltinModel("resnet18-cifar", "ResNet-18 CIFAR variant, synthetic weights",
                     generator=synthetic.resnet18_cifar),
        BuiltinModel("vgg16", "VGG-16 (BN) CIFAR variant, synthetic weights",
                     generator=synthetic.vgg16),
        BuiltinModel("mobilenetv2", "MobileNetV2 CIFAR variant, synthetic weights",
                     generator=synthetic.mobilenetv2),
    )
}


def _unknown(name: str) -> ValueError:
    return ValueError(
        f"unknown model {name!r}: not a builtin ({', '.join(BUILTIN_MODELS)}) and not an "
        ".onnx file"
    )


def builtin_onnx(name: str) -> onnx.ModelProto:
    """Return the ONNX model of builtin ``name`` (``ValueError`` listing the builtins)."""
    if name not in BUILTIN_MODELS:
        raise _unknown(name)
    return BUILTIN_MODELS[name].onnx()


def resolve_model(name_or_path: str | Path) -> Model:
    """Return the IR of a builtin model name or of an ``.onnx`` file.

    Parameters
    ----------
    name_or_path:
        A key of :data:`BUILTIN_MODELS`, or a path to an ONNX file.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the builtins), a missing package-data file, or
        any :class:`~bitline.sw.frontend.onnx_import.FrontendError` of the import.
    """
    text = str(name_or_path)
    if not isinstance(name_or_path, Path) and text in BUILTIN_MODELS:
        return BUILTIN_MODELS[text].load()
    path = Path(text)
    if path.suffix.lower() == ".onnx" or path.is_file():
        return load_onnx(path)
    raise _unknown(text)
