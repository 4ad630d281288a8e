"""Embedding export (:mod:`lvm.analysis.embedding`, ``python -m lvm.tools.embed``): the rows, the values, the provenance."""

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from torch import nn

from lvm.datamodules import VocalizationsDataModule
from lvm.datamodules.miniatures import write_vocalizations
from lvm.tools import embed
from lvm.batches import batch_data
from lvm.analysis.embedding import embedding_table, posterior_summary
from lvm.analysis.provenance import read_embedding
from lvm.runs.files import load_checkpoint
from lvm.likelihoods import BernoulliLikelihood, GaussianLikelihood
from lvm.model import LatentVariableModel
from lvm.networks import ConvDecoder
from lvm.priors import StandardNormalPrior, TorusPrior
from lvm.objectives import QMCObjective

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".npz"])
def test_export_of_the_quickstart_checkpoint_has_every_example_values_and_provenance(quickstart_checkpoint, tmp_path,
                                                                                     suffix, capsys):
    out = tmp_path / f"embedding{suffix}"
    embed.main(["--ckpt", str(quickstart_checkpoint), "--out", str(out)])
    assert "Wrote 1797 rows (train 1258, val 180, test 359)" in capsys.readouterr().out
    table, record = read_embedding(out)
    model, datamodule = load_checkpoint(quickstart_checkpoint)
    datamodule.setup("fit")
    for split in ("train", "val", "test"):  # one row per example, in the split's order
        rows = table[table["split"] == split]
        assert len(rows) == len(getattr(datamodule, f"{split}_set"))
        assert rows["index"].tolist() == list(range(len(rows)))
    assert table["example"].sort_values().tolist() == list(range(1797))  # the splits partition the digits
    assert {"z1", "z2", "mode1", "mode2", "spread1", "spread2", "entropy", "log_likelihood", "label"} <= set(table)

    test = table[table["split"] == "test"]
    x = torch.cat([batch_data(batch) for batch in datamodule.test_dataloader()])
    labels = torch.cat([batch[1] for batch in datamodule.test_dataloader()])
    np.testing.assert_allclose(test[["z1", "z2"]].to_numpy(), model.embed(x).double().numpy(), atol=1e-6)
    np.testing.assert_allclose(test[["mode1", "mode2"]].to_numpy(), model.embed(x, "mode").double().numpy(), atol=1e-6)
    np.testing.assert_array_equal(test["label"].to_numpy(), labels.numpy())
    with torch.no_grad():
        expected = model.evaluation.log_likelihood(model, x[:64])["log_likelihood"].double().numpy()
    np.testing.assert_allclose(test["log_likelihood"].to_numpy()[:64], expected, rtol=1e-5)

    assert record["checkpoint_sha256"] == hashlib.sha256(quickstart_checkpoint.read_bytes()).hexdigest()
    assert record["config"] == yaml.safe_load((quickstart_checkpoint.parents[1] / "config.yaml").read_text())
    assert record["epoch"] == 0 and record["global_step"] == 5
    assert record["data_sha256"]["test"] == hashlib.sha256(x.to(torch.float32).numpy().tobytes()).hexdigest()
    assert len(record["git"]["commit"]) == 40
    assert json.loads(Path(f"{out}.provenance.json").read_text())["checkpoint_sha256"] == record["checkpoint_sha256"]


def test_notebook_api_returns_the_same_table(quickstart_checkpoint):
    model, datamodule = load_checkpoint(quickstart_checkpoint)
    table, _ = embedding_table(model, datamodule, splits=("val",), log_likelihood=False)
    assert list(table["split"].unique()) == ["val"] and len(table) == 180 and "log_likelihood" not in table
    x = torch.cat([batch_data(batch) for batch in datamodule.val_dataloader()])
    np.testing.assert_allclose(table[["z1", "z2"]].to_numpy(), model.embed(x).double().numpy(), atol=1e-6)


def test_bad_arguments_are_one_line_errors_and_write_nothing(quickstart_checkpoint, tmp_path, capsys):
    cases = [(["--ckpt", str(tmp_path / "missing.ckpt"), "--out", str(tmp_path / "a.csv")], "does not exist"),
             (["--ckpt", str(quickstart_checkpoint), "--out", str(tmp_path / "a.txt")], "suffix picks the format"),
             (["--ckpt", str(quickstart_checkpoint), "--out", str(tmp_path / "a.csv"), "--bogus", "1"], "unknown option"),
             (["--ckpt", str(quickstart_checkpoint), "--out", str(tmp_path / "a.csv"), "--data.init_args.bogus", "1"],
              "does not take these arguments")]
    for argv, message in cases:
        with pytest.raises(SystemExit) as stop:
            embed.main(argv)
        assert stop.value.code == 2
        error = capsys.readouterr().err
        assert error.startswith("error: ") and message in error and error.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_data_overrides_reach_the_datamodule(quickstart_checkpoint, tmp_path):
    embed.main(["--ckpt", str(quickstart_checkpoint), "--out", str(tmp_path / "e.csv"), "--splits", "test",
                "--data.init_args.test_fraction", "0.5", "--log_likelihood", "false"])
    table, record = read_embedding(tmp_path / "e.csv")
    assert len(table) == round(0.5 * 1797) and record["settings"]["data_overrides"] == {"test_fraction": 0.5}


