"""The Python API: the whole bitline flow in a few calls (README, "Python API").

::

    from bitline.sw import api

    model = api.load("digits-cnn")                 # builtin, .onnx path, ModelProto or bytes
    compiled = api.compile(model, "bwq", spec="bwq3", config="bwq")
    y = compiled.run(x, backend="executor")        # or "golden", "float"
    report = compiled.report()                     # the performance report as a dict

The functions are the library halves the ``bitline`` commands call (:mod:`bitline.sw.flow`):
:func:`compile` is the compile flow of ``bitline compile`` (size the hardware, quantize, map,
validate; :meth:`Compiled.save` writes the same bundle), :meth:`Compiled.report` is
``bitline report --json``, :meth:`Compiled.run` the backends of ``bitline run``. A model read
from an already-quantized file (QDQ / QONNX) keeps its quantization unless ``requantize``.

Layering: this module is the programmatic face of the commands and sits where ``sw/cli``
sits: it imports ``bitline.sim`` (golden model, executor) only inside the functions that run a
simulation, never at module level (``tests/unit/test_layering.py`` allows exactly that).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bitline.hw.spec.config import AcceleratorConfig
from bitline.sw.frontend.ir import Model

__all__ = ["load", "from_torch", "dataset", "quantize", "compile", "Compiled", "RUN_BACKENDS"]

#: Backends of :meth:`Compiled.run`: the float model (fake-quant for a quantized file), the
#: integer golden model and the crossbar-level executor of the mapped program.
RUN_BACKENDS = ("float", "golden", "executor")


def load(model, *, name: str | None = None) -> Model:
    """Return the float IR of ``model``.

    Parameters
    ----------
    model:
        A builtin name (``digits-cnn``, ``resnet18-cifar``, ...; ``bitline models``), a path
        to an ``.onnx`` file, an ``onnx.ModelProto`` or the bytes of one, or an IR
        :class:`~bitline.sw.frontend.ir.Model` (returned as it is).
    name:
        Model name for a ``ModelProto`` / bytes (default: the graph name).

    Raises
    ------
    ValueError
        For an unknown name or any front-end error (naming file, node and op).
    """
    if isinstance(model, Model):
        return model
    if isinstance(model, (str, Path)):
        from bitline.sw.models import resolve_model

        return resolve_model(model)
    from bitline.sw.frontend.onnx_import import load_onnx

    return load_onnx(model, name=name)


def from_torch(module, example_input, *, name: str | None = None, opset: int | None = None,
               dynamo: bool = False, path: str | Path | None = None) -> Model:
    """Export a PyTorch ``module`` with ``torch.onnx.export`` and load the result.

    The module is put in ``eval()`` mode and exported on ``example_input`` (one sample with a
    batch axis, e.g. ``torch.zeros(1, 1, 8, 8)``).

    Parameters
    ----------
    opset:
        ONNX opset (default 17 for the TorchScript exporter, 18 for ``dynamo``).
    dynamo:
        ``False`` (default): the TorchScript exporter, batch axis exported dynamic;
        ``True``: the ``torch.export``-based exporter (needs ``onnxscript``, opset >= 18),
        batch fixed to the example's.
    path:
        Where to keep the ``.onnx`` file (default: a temporary file, deleted after loading).

    Raises
    ------
    ImportError
        When PyTorch is not installed (it is in the ``train`` extra:
        ``pip install 'bitline[train]'``).
    ValueError
        Any front-end error of the exported graph.
    """
    try:
        import torch
    except ImportError:
        raise ImportError("from_torch needs PyTorch: install the 'train' extra "
                          "(pip install 'bitline[train]')") from None
    import tempfile

    from bitline.sw.frontend.onnx_import import load_onnx

    module = module.eval()
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(path) if path is not None else Path(tmp) / "model.onnx"
        with torch.no_grad():
            if dynamo:
                torch.onnx.export(module, (example_input,), str(target),
                                  opset_version=opset or 18, input_names=["input"],
                                  output_names=["output"], dynamo=True, external_data=False)
            else:
                torch.onnx.export(module, (example_input,), str(target),
                                  opset_version=opset or 17, input_names=["input"],
                                  output_names=["output"], dynamo=False,
                                  dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
        try:
            return load_onnx(target, name=name or type(module).__name__)
        except ValueError as error:
            if path is not None:
                raise
            # The temporary file the message names is gone when the user reads it.
            raise type(error)(f"{type(module).__name__} exported by torch.onnx.export: "
                              f"{error} (pass path=... to keep the exported file)") from None


def dataset(name: str, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """Return ``(x, y)`` of a bundled data set (``digits``, ``mnist5k``; splits ``calib``,
    ``test``)."""
    from bitline.sw.datasets import load_dataset

    return load_dataset(name, split)


def _config(config) -> AcceleratorConfig:
    """An :class:`AcceleratorConfig`, a preset name, a TOML path, or ``None`` (preset bwq)."""
    from bitline.hw.spec.config import PRESETS
    from bitline.sw.flow import load_config

    if isinstance(config, AcceleratorConfig):
        return config
    if config is None or (isinstance(config, str) and config in PRESETS):
        return load_config(None, config)
    return load_config(config, None)


def _calibration(model: Model, calib) -> np.ndarray:
    """Calibration inputs: an array, a data set name, or ``None`` (the model's own data set
    for the builtins, else seeded random inputs; :func:`bitline.sw.flow.calibration_inputs`)."""
    from bitline.sw.flow import calibration_inputs

    if calib is None or isinstance(calib, str):
        return calibration_inputs(model, calib)[0]
    return np.asarray(calib, dtype=np.float32)


def quantize(model, spec=None, *, calib=None, config=None, requantize: bool = False):
    """Quantize ``model`` (compile step 4); return a
    :class:`~bitline.sw.integer.qmodel.QuantizedModel`.

    ``spec`` is a spec file, shorthand (``int8``, ``varied4``, ``bwq3``, ...) or dict; ``None``
    is ``int8`` for a float model and the file's own quantization for an already-quantized
    one (a ``spec`` with such a model needs ``requantize=True``:
    :func:`bitline.sw.flow.resolve_spec`). ``calib`` as in :func:`compile`.
    """
    from bitline.sw.flow import quantize as quantize_step
    from bitline.sw.flow import resolve_spec

    model, spec = resolve_spec(load(model), spec, requantize)
    calib_x = None if spec is None else _calibration(model, calib)
    return quantize_step(model, spec, calib_x, _config(config))


@dataclass
class Compiled:
    """A compiled model: the quantized model, the OU program and the config it runs on."""

    model: Model
    qmodel: object
    program: object
    config: AcceleratorConfig
    sizing: tuple = ()

    def report(self, *, costs=None) -> dict:
        """The performance report as a dict (``bitline report --json``): ``totals``
        (crossbars, OU reads, ADC conversions, cycles, latency, energy, ...), ``layers``,
        ``energy_pj``, ``area_mm2``, ``config``."""
        from bitline.sw.perf import analyze

        kwargs = {} if costs is None else {"costs": costs}
        return analyze(self.program, self.qmodel, **kwargs).to_dict()

    def run(self, x, backend: str = "executor", *, strict: bool = False) -> np.ndarray:
        """Run a float batch ``(N, *input_shape)`` on ``backend`` (:data:`RUN_BACKENDS`);
        return the model output (float: logits as the model computes them).

        ``x`` is checked as ``bitline run`` checks it
        (:func:`~bitline.sw.flow.inputs.check_input`: real numeric, the model's shape or one
        sample, finite; ``ValueError`` otherwise). Values outside the calibrated input range
        are clamped (golden, executor) with an
        :class:`~bitline.sw.flow.inputs.InputClampWarning` giving the count, or with
        ``strict`` refused (``ValueError``)."""
        from bitline.sw.flow.inputs import check_input, count_clamped

        x = check_input(x, tuple(self.model.input_shape), "x")
        # The float backend does not quantize its input: nothing is clamped there.
        clamped = (count_clamped(x, self.qmodel.input)
                   if self.qmodel.input is not None and backend != "float" else 0)
        if clamped:
            import warnings

            from bitline.sw.flow.inputs import InputClampWarning, InputError, input_range

            lo, hi = input_range(self.qmodel.input)
            message = (f"x: {clamped} of {x.size} input values lie outside the calibrated "
                       f"input range [{lo:.6g}, {hi:.6g}] and are clamped to it")
            if strict:
                raise InputError(f"{message} (strict: refused)")
            warnings.warn(message, InputClampWarning, stacklevel=2)
        if backend == "float":
            from bitline.sw.frontend.qdq import run_fake_quant

            return run_fake_quant(self.model, x)
        if backend == "golden":
            from bitline.sim.golden import run_golden

            return np.asarray(run_golden(self.qmodel, x).output)
        if backend == "executor":
            from bitline.sim.executor import run_executor

            return np.asarray(run_executor(self.program, self.qmodel, x).output)
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(RUN_BACKENDS)}")

    def save(self, path: str | Path) -> Path:
        """Write the program bundle (``image.bin``, ``manifest.json``, ``reference.npz``) to
        the directory ``path``; ``bitline run PATH`` and the hardware flow read it."""
        from bitline.sw.bundle import write_bundle

        write_bundle(Path(path), self.program, self.qmodel)
        return Path(path)


def compile(model, strategy: str = "bwq", *, spec=None, config=None, calib=None,  # noqa: A001
            xbars: str | int = "auto", encoding: str = "differential",
            requantize: bool = False, network: bool = False,
            pipeline: bool = False, replicate: dict | None = None,
            budget: str | None = None) -> Compiled:
    """Quantize ``model`` and map it with ``strategy`` (``bitline compile`` without writing).

    Parameters
    ----------
    model:
        Anything :func:`load` takes.
    strategy:
        ``isaac``, ``ivq-naive``, ``ivq-spatial``, ``ivq-temporal`` or ``bwq``.
    spec, requantize:
        As in :func:`quantize`.
    config:
        An :class:`~bitline.hw.spec.config.AcceleratorConfig`, a preset name (``bwq``,
        ``isaac``, ...) or a TOML file; default the ``bwq`` preset.
    calib:
        Calibration inputs: an array ``(N, *input_shape)``, a data set name, or ``None``
        (the builtin model's data set, else seeded random inputs).
    xbars, encoding:
        As ``--xbars`` (``"auto"`` sizes the machine to the network) and ``--encoding``.
    network:
        As ``--network``: the program gets the whole-network nodes (``program.nodes``,
        the image's NETWORK section) and the config its whole-network fields
        (docs/network.md).
    pipeline:
        As ``--pipeline`` (with ``network``): the nodes run on ``pipeline_stages`` stage
        engines, successive images at once, the buffer laid out with copies
        (docs/network.md section 6).
    replicate, budget:
        As ``--replicate NAME=R,...`` (``{"conv2": 2}``) and ``--budget xbars:N`` with
        ``pipeline``: layer replicas on fresh units taking turns by image
        (docs/network.md section 7).

    Raises
    ------
    ValueError
        From any step, naming what is wrong (unknown strategy, bad spec, a network that
        fits no config, ...).
    """
    from bitline.sw.flow import compile_model, resolve_spec

    model, spec = resolve_spec(load(model), spec, requantize)
    calib_x = _calibration(model, calib)
    result = compile_model(model, strategy, spec, _config(config), calib_x, xbars=xbars,
                           encoding=encoding, network=network, pipeline=pipeline,
                           replicate=replicate, budget=budget)
    return Compiled(model, result.qmodel, result.program, result.config, result.sizing)
