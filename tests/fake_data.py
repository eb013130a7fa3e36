"""Synthetic data sets written in torchvision's on-disk layouts, so tests read real file formats."""

import pickle
import struct
from pathlib import Path

import numpy as np

IDX_UBYTE = 0x08


def write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file (big-endian header: magic = dtype code and number of dims, then each dim) of uint8."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">I", IDX_UBYTE << 8 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def fake_images(count: int, shape: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random uint8 images whose first pixel encodes their index (index % 256) and balanced labels."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(count, *shape), dtype=np.uint8)
    images.reshape(count, -1)[:, 0] = np.arange(count) % 256
    labels = np.arange(count) % 10
    return images, labels


def write_mnist(root: Path, train: int = 120, test: int = 40) -> dict[str, np.ndarray]:
    """torchvision's MNIST layout under ``root/MNIST/raw``; returns the arrays written."""
    raw = root / "MNIST" / "raw"
    train_images, train_labels = fake_images(train, (28, 28), seed=1)
    test_images, test_labels = fake_images(test, (28, 28), seed=2)
    write_idx(raw / "train-images-idx3-ubyte", train_images)
    write_idx(raw / "train-labels-idx1-ubyte", train_labels)
    write_idx(raw / "t10k-images-idx3-ubyte", test_images)
    write_idx(raw / "t10k-labels-idx1-ubyte", test_labels)
    return {"train_images": train_images, "train_labels": train_labels, "test_images": test_images}


def write_cifar10(root: Path, per_batch: int = 20, test: int = 30) -> dict[str, np.ndarray]:
    """torchvision's CIFAR-10 layout under ``root/cifar-10-batches-py``; returns the arrays written."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    train_images, train_labels = fake_images(5 * per_batch, (3, 32, 32), seed=3)
    for index in range(5):
        rows = slice(index * per_batch, (index + 1) * per_batch)
        _write_batch(folder / f"data_batch_{index + 1}", train_images[rows], train_labels[rows])
    test_images, test_labels = fake_images(test, (3, 32, 32), seed=4)
    _write_batch(folder / "test_batch", test_images, test_labels)
    return {"train_images": train_images, "train_labels": train_labels, "test_images": test_images}


def _write_batch(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    entry = {"data": images.reshape(len(images), -1), "labels": labels.tolist(), "batch_label": path.name}
    with open(path, "wb") as file:
        pickle.dump(entry, file)
