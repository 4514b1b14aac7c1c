#!/usr/bin/env python3
"""Print the quantization accuracy table of a model (README, docs/quantization.md).

Every row is ``bitline accuracy MODEL --quant examples/quant/<spec>.toml --dataset DATA``
(or a shorthand spec where no file exists): the model is quantized on the ``calib`` split
and evaluated with the integer golden model on the ``test`` split (450 images of
``digits``, 1000 of ``mnist5k``). ``DATA`` defaults to the data set the model declares.
Usage::

    python scripts/accuracy_table.py                        # digits-cnn, markdown table
    python scripts/accuracy_table.py --json                 # one JSON object per row
    python scripts/accuracy_table.py --model mnist-lenet5 --extra --readme
                                        # + EXTRA_ROWS; table into sw/models/README.md

Deterministic: the splits, the calibration and the BWQ / varied allocations are seeded.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bitline.sim.evaluate import evaluate_accuracy

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "quant"

#: (row label, spec file stem) in table order; the FP32 row comes from the first run.
ROWS = [
    ("INT8, per channel", "int8"),
    ("INT4, per channel", "int4"),
    ("PoT-4", "pot4"),
    ("APoT-4", "apot4"),
    ("AdaptivFloat-4", "adaptivfloat4"),
    ("AdaptivFloat-6", "adaptivfloat6"),
    ("Varied (automatic), 4 bits", "varied4"),
    ("BWQ, 4 bits", "bwq4"),
    ("BWQ, 3 bits", "bwq3"),
    ("BWQ, 2 bits", "bwq2"),
    # Extra rows: the varied-vs-INT comparison at 3 bits and BWQ activation compression.
    ("INT3, per channel", "int3"),
    ("Varied (automatic), 3 bits", "varied3"),
    ("BWQ, 3 bits + activations 4 bits avg", "bwq3-act4"),
    ("BWQ, 2 bits + fine-tuning (needs PyTorch)", "bwq2-ft"),
]

#: Further rows for the MNIST models (``--extra``): BWQ between 2 and 3 bits (shorthands)
#: and fine-tuned BWQ at 3 and 2.5 bits (the bwq2-ft recipe at another budget).
EXTRA_ROWS = [
    ("BWQ, 2.5 bits", "bwq2.5"),
    ("BWQ, 3 bits + fine-tuning (needs PyTorch)",
     {"name": "bwq3-ft", "mode": "bwq",
      "bwq": {"budget": 3.0, "sensitivity": "output", "finetune_epochs": 50,
              "finetune_lr": 3e-4},
      "activations": {"bits": 8, "rule": "percentile", "percentile": 99.99}}),
    ("BWQ, 2.5 bits + fine-tuning (needs PyTorch)",
     {"name": "bwq2.5-ft", "mode": "bwq",
      "bwq": {"budget": 2.5, "sensitivity": "output", "finetune_epochs": 50,
              "finetune_lr": 3e-4},
      "activations": {"bits": 8, "rule": "percentile", "percentile": 99.99}}),
]

#: Rows that need the optional training extra; skipped (with a note) without PyTorch.
NEEDS_TORCH = {"bwq2-ft", "bwq3-ft", "bwq2.5-ft"}


def _row_spec(spec):
    """Return ``(name, spec for evaluate_accuracy, file label)`` of a row's spec.

    A string names ``examples/quant/<name>.toml`` when that file exists, else a shorthand;
    a dict is an inline spec (the file label is then ``inline``).
    """
    if isinstance(spec, dict):
        return spec["name"], spec, "inline"
    path = EXAMPLES / f"{spec}.toml"
    if path.is_file():
        return spec, path, str(path.relative_to(EXAMPLES.parent.parent))
    return spec, spec, "shorthand"


def build_rows(model: str, dataset: str, rows=ROWS) -> list[dict]:
    """Evaluate every spec of ``rows``; return the reports with a ``label`` and ``file``."""
    from bitline.sw.quant.finetune import torch_available

    reports = []
    for label, row_spec in rows:
        name, spec, file_label = _row_spec(row_spec)
        if name in NEEDS_TORCH and not torch_available():
            print(f"note: skipping {name} (needs PyTorch: pip install -e '.[train]')",
                  file=sys.stderr)
            continue
        report = evaluate_accuracy(model, spec, dataset)
        report["label"] = label
        report["file"] = file_label
        reports.append(report)
    return reports


def markdown(reports: list[dict]) -> str:
    """Return the table as markdown.

    Accuracies in percent; *output error* is the relative squared error of the golden
    model's outputs (logits) against FP32 on the test split, in percent.
    """
    fp32 = reports[0]["fp32_accuracy"]
    lines = [
        "| configuration | spec | accuracy (%) | vs FP32 (points) | avg weight bits | "
        "avg activation bits | zero blocks (%) | output error (%) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
        f"| FP32 | — | {100 * fp32:.2f} | — | 32 | 32 | — | 0 |",
    ]
    for report in reports:
        lines.append(
            f"| {report['label']} | `{report['spec']}` | {100 * report['accuracy']:.2f} | "
            f"{100 * (report['accuracy'] - fp32):+.2f} | {report['avg_weight_bits']:.2f} | "
            f"{report['avg_activation_bits']:.2f} | {100 * report['zero_block_fraction']:.1f} | "
            f"{100 * report['output_error']:.2f} |"
        )
    return "\n".join(lines)


def readme_section(model: str, reports: list[dict], command: str) -> str:
    """Return the ``accuracy-<model>`` section of sw/models/README.md (heading, table)."""
    import textwrap

    first = reports[0]
    prose = textwrap.fill(
        f"{first['images']} `{first['dataset']}` test images, integer golden model, default "
        "`bwq` preset (9 x 8 OU), 8-bit activations unless stated; calibrated on the "
        f"`calib` split. One test image is {100 / first['images']:.2f} points. Produced by",
        width=92)
    return (f"### {model}: accuracy under quantization\n\n{prose}\n\n    {command}\n\n"
            + markdown(reports))


def main(argv: list[str] | None = None) -> int:
    from bitline.sw.flow import require_dataset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="digits-cnn", help="builtin name or .onnx path")
    parser.add_argument("--dataset", default=None,
                        help="data set (default: the one the model declares)")
    parser.add_argument("--extra", action="store_true",
                        help="add EXTRA_ROWS (BWQ 2.5 bits, fine-tuned BWQ 3 and 2.5 bits)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--readme", action="store_true",
                        help="also write the table into sw/models/README.md (section "
                             "accuracy-MODEL)")
    args = parser.parse_args(argv)
    dataset = require_dataset(args.model, args.dataset)
    reports = build_rows(args.model, dataset, ROWS + (EXTRA_ROWS if args.extra else []))
    if args.json:
        print(json.dumps(reports, indent=2))
    else:
        print(f"{args.model} on {dataset} ({reports[0]['images']} test images, "
              "integer golden model)\n")
        print(markdown(reports))
    if args.readme:
        from readme_sections import replace_section   # scripts/ is on sys.path when run

        command = " ".join(["python scripts/accuracy_table.py", "--model", args.model,
                            *(["--dataset", args.dataset] if args.dataset else []),
                            *(["--extra"] if args.extra else []), "--readme"])
        replace_section(f"accuracy-{args.model}", readme_section(args.model, reports, command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
