import struct

import numpy as np
import pytest
import torch

from datamodules import DigitsDataModule, MNISTDataModule


def test_digits_split_is_80_20_deterministic_and_scaled():
    first, second = DigitsDataModule(seed=3), DigitsDataModule(seed=3)
    first.setup(), second.setup()
    sizes = [len(first.train_set), len(first.val_set), len(first.test_set)]
    assert sum(sizes) == 1797 and sizes[2] == round(0.2 * 1797)
    assert first.test_set.indices == second.test_set.indices
    assert set(first.train_set.indices).isdisjoint(first.test_set.indices)
    x, y = next(iter(first.train_dataloader()))
    assert x.shape[1:] == DigitsDataModule.data_shape and x.dtype == torch.float32
    assert x.min() >= 0 and x.max() <= 1 and x.max() == 1.0
    assert y.dtype == torch.int64 and y.max() <= 9
    other = DigitsDataModule(seed=4)
    other.setup()
    assert other.test_set.indices != first.test_set.indices


def _write_idx(path, array: np.ndarray):
    """The IDX format of LeCun's files: magic (0x0801 labels, 0x0803 images), big-endian sizes, uint8 data."""
    magic = {1: 0x0801, 3: 0x0803}[array.ndim]
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _fake_mnist(root, n_train=30, n_test=12):
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, (n,)))


def test_mnist_reads_the_real_idx_format(tmp_path):
    _fake_mnist(tmp_path)
    dm = MNISTDataModule(root=str(tmp_path), download=False, val_size=6, batch_size=8)
    dm.prepare_data()
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (24, 6, 12)
    x, y = next(iter(dm.test_dataloader()))
    assert x.shape == (8, 1, 28, 28) and 0 <= x.min() and x.max() <= 1
    assert y.dtype == torch.int64
    subset = MNISTDataModule(root=str(tmp_path), download=False, val_size=6, train_subset=10, batch_size=100)
    subset.setup("fit")
    assert len(subset.train_set) == 10 and len(next(iter(subset.train_dataloader()))[0]) == 10
    with pytest.raises(ValueError, match="between 1 and 24"):
        bad = MNISTDataModule(root=str(tmp_path), download=False, val_size=6, train_subset=100)
        bad.setup("fit")


def test_mnist_missing_files_error_says_what_to_download_and_where(tmp_path):
    dm = MNISTDataModule(root=str(tmp_path / "nowhere"), download=False)
    with pytest.raises(FileNotFoundError) as error:
        dm.prepare_data()
    message = str(error.value)
    assert "train-images-idx3-ubyte.gz" in message and str(tmp_path / "nowhere" / "MNIST" / "raw") in message
    with pytest.raises(FileNotFoundError, match="MNIST/raw"):
        dm.setup("fit")
