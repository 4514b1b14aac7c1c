#!/usr/bin/env python3
"""Time every weight quantization scheme on a ResNet-18-sized model (~11M weights).

Usage::

    python scripts/bench_quantize.py              # builtin resnet18-cifar (synthetic weights)
    python scripts/bench_quantize.py --model PATH.onnx --repeat 3
    python scripts/bench_quantize.py --bwq        # also BWQ-A planning + allocation (no data)

Each row quantizes all compute layers of the model with one scheme per output channel
(:func:`bitline.sw.quant.quantize`) and reports the best wall time over ``--repeat`` runs.
With ``--bwq`` the BWQ-A block planning and greedy allocation at 3 average bits (weight
sensitivity, no calibration data) are timed too.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from bitline.sw.models import resolve_model
from bitline.sw.quant import quantize
from bitline.sw.quant.blockwise import allocate_blocks, plan_layer, realize

#: (label, scheme, bits, options)
CASES = [
    ("int8", "int", 8, {}),
    ("int4 (clip=mse)", "int", 4, {"clip": "mse"}),
    ("int4", "int", 4, {}),
    ("pot4", "pot", 4, {}),
    ("apot4", "apot", 4, {}),
    ("adaptivfloat6", "adaptivfloat", 6, {}),
    ("adaptivfloat4", "adaptivfloat", 4, {}),
    ("ternary", "ternary", 2, {}),
    ("binary", "binary", 1, {}),
]


def best_time(function, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18-cifar")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--bwq", action="store_true", help="also time BWQ-A (3 bits)")
    args = parser.parse_args(argv)

    model = resolve_model(args.model)
    layers = model.compute_layers
    weights = [np.asarray(layer.weight, dtype=np.float32) for layer in layers]
    count = sum(w.size for w in weights)
    print(f"{model.name}: {len(layers)} compute layers, {count / 1e6:.2f} M weights\n")
    print("| scheme | seconds | M weights / s |")
    print("|---|---:|---:|")
    for label, scheme, bits, options in CASES:
        seconds = best_time(
            lambda: [quantize(w, scheme, bits, axis=0, **options) for w in weights],
            args.repeat)
        print(f"| {label} | {seconds:.2f} | {count / 1e6 / seconds:.1f} |")
    if args.bwq:
        def run_bwq():
            plans = [plan_layer(layer, 9, 8) for layer in layers]
            widths = allocate_blocks(plans, 3.0)
            for plan in plans:
                realize(plan, widths[plan.name])
        seconds = best_time(run_bwq, args.repeat)
        print(f"| bwq3 (plan + allocate + realize, 9x8 OU) | {seconds:.2f} | "
              f"{count / 1e6 / seconds:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
