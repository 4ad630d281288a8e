from pathlib import Path

import numpy as np
import pytest
import torch

from lvm.datamodules import CelebADataModule, DigitsDataModule, FashionMNISTDataModule, MNISTDataModule
from lvm.datamodules.miniatures import write_mnist, write_omniglot


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


def test_mnist_reads_the_real_idx_format(tmp_path):
    write_mnist(tmp_path)
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


def _fake_celeba(root, partitions=(0, 0, 0, 0, 1, 1, 2, 2)):
    """The CelebA files in torchvision's layout and formats, with a few random 178x218 JPEGs."""
    from PIL import Image

    folder = root / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [f"{i + 1:06d}.jpg" for i in range(len(partitions))]
    for name in names:
        Image.fromarray(rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)).save(folder / "img_align_celeba" / name)
    attributes = ["Bald", "Smiling", "Young"]
    rows = {
        "list_eval_partition.txt": (None, [[p] for p in partitions]),
        "identity_CelebA.txt": (None, [[i % 3] for i in range(len(names))]),
        "list_attr_celeba.txt": (attributes, [[1 if (i + j) % 2 else -1 for j in range(3)] for i in range(len(names))]),
        "list_bbox_celeba.txt": (["image_id", "x_1", "y_1", "width", "height"], [[1, 2, 3, 4]] * len(names)),
        "list_landmarks_align_celeba.txt": ([f"p{k}" for k in range(10)], [list(range(10))] * len(names)),
    }
    for filename, (header, values) in rows.items():
        lines = [str(len(names)), " ".join(header)] if header else []
        lines += [" ".join([name, *map(str, row)]) for name, row in zip(names, values)]
        (folder / filename).write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("image_size,grayscale", [(64, False), (80, True)])
def test_celeba_reads_torchvision_layout_in_both_paper_settings(tmp_path, monkeypatch, image_size, grayscale):
    from torchvision.datasets import CelebA

    _fake_celeba(tmp_path)
    # the generated annotation files cannot match torchvision's MD5 sums of the real ones
    monkeypatch.setattr(CelebA, "_check_integrity", lambda self: (Path(self.root) / "celeba" / "img_align_celeba").is_dir())
    dm = CelebADataModule(root=str(tmp_path), image_size=image_size, crop_size=148, grayscale=grayscale,
                          batch_size=4, num_workers=0)
    dm.prepare_data()
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (4, 2, 2)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, *dm.data_shape) == (4, 1 if grayscale else 3, image_size, image_size)
    assert 0 <= x.min() and x.max() <= 1 and x.dtype == torch.float32
    assert sorted(set(y.tolist())) == [0, 1]  # "Smiling" alternates in the fake annotations
    with pytest.raises(ValueError, match="Unknown CelebA attribute"):
        CelebADataModule(root=str(tmp_path), label_attribute="Wings", num_workers=0).prepare_data()


def test_celeba_missing_files_error_says_what_to_download_and_where(tmp_path):
    with pytest.raises(FileNotFoundError, match="img_align_celeba.zip.*list_eval_partition.txt"):
        CelebADataModule(root=str(tmp_path)).prepare_data()


def test_fashion_mnist_reads_its_own_folder_and_names_its_source(tmp_path):
    write_mnist(tmp_path, folder="FashionMNIST")
    dm = FashionMNISTDataModule(root=str(tmp_path), download=False, val_size=6, batch_size=8)
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (24, 6, 12)
    with pytest.raises(FileNotFoundError, match=r"FashionMNIST/raw.*fashion-mnist|fashion-mnist.*FashionMNIST/raw"):
        FashionMNISTDataModule(root=str(tmp_path / "nowhere"), download=False).prepare_data()


