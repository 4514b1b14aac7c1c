"""``bitline accuracy`` (FP32 vs integer-golden accuracy of a model under a quantization
spec) and ``bitline quant template`` (a per-layer spec to edit).

The library half of ``accuracy`` is :func:`bitline.sim.evaluate.evaluate_accuracy` (imported when the command
runs: ``sw`` imports ``sim`` only inside CLI commands).
"""

from __future__ import annotations

from pathlib import Path

import click

from bitline.sw.cli.common import (
    config_options,
    dataset_option,
    echo_json,
    json_option,
    quiet_option,
)

__all__ = ["accuracy", "quant", "template"]

_SPEC_HELP = ("Quantization spec: a file (TOML/JSON) or a shorthand: int8, int4, pot4, apot4, "
              "adaptivfloat6, varied4, bwq3, ... (varied/bwq: average weight bits).")


def _histogram(histogram: dict) -> str:
    total = sum(histogram.values()) or 1
    return "  ".join(f"{key}: {100 * count / total:.1f}%" for key, count in histogram.items())


@click.command("accuracy")
@click.argument("model")
@click.option("--quant", "spec", default=None, metavar="SPEC",
              help=_SPEC_HELP + " Default: int8, or an already-quantized model's own "
                   "quantization (QDQ / QONNX; --quant is then an error without --requantize).")
@click.option("--requantize", is_flag=True,
              help="Quantize an already-quantized model's float weights again with --quant.")
@dataset_option("Data set: calibrates on its 'calib' split, evaluates on its 'test' split "
                "(default: the one MODEL declares: digits for digits-*, mnist5k for mnist-*).")
@config_options
@json_option
@quiet_option
def accuracy(model: str, spec: str | None, requantize: bool, dataset: str,
             config_path: str | None, preset_name: str | None, as_json: bool, quiet: bool):
    """Compare FP32 and integer-golden accuracy of MODEL quantized with SPEC.

    --json prints one object: fp32_accuracy, accuracy, avg_weight_bits,
    avg_activation_bits, zero_block_fraction, output_error (floats), model, spec, mode,
    dataset, split, images and the histograms (objects: width or scheme -> count).
    """
    from bitline.sim.evaluate import evaluate_accuracy
    from bitline.sw.flow import load_config, require_dataset

    config = load_config(config_path, preset_name)
    dataset = require_dataset(model, dataset)
    report = evaluate_accuracy(model, spec, dataset, config=config, requantize=requantize)
    if as_json:
        echo_json(report)
        return
    if quiet:
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


@click.group("quant")
def quant():
    """Quantization specs."""


@quant.command("template")
@click.argument("model")
@click.option("--quant", "base", default="int8", show_default=True, metavar="SPEC",
              help="Base spec of every layer (a fixed-mode file or shorthand: int8, int4, "
                   "pot4, ...).")
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False),
              help="Spec file to write (default: print it).")
@quiet_option
def template(model: str, base: str, output: str | None, quiet: bool):
    """Write a per-layer quantization spec for MODEL to edit (every compute layer listed).

    Pass the edited file back with --quant FILE (compile, compare, accuracy, sweep).
    """
    from bitline.sw.flow import resolve_target
    from bitline.sw.flow.templates import quant_template

    ir_model = resolve_target(model).require("model", "bitline quant template")
    text = quant_template(ir_model, base, model_name=model)
    if output is None:
        click.echo(text, nl=False)
        return
    Path(output).write_text(text)
    if not quiet:
        click.echo(f"wrote {output} ({len(ir_model.compute_layers)} layers, base {base})")
