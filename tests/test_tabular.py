"""The MAF tabular datamodules on tiny files written in the release's formats, and the sinusoid."""

import numpy as np
import pandas as pd
import pytest
import torch

from lvm.datamodules import (GasDataModule, HepmassDataModule, MinibooneDataModule, NoisySinusoidDataModule,
                         PowerDataModule)

RNG = np.random.default_rng(0)


def _power(root, n=400):
    (root / "power").mkdir(parents=True)
    np.save(root / "power" / "data.npy", RNG.normal(size=(n, 8)))


def _miniboone(root, n=300):
    (root / "miniboone").mkdir(parents=True)
    np.save(root / "miniboone" / "data.npy", RNG.normal(size=(n, 43)))


def _gas(root, n=500):
    """8 independent sensors and 8 near-copies of them (correlation > 0.98): pruning keeps 8 columns."""
    (root / "gas").mkdir(parents=True)
    base = RNG.normal(size=(n, 8))
    sensors = np.hstack([base + 0.01 * RNG.normal(size=(n, 8)), base])
    frame = pd.DataFrame(sensors, columns=[f"S{i}" for i in range(16)])
    frame.insert(0, "Eth", RNG.normal(size=n)), frame.insert(0, "Meth", RNG.normal(size=n))
    frame.insert(0, "Time", np.arange(n, dtype=float))
    frame.to_pickle(root / "gas" / "ethylene_CO.pickle")
    return base


def _hepmass(root, n_train=400, n_test=100):
    """label, 21 continuous features, 6 discrete features and the mass (itself discrete in HEPMASS)."""
    (root / "hepmass").mkdir(parents=True)
    for name, n, extra in (("1000_train.csv", n_train, False), ("1000_test.csv", n_test, True)):
        columns = {"# label": RNG.integers(0, 2, n).astype(float)}
        columns |= {f"f{i}": RNG.normal(size=n) for i in range(21)}
        columns |= {f"f{i}": RNG.integers(0, 3, n).astype(float) for i in range(21, 27)}
        columns["mass"] = RNG.choice([500.0, 750.0, 1000.0], n)
        if extra:
            columns["extra"] = np.zeros(n)
        pd.DataFrame(columns).to_csv(root / "hepmass" / name, index=False)


@pytest.mark.parametrize("module,write,dim", [
    (PowerDataModule, _power, 6), (GasDataModule, _gas, 8), (HepmassDataModule, _hepmass, 21),
    (MinibooneDataModule, _miniboone, 43),
])
def test_tabular_datamodules_read_the_maf_formats(tmp_path, module, write, dim):
    write(tmp_path)
    dm = module(root=str(tmp_path), batch_size=16)
    dm.prepare_data()
    dm.setup("fit")
    (x,) = next(iter(dm.train_dataloader()))
    assert module.data_shape == (dim,) and x.shape == (16, dim) and x.dtype == torch.float32
    train = torch.cat([batch[0] for batch in dm.train_dataloader()])
    if module is not GasDataModule:  # GAS is standardised over all rows, the others over training + validation
        reference = torch.cat([train, dm.val_set.tensors[0]])
        assert torch.allclose(reference.mean(0), torch.zeros(dim), atol=1e-5)
        assert torch.allclose(reference.std(0, unbiased=module is HepmassDataModule), torch.ones(dim), atol=1e-4)
    again = module(root=str(tmp_path))
    again.setup()
    assert torch.equal(again.test_set.tensors[0], dm.test_set.tensors[0])  # fixed MAF splits


def test_tail_splits_and_hepmass_signal_rows(tmp_path):
    _miniboone(tmp_path, n=300)
    dm = MinibooneDataModule(root=str(tmp_path))
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (243, 27, 30)
    raw = np.load(tmp_path / "miniboone" / "data.npy")
    stats = np.vstack([raw[:243], raw[243:270]])
    expected = (raw[-30:] - stats.mean(0)) / stats.std(0)
    assert np.allclose(dm.test_set.tensors[0].numpy(), expected, atol=1e-5)
    _hepmass(tmp_path)
    hep = HepmassDataModule(root=str(tmp_path))
    hep.setup()
    labels = pd.read_csv(tmp_path / "hepmass" / "1000_train.csv")["# label"].to_numpy()
    assert len(hep.train_set) + len(hep.val_set) == int((labels == 1).sum())


def test_gas_drops_the_correlated_copies(tmp_path):
    base = _gas(tmp_path)
    dm = GasDataModule(root=str(tmp_path))
    dm.setup()
    data = torch.cat([dm.train_set.tensors[0], dm.val_set.tensors[0], dm.test_set.tensors[0]]).double().numpy()
    expected = (base - base.mean(0)) / base.std(0, ddof=1)  # the exact copies survive, standardised
    assert np.allclose(data, expected, atol=1e-5)


def test_missing_and_malformed_files_say_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"zenodo.org/record/1161203.*power/data.npy"):
        PowerDataModule(root=str(tmp_path)).prepare_data()
    (tmp_path / "miniboone").mkdir()
    np.save(tmp_path / "miniboone" / "data.npy", np.zeros((50, 7)))
    with pytest.raises(ValueError, match=r"shape \(50, 7\), not \[N, 43\]"):
        MinibooneDataModule(root=str(tmp_path)).setup()


def test_noisy_sinusoid_lies_on_the_curve_up_to_the_noise():
    dm = NoisySinusoidDataModule(num_train=20_000, num_val=10, num_test=10, noise=0.1, seed=3)
    dm.setup()
    x, t = dm.train_set.tensors
    residual = x - torch.stack([t, torch.sin(torch.pi * t / 2)], dim=1)
    assert residual.std(0).tolist() == pytest.approx([0.1, 0.1], abs=0.003)
    assert t.mean().abs() < 0.03 and t.std().item() == pytest.approx(1.0, abs=0.02)
    same = NoisySinusoidDataModule(num_train=20_000, num_val=10, num_test=10, noise=0.1, seed=3)
    same.setup()
    assert torch.equal(same.test_set.tensors[0], dm.test_set.tensors[0])


def test_training_noise_jitters_only_the_training_split(tmp_path):
    _miniboone(tmp_path, n=300)
    dm = MinibooneDataModule(root=str(tmp_path), train_noise=0.01)
    dm.setup()
    clean = dm.train_set.tensors[0]
    jitter = torch.stack([dm.train_set[i][0] for i in range(len(clean))]) - clean
    assert jitter.std().item() == pytest.approx(0.01, rel=0.05)
    assert torch.equal(dm.val_set[0][0], dm.val_set.tensors[0][0])
