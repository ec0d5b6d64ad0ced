"""The demo's data: scikit-learn's handwritten digits (8x8 images, 10 classes), shipped with scikit-learn.

Example:
    >>> from tfopt.demo.data import load_digits_split
    >>> split = load_digits_split()
    >>> split.x_train.shape[1:]
    (8, 8, 1)
"""

import dataclasses

import numpy as np
import tensorflow as tf

from tfopt import _files

BATCH_SIZE = 32


@dataclasses.dataclass(frozen=True)
class Split:
    """Images scaled to [0, 1] with shape (n, 8, 8, 1) and integer labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_digits_split(test_fraction=0.2, seed=0):
    """The digits, split into train and test sets stratified by class (80/20 by default)."""
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as error:
        raise ImportError("The demo needs scikit-learn: `pip install tfopt[demo]`.") from error
    digits = load_digits()
    images = (digits.images / 16.0).astype("float32")[..., np.newaxis]
    labels = digits.target.astype("int32")
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=test_fraction, random_state=seed, stratify=labels
    )
    return Split(x_train, y_train, x_test, y_test)


def batches(x, y, shuffle):
    """A batched `tf.data.Dataset` of (x, y), reshuffled each epoch if `shuffle` (fit is faster on datasets)."""
    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        dataset = dataset.shuffle(len(x), seed=0, reshuffle_each_iteration=True)
    return dataset.batch(BATCH_SIZE).prefetch(tf.data.AUTOTUNE)


def save_test_split(split, path):
    """Writes the test images and labels to the `.npz` file `path` as arrays "x" and "y", the names
    `tfopt evaluate --data` reads (through a temporary file, so `path` is never half written)."""
    return _files.write_atomically(path, lambda file: np.savez(file, x=split.x_test, y=split.y_test))
