"""Small bundled data sets for calibration, accuracy checks and the reference models.

Only data that ships with a pip-installable package is used, so nothing is downloaded: the
8x8 handwritten ``digits`` set bundled with scikit-learn (1797 images, 10 classes). The
splits are fixed by a seeded permutation and documented in :func:`load_digits`; the
reference models in :mod:`bitline.sw.models` were trained on ``"train"`` and report their
accuracy on ``"test"``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["DATASETS", "DIGITS_SPLITS", "load_dataset", "load_digits"]

#: Split names understood by :func:`load_digits`.
DIGITS_SPLITS = ("train", "test", "calib", "all")

# Fixed split parameters (documented in load_digits; changing them invalidates the
# accuracies recorded in sw/models/README.md).
_DIGITS_SEED = 0
_DIGITS_TEST_PER_CLASS = 45
_DIGITS_CALIB_SIZE = 256


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Return the full digits set as ``(x, y)`` in scikit-learn's order."""
    try:
        from sklearn.datasets import load_digits as _sklearn_load_digits
    except ImportError as error:
        raise ImportError(
            "the 'digits' data set needs scikit-learn, which is a development extra; "
            'install it with: pip install -e ".[dev]"'
        ) from error
    bunch = _sklearn_load_digits()
    images = np.asarray(bunch.images, dtype=np.float32)  # (1797, 8, 8), values 0..16
    x = (images / np.float32(16.0))[:, None, :, :]
    y = np.asarray(bunch.target, dtype=np.int64)
    return x, y


def _digits_split_indices(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(train_indices, test_indices)`` of the fixed stratified split."""
    rng = np.random.default_rng(_DIGITS_SEED)
    test_parts = []
    for label in range(10):
        members = np.flatnonzero(labels == label)
        test_parts.append(rng.permutation(members)[:_DIGITS_TEST_PER_CLASS])
    test_indices = np.sort(np.concatenate(test_parts))
    is_test = np.zeros(labels.shape[0], dtype=bool)
    is_test[test_indices] = True
    # Shuffle train so every prefix (in particular "calib") mixes all classes.
    train_indices = rng.permutation(np.flatnonzero(~is_test))
    return train_indices, test_indices


def load_digits(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Load one split of scikit-learn's bundled 8x8 digits set (no download).

    The split is fixed: with ``rng = np.random.default_rng(0)``, for each class 0..9 in
    order the class's indices (in scikit-learn's order) are permuted with
    ``rng.permutation`` and the first 45 go to the test set (450 test images, sorted by
    index); the remaining 1347 images form the train set, in the order of one further
    ``rng.permutation`` of their indices.

    Parameters
    ----------
    split:
        ``"train"`` (1347 images), ``"test"`` (450 images, 45 per class), ``"calib"`` (the
        first 256 train images, for quantization calibration) or ``"all"`` (1797 images in
        scikit-learn's order).

    Returns
    -------
    x:
        Float32 images of shape ``(N, 1, 8, 8)``, pixel values scaled to ``[0, 1]``
        (scikit-learn's 0..16 divided by 16).
    y:
        Int64 labels of shape ``(N,)``, values 0..9.

    Raises
    ------
    ValueError
        If ``split`` is not one of :data:`DIGITS_SPLITS`.
    ImportError
        If scikit-learn is not installed.
    """
    if split not in DIGITS_SPLITS:
        raise ValueError(
            f"unknown digits split {split!r}; choose one of {', '.join(DIGITS_SPLITS)}"
        )
    x, y = _digits_arrays()
    if split == "all":
        return x, y
    train_indices, test_indices = _digits_split_indices(y)
    if split == "train":
        indices = train_indices
    elif split == "calib":
        indices = train_indices[:_DIGITS_CALIB_SIZE]
    else:
        indices = test_indices
    return x[indices], y[indices]


#: Data sets by name; each loader takes a split name and returns ``(x, y)``.
DATASETS: dict[str, Callable[[str], tuple[np.ndarray, np.ndarray]]] = {
    "digits": load_digits,
}


def load_dataset(name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Load ``split`` of the data set called ``name``.

    Parameters
    ----------
    name:
        A key of :data:`DATASETS` (currently ``"digits"``).
    split:
        A split the data set's loader understands (see :func:`load_digits`).

    Returns
    -------
    x, y:
        Float32 inputs with a leading batch dimension and int64 labels.

    Raises
    ------
    ValueError
        If ``name`` is not a known data set, or ``split`` is not one of its splits.
    """
    try:
        loader = DATASETS[name]
    except KeyError:
        raise ValueError(
            f"unknown data set {name!r}; choose one of {', '.join(sorted(DATASETS))}"
        ) from None
    return loader(split)
