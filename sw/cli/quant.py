"""``bitline accuracy``: FP32 vs integer-golden accuracy of a model under a quantization spec.

The library half is :func:`bitline.sim.evaluate.evaluate_accuracy` (imported when the command
runs: ``sw`` imports ``sim`` only inside CLI commands).
"""

from __future__ import annotations

import json

import click

__all__ = ["accuracy"]


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
    from bitline.sim.evaluate import evaluate_accuracy
    from bitline.sw.flow import load_config

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
