"""``bitline accuracy``: FP32 vs integer-golden accuracy of a model under a quantization spec.

:func:`evaluate_accuracy` is the library form (used by ``scripts/accuracy_table.py`` and the
tests): it quantizes the model with :func:`bitline.sw.quant.quantize_model` on the data
set's ``calib`` split, runs the float reference and the integer golden model
(:mod:`bitline.sim.golden`, imported lazily as the CLI may) on the ``test`` split, and
returns accuracies and the spec's statistics.
"""

from __future__ import annotations

import json
import time

import click
import numpy as np

__all__ = ["evaluate_accuracy", "accuracy", "REPORT_KEYS"]

#: Keys every ``--json`` report has (accuracies are fractions in [0, 1]).
REPORT_KEYS = ("fp32_accuracy", "accuracy", "avg_weight_bits", "avg_activation_bits",
               "zero_block_fraction")


def evaluate_accuracy(
    model,
    spec,
    dataset: str = "digits",
    *,
    config=None,
    calib_split: str = "calib",
    split: str = "test",
    seed: int = 0,
) -> dict:
    """Quantize ``model`` with ``spec`` and compare its golden-model accuracy with FP32.

    Parameters
    ----------
    model:
        A builtin model name, an ``.onnx`` path or an IR :class:`~bitline.sw.frontend.ir.Model`.
    spec:
        Anything :func:`bitline.sw.quant.load_spec` accepts (file, shorthand, dict, spec).
    dataset:
        Data set name (:func:`bitline.sw.datasets.load_dataset`).
    config:
        :class:`~bitline.hw.spec.config.AcceleratorConfig` (OU grid of BWQ); default ``bwq``
        preset.
    calib_split, split:
        Calibration and evaluation splits.
    seed:
        Seed of the quantizer's statistics subsampling.

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
    from bitline.sw.quant import load_spec, quantize_model

    model = model if isinstance(model, Model) else resolve_model(model)
    spec = load_spec(spec)
    config = config or preset("bwq")
    calib_x, _ = load_dataset(dataset, calib_split)
    x, y = load_dataset(dataset, split)
    start = time.perf_counter()
    qmodel = quantize_model(model, spec, calib_x, config, seed=seed)
    quantized = time.perf_counter()
    reference = np.asarray(run_float(model, x), dtype=np.float64).reshape(len(y), -1)
    output = np.asarray(run_golden(qmodel, x).output, dtype=np.float64).reshape(len(y), -1)
    fp32 = float(np.mean(reference.argmax(axis=1) == y))
    accuracy_value = float(np.mean(output.argmax(axis=1) == y))
    output_error = float(np.mean(np.square(output - reference)) / np.mean(np.square(reference)))
    stats = qmodel.spec["stats"]
    report = {
        "model": model.name,
        "spec": spec.name,
        "mode": spec.mode,
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


def _histogram(histogram: dict) -> str:
    total = sum(histogram.values()) or 1
    return "  ".join(f"{key}: {100 * count / total:.1f}%" for key, count in histogram.items())


@click.command("accuracy")
@click.argument("model")
@click.option("--quant", "-q", "spec", required=True, metavar="SPEC",
              help="Spec file (TOML/JSON) or shorthand: int8, int4, pot4, apot4, "
                   "adaptivfloat6, varied4, bwq3, ... (varied/bwq: average weight bits).")
@click.option("--dataset", "-d", default="digits", show_default=True,
              help="Data set: calibrates on its 'calib' split, evaluates on 'test'.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Accelerator config TOML (its OU is the BWQ block).")
@click.option("--preset", "preset_name", default=None,
              help="Accelerator preset instead of --config (default: bwq).")
@click.option("--json", "as_json", is_flag=True,
              help="Print fp32_accuracy, accuracy, avg_weight_bits, avg_activation_bits, "
                   "zero_block_fraction (and histograms) as JSON.")
def accuracy(model: str, spec: str, dataset: str, config_path: str | None,
             preset_name: str | None, as_json: bool):
    """Compare FP32 and integer-golden accuracy of MODEL quantized with SPEC."""
    from bitline.sw.cli.compile import load_config

    config = load_config(config_path, preset_name)
    report = evaluate_accuracy(model, spec, dataset, config=config)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    drop = 100 * (report["accuracy"] - report["fp32_accuracy"])
    lines = [
        f"model                {report['model']}",
        f"spec                 {report['spec']} (mode {report['mode']})",
        f"data                 {report['dataset']} {report['split']}, {report['images']} images",
        f"fp32 accuracy        {100 * report['fp32_accuracy']:.2f} %",
        f"accuracy             {100 * report['accuracy']:.2f} %  ({drop:+.2f} points)",
        f"avg weight bits      {report['avg_weight_bits']:.3f}",
        f"avg activation bits  {report['avg_activation_bits']:.3f}",
        f"zero-block fraction  {report['zero_block_fraction']:.4f}",
        f"output error         {report['output_error']:.5f} (relative squared error vs FP32)",
        f"weight widths        {_histogram(report['weight_bits_histogram'])}",
    ]
    if "block_bits_histogram" in report:
        lines.append(f"block widths         {_histogram(report['block_bits_histogram'])}")
    if "scheme_histogram" in report:
        lines.append(f"channel schemes      {_histogram(report['scheme_histogram'])}")
    click.echo("\n".join(lines))