def test_metadata_fields_and_label_names_become_columns(tmp_path):
    folder = tmp_path / "specs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, n in (("bird_a", 12), ("bird_b", 9)):
        write_vocalizations(folder / f"{name}.h5", n, specs=rng.random((n, 16, 16)).astype(np.float32))
    datamodule = VocalizationsDataModule(str(folder), label_key="audio_filenames", batch_size=8)
    decoder = ConvDecoder(image_size=16, hidden=8, channels=[4, 4])
    model = LatentVariableModel(decoder, BernoulliLikelihood(), TorusPrior(2), QMCObjective(55), eval_num_points=89,
                                eval_num_samples=4)
    table, _ = embedding_table(model, datamodule)
    assert len(table) == 21
    metadata = datamodule.metadata
    rows = table["example"].to_numpy()
    np.testing.assert_array_equal(table["onsets"].to_numpy(), metadata["onsets"][rows])
    np.testing.assert_array_equal(table["mean_freq"].to_numpy(), metadata["mean_freq"][rows])
    assert set(table["audio_filenames"]) == {"bird_a.wav", "bird_b.wav"}
    assert (table["label_name"] == table["audio_filenames"]).all()


class ConstantDecoder(nn.Module):
    """Ignores z: every posterior equals the prior."""

    def __init__(self, size: int):
        super().__init__()
        self.out = nn.Parameter(torch.zeros(size))

    def forward(self, features):
        return self.out.expand(len(features), -1)


@pytest.mark.usefixtures("float64")
def test_posterior_entropy_of_a_decoder_that_ignores_z_is_the_priors():
    """Uniform lattice weights: h = E_prior[-log p(z)] = 0 on the unit torus, (d/2) log(2 pi e) for N(0, I_d)."""
    x = torch.randn(3, 4)
    torus = LatentVariableModel(ConstantDecoder(4), GaussianLikelihood(1.0), TorusPrior(2), QMCObjective(55))
    summary = posterior_summary(torus, x, num_points=2584)
    np.testing.assert_allclose(summary["entropy"].numpy(), 0.0, atol=1e-9)
    normal = LatentVariableModel(ConstantDecoder(4), GaussianLikelihood(1.0), StandardNormalPrior(2), QMCObjective(55))
    summary = posterior_summary(normal, x, num_points=10946)
    np.testing.assert_allclose(summary["entropy"].numpy(), math.log(2 * math.pi * math.e), rtol=0.02)
    np.testing.assert_allclose(summary["spread"].numpy(), 1.0, rtol=0.03)


@pytest.mark.usefixtures("float64")
def test_posterior_summary_of_a_linear_gaussian_model_is_the_exact_gaussian_posterior():
    """PPCA: p(z | x) = N(M^{-1} W^T (x - b), s2 M^{-1}) with M = W^T W + s2 I (Tipping & Bishop 1999)."""
    s2, weight = 0.5, torch.tensor([[1.2, 0.0], [0.0, 0.7], [0.0, 0.0]])
    decoder = nn.Linear(2, 3)
    with torch.no_grad():
        decoder.weight.copy_(weight)
        decoder.bias.zero_()
    model = LatentVariableModel(decoder, GaussianLikelihood(s2, "identity"), StandardNormalPrior(2), QMCObjective(55))
    x = torch.tensor([[0.5, -0.3, 0.1], [-1.0, 0.4, 0.0]])
    m = weight.T @ weight + s2 * torch.eye(2)
    covariance = s2 * torch.linalg.inv(m)
    mean = x @ torch.linalg.solve(m, weight.T).T
    summary = posterior_summary(model, x, num_points=75025)
    np.testing.assert_allclose(summary["mean"].numpy(), mean.numpy(), atol=2e-3)
    np.testing.assert_allclose(summary["spread"].numpy(), covariance.diagonal().sqrt().expand(2, 2).numpy(), rtol=0.01)
    exact_entropy = 0.5 * torch.logdet(2 * math.pi * math.e * covariance)
    np.testing.assert_allclose(summary["entropy"].numpy(), exact_entropy.item(), atol=0.02)


def test_embed_loader_computes_a_test_embedding_once_until_the_parameters_change(quickstart_checkpoint, monkeypatch):
    from lvm.analysis.embedding import embed_loader

    model, datamodule = load_checkpoint(quickstart_checkpoint)
    datamodule.setup("test")
    calls = []
    embed = model.embed
    monkeypatch.setattr(model, "embed", lambda *args: calls.append(1) or embed(*args))
    first, labels = embed_loader(model, datamodule.test_dataloader())
    batches = len(calls)
    x = torch.cat([batch_data(batch) for batch in datamodule.test_dataloader()])
    np.testing.assert_allclose(first.numpy(), embed(x).numpy(), atol=1e-6)
    assert labels.tolist() == torch.cat([batch[1] for batch in datamodule.test_dataloader()]).tolist()
    assert embed_loader(model, datamodule.test_dataloader())[0] is first and len(calls) == batches  # reused
    assert embed_loader(model, datamodule.test_dataloader(), "mode") is not None and len(calls) == 2 * batches
    with torch.no_grad():
        next(model.decoder.parameters()).add_(0.1)  # an optimiser step or a loaded checkpoint changes them in place
    changed, _ = embed_loader(model, datamodule.test_dataloader(), "mode")
    assert len(calls) == 3 * batches
