"""FP32 vs integer-golden accuracy of a model under a quantization spec (``bitline accuracy``).

:func:`evaluate_accuracy` (used by ``bitline accuracy``, ``scripts/accuracy_table.py`` and
the tests) quantizes the model with :func:`bitline.sw.quant.quantize_model` on the data
set's ``calib`` split, runs the float reference and the integer golden model
(:mod:`bitline.sim.golden`) on the ``test`` split, and returns accuracies and the spec's statistics.
"""

from __future__ import annotations

import time

import numpy as np

__all__ = ["evaluate_accuracy", "REPORT_KEYS"]

#: Keys every ``--json`` report has (accuracies are fractions in [0, 1]).
REPORT_KEYS = ("fp32_accuracy", "accuracy", "avg_weight_bits", "avg_activation_bits",
               "zero_block_fraction")


def evaluate_accuracy(
    model,
    spec=None,
    dataset: str = "digits",
    *,
    config=None,
    calib_split: str = "calib",
    split: str = "test",
    seed: int = 0,
    requantize: bool = False,
) -> dict:
    """Quantize ``model`` with ``spec`` and compare its golden-model accuracy with FP32.

    A model read from a quantized file (QDQ / QONNX) is evaluated with its own quantization
    (``spec=None``; its float reference is the fake-quant graph); a ``spec`` for such a model
    is an error unless ``requantize`` (:func:`bitline.sw.flow.resolve_spec`).

    Parameters
    ----------
    model:
        A builtin model name, an ``.onnx`` path or an IR :class:`~bitline.sw.frontend.ir.Model`.
    spec:
        Anything :func:`bitline.sw.quant.load_spec` accepts (file, shorthand, dict, spec), or
        ``None``: the quantized file's own quantization (``int8`` for a float model).
    dataset:
        Data set name (:func:`bitline.sw.datasets.load_dataset`).
    config:
        :class:`~bitline.hw.spec.config.AcceleratorConfig` (OU grid of BWQ); default ``bwq``
        preset.
    calib_split, split:
        Calibration and evaluation splits.
    seed:
        Seed of the quantizer's statistics subsampling.
    requantize:
        Quantize an already-quantized model's float weights again with ``spec``.

    Returns
    -------
    dict
        :data:`REPORT_KEYS` plus ``model``, ``spec``, ``mode``, ``dataset``, ``split``,
        ``images``, ``output_error`` (relative squared error of the golden model's
        dequantized outputs against FP32, ``mean((y_q - y)**2) / mean(y**2)``: a finer
        measure than the accuracy of a small test set), ``weight_bits_histogram``
        (weights per width), ``block_bits_histogram`` (BWQ: blocks per width),
        ``scheme_histogram`` (varied: channels per scheme) and ``quantize_seconds`` /
        ``evaluate_seconds``.
    """
    from bitline.hw.spec.config import preset
    from bitline.sim.golden import run_golden
    from bitline.sw.datasets import load_dataset
    from bitline.sw.frontend.float_model import run_float
    from bitline.sw.frontend.ir import Model
    from bitline.sw.models import resolve_model
    from bitline.sw.flow.compile import resolve_spec
    from bitline.sw.quant import load_spec, quantize_model
    from bitline.sw.quant.prequantized import quantized_from_file

    model = model if isinstance(model, Model) else resolve_model(model)
    model, spec = resolve_spec(model, spec, requantize)
    config = config or preset("bwq")
    x, y = load_dataset(dataset, split)
    start = time.perf_counter()
    if spec is None:
        qmodel = quantized_from_file(model, config)
        spec_name, mode = f"file ({model.quantization.format})", "file"
    else:
        spec = load_spec(spec)
        calib_x, _ = load_dataset(dataset, calib_split)
        qmodel = quantize_model(model, spec, calib_x, config, seed=seed)
        spec_name, mode = spec.name, spec.mode
    quantized = time.perf_counter()
    reference = np.asarray(run_float(model, x), dtype=np.float64).reshape(len(y), -1)
    output = np.asarray(run_golden(qmodel, x).output, dtype=np.float64).reshape(len(y), -1)
    fp32 = float(np.mean(reference.argmax(axis=1) == y))
    accuracy_value = float(np.mean(output.argmax(axis=1) == y))
    output_error = float(np.mean(np.square(output - reference)) / np.mean(np.square(reference)))
    stats = qmodel.spec["stats"]
    report = {
        "model": model.name,
        "spec": spec_name,
        "mode": mode,
        "dataset": dataset,
        "split": split,
        "images": int(len(y)),
        "fp32_accuracy": fp32,
        "accuracy": accuracy_value,
        "avg_weight_bits": float(stats["avg_weight_bits"]),
        "avg_activation_bits": float(stats["avg_activation_bits"]),
        "zero_block_fraction": float(stats["zero_block_fraction"]),
        "output_error": output_error,
        "weight_bits_histogram": dict(stats["weight_bits_histogram"]),
        "quantize_seconds": quantized - start,
        "evaluate_seconds": time.perf_counter() - quantized,
    }
    for key in ("block_bits_histogram", "scheme_histogram"):
        if key in stats:
            report[key] = dict(stats[key])
    return report