def test_binarized_mnist_reads_amat_files_or_binarizes_mnist_with_a_fixed_seed(tmp_path):
    from lvm.datamodules import BinarizedMNISTDataModule

    folder = tmp_path / "amat" / "binarized_mnist"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 7), ("valid", 3), ("test", 4)):
        np.savetxt(folder / f"binarized_mnist_{split}.amat", rng.integers(0, 2, (n, 784)), fmt="%d")
    dm = BinarizedMNISTDataModule(root=str(tmp_path / "amat"), download=False, batch_size=4)
    dm.prepare_data()
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (7, 3, 4)
    (x,) = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 1, 28, 28) and set(x.unique().tolist()) <= {0.0, 1.0}
    write_mnist(tmp_path / "idx", n_train=30, n_test=12)
    first = BinarizedMNISTDataModule(root=str(tmp_path / "idx"), download=False, val_size=6, batch_size=8)
    first.setup()
    assert (len(first.train_set), len(first.val_set), len(first.test_set)) == (24, 6, 12)
    again = BinarizedMNISTDataModule(root=str(tmp_path / "idx"), download=False, val_size=6, batch_size=8)
    again.setup()
    assert torch.equal(first.test_set.tensors[0], again.test_set.tensors[0])  # the same static binarization
    assert set(first.test_set.tensors[0].unique().tolist()) <= {0.0, 1.0}
    np.savetxt(folder / "binarized_mnist_test.amat", rng.random((2, 784)))
    with pytest.raises(ValueError, match="784 binary values"):
        BinarizedMNISTDataModule(root=str(tmp_path / "amat"), download=False).setup()


def test_omniglot_reads_the_extracted_layout_and_binarizes(tmp_path):
    from lvm.datamodules import OmniglotDataModule

    write_omniglot(tmp_path)
    dm = OmniglotDataModule(root=str(tmp_path), val_fraction=0.25, batch_size=6)
    dm.prepare_data()
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (18, 6, 24)
    x, alphabet = next(iter(dm.train_dataloader()))
    assert x.shape == (6, 1, 28, 28) and set(x.unique().tolist()) <= {0.0, 1.0} and alphabet.max() <= 1
    again = OmniglotDataModule(root=str(tmp_path), val_fraction=0.25)
    again.setup()
    assert torch.equal(again.test_set.tensors[0], dm.test_set.tensors[0])  # static binarization of test
    assert 0.0 < dm.test_set.tensors[0].mean() < 0.5  # strokes (inverted) are the minority
    grey = OmniglotDataModule(root=str(tmp_path), val_fraction=0.25, train_binarization="none")  # the lattice paper's
    grey.setup()
    images = grey.train_set.tensors[0]
    assert len(images.unique()) > 2 and torch.equal(grey.test_set.tensors[0], dm.test_set.tensors[0])
    assert torch.allclose(images.mean(), torch.stack([dm.train_set[i][0] for i in range(18)]).mean(), atol=0.05)
    with pytest.raises(ValueError, match="train_binarization"):
        OmniglotDataModule(root=str(tmp_path), train_binarization="static")
    with pytest.raises(FileNotFoundError, match="images_background.zip"):
        OmniglotDataModule(root=str(tmp_path / "nowhere")).prepare_data()
    write_omniglot(tmp_path / "small", alphabets=1, characters=1, drawers=1, size=50)
    with pytest.raises(ValueError, match="105 x 105; got 50 x 50"):
        OmniglotDataModule(root=str(tmp_path / "small")).setup()


DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist package


@pytest.mark.skipif(not DEBIAN_FASHION_MNIST.is_dir(), reason="apt-get install dataset-fashion-mnist for the real files")
def test_fashion_mnist_reads_the_real_files(tmp_path):
    import gzip
    import shutil

    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for packed in DEBIAN_FASHION_MNIST.glob("*.gz"):
        with gzip.open(packed) as source, open(raw / packed.stem, "wb") as target:
            shutil.copyfileobj(source, target)
    dm = FashionMNISTDataModule(root=str(tmp_path), download=False, batch_size=256)
    dm.prepare_data()
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (55_000, 5_000, 10_000)
    x, y = next(iter(dm.test_dataloader()))
    assert x.shape == (256, 1, 28, 28) and 0 <= x.min() and x.max() <= 1 and x.mean() > 0.2
    labels = dm.test_set.tensors[1]
    assert torch.bincount(labels).tolist() == [1000] * 10  # the balanced official test set
