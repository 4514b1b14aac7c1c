"""Tests of :mod:`bitline.sw.datasets` (the fixed digits splits)."""

import numpy as np
import pytest

from bitline.sw.datasets import DATASETS, DIGITS_SPLITS, load_dataset, load_digits

SPLIT_SIZES = {"train": 1347, "test": 450, "calib": 256, "all": 1797}


@pytest.mark.parametrize("split", DIGITS_SPLITS)
def test_shapes_types_and_ranges(split):
    x, y = load_digits(split)
    assert x.shape == (SPLIT_SIZES[split], 1, 8, 8)
    assert x.dtype == np.float32 and y.dtype == np.int64
    assert y.shape == (SPLIT_SIZES[split],)
    assert x.min() == 0.0 and x.max() == 1.0
    # Pixels are scikit-learn's 0..16 integers divided by 16.
    np.testing.assert_array_equal(x * 16, np.round(x * 16))
    assert set(np.unique(y)) == set(range(10))


def test_test_split_is_stratified():
    _, y = load_digits("test")
    np.testing.assert_array_equal(np.bincount(y), np.full(10, 45))


def test_deterministic():
    for split in DIGITS_SPLITS:
        x_first, y_first = load_digits(split)
        x_second, y_second = load_digits(split)
        np.testing.assert_array_equal(x_first, x_second)
        np.testing.assert_array_equal(y_first, y_second)


def _row_keys(x, y):
    return [(label, image.tobytes()) for image, label in zip(x, y, strict=True)]


def test_train_and_test_partition_all():
    all_keys = _row_keys(*load_digits("all"))
    train_keys = _row_keys(*load_digits("train"))
    test_keys = _row_keys(*load_digits("test"))
    # The digits set contains no exact duplicates, so image bytes identify a sample.
    assert len(set(all_keys)) == len(all_keys)
    assert not set(train_keys) & set(test_keys)
    assert sorted(train_keys + test_keys) == sorted(all_keys)


def test_calib_is_prefix_of_train():
    x_train, y_train = load_digits("train")
    x_calib, y_calib = load_digits("calib")
    np.testing.assert_array_equal(x_calib, x_train[: len(x_calib)])
    np.testing.assert_array_equal(y_calib, y_train[: len(y_calib)])
    # The train order is shuffled, so calibration sees every class.
    assert set(np.unique(y_calib)) == set(range(10))


def test_bad_split_lists_the_splits():
    with pytest.raises(ValueError, match="unknown digits split 'validation'.*train, test"):
        load_digits("validation")


def test_load_dataset_by_name():
    assert DATASETS["digits"] is load_digits
    x, y = load_dataset("digits", "test")
    np.testing.assert_array_equal(x, load_digits("test")[0])
    np.testing.assert_array_equal(y, load_digits("test")[1])


def test_load_dataset_unknown_name():
    with pytest.raises(ValueError, match="unknown data set 'mnist'; choose one of digits"):
        load_dataset("mnist", "test")


def test_missing_scikit_learn_says_how_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r'pip install -e "\.\[dev\]"'):
        load_digits("test")
