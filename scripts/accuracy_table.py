#!/usr/bin/env python3
"""Print the quantization accuracy table of the digits CNN (README, docs/quantization.md).

Every row is ``bitline accuracy MODEL --quant examples/quant/<spec>.toml --dataset digits``:
the model is quantized on the ``calib`` split and evaluated with the integer golden model on
the 450-image ``test`` split. Usage::

    python scripts/accuracy_table.py            # markdown table
    python scripts/accuracy_table.py --json     # one JSON object per row, in a list

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

#: Rows that need the optional training extra; skipped (with a note) without PyTorch.
NEEDS_TORCH = {"bwq2-ft"}


def build_rows(model: str, dataset: str, rows=ROWS) -> list[dict]:
    """Evaluate every spec of ``rows``; return the reports with a ``label`` and ``file``."""
    from bitline.sw.quant.finetune import torch_available

    reports = []
    for label, stem in rows:
        if stem in NEEDS_TORCH and not torch_available():
            print(f"note: skipping {stem} (needs PyTorch: pip install -e '.[train]')",
                  file=sys.stderr)
            continue
        path = EXAMPLES / f"{stem}.toml"
        report = evaluate_accuracy(model, path, dataset)
        report["label"] = label
        report["file"] = str(path.relative_to(EXAMPLES.parent.parent))
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="digits-cnn", help="builtin name or .onnx path")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args(argv)
    reports = build_rows(args.model, args.dataset)
    if args.json:
        print(json.dumps(reports, indent=2))
    else:
        print(f"{args.model} on {args.dataset} ({reports[0]['images']} test images, "
              "integer golden model)\n")
        print(markdown(reports))
    return 0


if __name__ == "__main__":
    sys.exit(main())
