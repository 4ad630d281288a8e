"""Covariates from the datamodules' metadata (issue 28): each datamodule a scientist would condition serves
``covariate_columns`` aligned with the rows beneath its splits, its batches carry the codes once a conditional model
is attached, the conditional configs build, and bad covariates stop a run in one line before anything is written."""

import json
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from lvm.datamodules import ArrayDataModule, MocapDataModule, Shapes3DDataModule, VocalizationsDataModule
from lvm.datamodules.base import split_rows
from lvm.datamodules.miniatures import write_3dshapes, write_cmu_subject, write_vocalizations
from lvm.likelihoods import GaussianLikelihood
from lvm.model import LatentVariableModel
from lvm.networks import MLPDecoder
from lvm.objectives import QMCObjective
from lvm.priors import TorusPrior
from lvm.runs.cli import LVMCLI, cli_main
from lvm.runs.files import UsageError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
VOCALIZATIONS = CONFIGS / "qlvm_vocalizations_cpu_conditional.yaml"
MOCAP = CONFIGS / "qlvm_mocap_conditional.yaml"
FAST = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
        "--trainer.limit_test_batches", "1", "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--trainer.callbacks", "[]", "--model.eval_num_points", "55",
        "--model.eval_num_samples", "4", "--model.objective.init_args.num_points", "55"]


def _recordings(folder: Path, birds: int = 3, syllables: int = 10, size: int = 64, nan_at: int | None = None) -> Path:
    """One AVA-style HDF5 file per bird (``bird<k>.h5``, whose syllables' ``audio_filenames`` is ``bird<k>.wav``),
    ``size`` x ``size`` spectrograms, durations of 20-200 ms; ``nan_at``: that syllable of the first file has no
    mean frequency (NaN, as the preprocessing writes for a blank spectrogram)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for k in range(birds):
        path = write_vocalizations(folder / f"bird{k}.h5", syllables,
                                   specs=rng.random((syllables, size, size), dtype=np.float32))
        with h5py.File(path, "r+") as handle:
            handle["offsets"][...] = handle["onsets"][:] + rng.uniform(0.02, 0.2, syllables)
            if nan_at is not None and k == 0:
                handle["mean_freq"][nan_at] = np.nan
    return folder


def _model(data_shape, covariates: list[dict]) -> LatentVariableModel:
    return LatentVariableModel(MLPDecoder(list(data_shape), [8]), GaussianLikelihood(0.1), TorusPrior(2),
                               QMCObjective(89), covariates=covariates)


def _batches(datamodule) -> dict[str, list[tuple]]:
    """Every batch of the three loaders, each ``(x, label, codes)``."""
    loaders = {"train": datamodule.train_dataloader(), "val": datamodule.val_dataloader(),
               "test": datamodule.test_dataloader()}
    return {split: list(loader) for split, loader in loaders.items()}


def _described(model, batches: list[tuple]) -> list[dict]:
    """The raw covariate values of every example of ``batches``, from the codes they carry."""
    for batch in batches:
        assert len(batch) == 3 and batch[2].shape == (len(batch[0]), len(model.covariates.specs))
    return [row for batch in batches for row in model.covariates.describe(batch[2])]


def test_vocalization_batches_carry_the_recording_duration_and_mean_frequency(tmp_path):
    root = _recordings(tmp_path / "birds", birds=3, syllables=12, size=16)
    datamodule = VocalizationsDataModule(str(root), batch_size=5)  # label: the syllable's row
    model = _model((1, 16, 16), [{"key": "audio_filenames", "kind": "discrete"},
                                 {"key": "duration", "kind": "continuous", "levels": None},
                                 {"key": "mean_freq", "kind": "continuous"}])
    model.attach_covariates(datamodule)
    metadata = datamodule.metadata
    duration = metadata["offsets"] - metadata["onsets"]
    assert model.covariates.specs[0]["categories"] == ["bird0.wav", "bird1.wav", "bird2.wav"]
    for split, batches in _batches(datamodule).items():
        rows = torch.cat([batch[1] for batch in batches]).numpy()  # the syllables' rows beneath the splits
        assert sorted(rows) == sorted(datamodule.split_rows(split))
        described = _described(model, batches)
        assert [row["audio_filenames"] for row in described] == list(metadata["audio_filenames"][rows])
        np.testing.assert_allclose([row["duration"] for row in described], duration[rows], rtol=1e-5)
        np.testing.assert_allclose([row["mean_freq"] for row in described], metadata["mean_freq"][rows], rtol=1e-5)
    with pytest.raises(KeyError, match=f"'individual' is not a metadata field of {root}"):
        datamodule.covariate_columns(["individual"])


def test_mocap_of_two_subjects_splits_each_by_trial_and_batches_carry_the_subject(tmp_path):
    for subject in (54, 55):
        write_cmu_subject(tmp_path, subject=subject, trials=6, frames=16)
    datamodule = MocapDataModule(str(tmp_path), subjects=[54, 55], window=5, stride=5, batch_size=4)
    assert datamodule.data_shape == (5, 97)
    model = _model(datamodule.data_shape, [{"key": "subject", "kind": "discrete"}])
    model.attach_covariates(datamodule)
    metadata = datamodule.metadata
    assert len(metadata["subject"]) == 2 * 6 * 3  # per subject 4 trials train, 1 val, 1 test; 15 frames of features -> windows at 0, 5, 10
    assert list(metadata["trial"][:4]) == ["54_01"] * 3 + ["54_02"] and list(metadata["frame"][:3]) == [1, 6, 11]
    assert model.covariates.specs[0]["categories"] == ["54", "55"]
    labels = datamodule.train_set.dataset.tensors[1].numpy()  # each window's trial index [N]
    subject_of_trial = dict(zip(labels, metadata["subject"]))
    trials = {}
    for split, batches in _batches(datamodule).items():
        trial = torch.cat([batch[1] for batch in batches]).numpy()
        assert [int(row["subject"]) for row in _described(model, batches)] == [subject_of_trial[t] for t in trial]
        trials[split] = set(trial)
        assert {int(s) for s in metadata["subject"][split_rows(getattr(datamodule, f"{split}_set"))]} == {54, 55}
    assert trials["train"].isdisjoint(trials["test"]) and trials["val"].isdisjoint(trials["test"])
    assert trials["train"].isdisjoint(trials["val"])
    one = MocapDataModule(str(tmp_path), subject=55, window=5, stride=5)  # the old single-subject setting
    one.setup()
    assert set(one.metadata["subject"]) == {55} and len(one.metadata["trial"]) == 18
    with pytest.raises(KeyError, match=r"'speed' is not a metadata field of CMU mocap subject\(s\) \[54, 55\] in .*"
                                       r"subjects; choose one of \['frame', 'sequence', 'subject', 'time', 'trial'\]"):
        datamodule.covariate_columns(["speed"])


def test_3dshapes_factors_are_metadata_by_name_and_batches_carry_them(tmp_path):
    path = tmp_path / "3dshapes.h5"
    write_3dshapes(path, n=30)
    with h5py.File(path, "r+") as handle:  # factor values on a grid, as the real file's
        factors = handle["labels"][:]
        factors[:, 3] = np.linspace(0.75, 1.25, 8)[np.arange(30) % 8]  # scale
        factors[:, 4] = np.arange(30) % 4  # shape
        handle["labels"][...] = factors
    datamodule = Shapes3DDataModule(str(path), batch_size=4, num_workers=0)
    model = _model((3, 64, 64), [{"key": "shape", "kind": "discrete"}, {"key": "scale", "kind": "continuous"}])
    model.attach_covariates(datamodule)
    assert sorted(datamodule.metadata) == ["floor_hue", "object_hue", "orientation", "scale", "shape", "wall_hue"]
    assert model.covariates.specs[0]["categories"] == ["0", "1", "2", "3"]
    for split, batches in _batches(datamodule).items():
        labels = torch.cat([batch[1] for batch in batches]).numpy()  # the ground-truth factors [b, 6]
        described = _described(model, batches)
        assert [row["shape"] for row in described] == [str(int(value)) for value in labels[:, 4]]
        np.testing.assert_allclose([row["scale"] for row in described], labels[:, 3], rtol=1e-5)
    with pytest.raises(KeyError, match=f"'colour' is not a metadata field of {path}"):
        datamodule.covariate_columns(["colour"])


def test_own_data_batches_carry_metadata_table_columns_and_errors_name_the_table(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 5)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    table = pd.DataFrame({"animal": [f"mouse{k % 4}" for k in range(40)], "speed": rng.uniform(0, 3, 40)})
    table.to_csv(tmp_path / "meta.csv", index=False)
    datamodule = ArrayDataModule(str(tmp_path / "x.npy"), metadata=str(tmp_path / "meta.csv"), batch_size=8)
    model = _model((5,), [{"key": "animal", "kind": "discrete"}, {"key": "speed", "kind": "continuous",
                                                                "levels": None}])
    model.attach_covariates(datamodule)
    for batches in _batches(datamodule).values():
        rows = torch.cat([batch[1] for batch in batches]).numpy()  # label: the row
        described = _described(model, batches)
        assert [row["animal"] for row in described] == list(table.animal[rows])
        np.testing.assert_allclose([row["speed"] for row in described], table.speed[rows], rtol=1e-5)
    with pytest.raises(KeyError, match=f"'sex' is not a metadata field of {tmp_path / 'x.npy'} with metadata "
                                       f"{tmp_path / 'meta.csv'}; choose one of \\['animal', 'speed'\\]"):
        datamodule.covariate_columns(["sex"])
    bare = ArrayDataModule(str(tmp_path / "x.npy"))
    with pytest.raises(KeyError, match=r"give a metadata table: data.init_args.metadata"):
        bare.covariate_columns(["animal"])


def test_anndata_obs_columns_are_covariates(tmp_path):
    anndata = pytest.importorskip("anndata")
    rng = np.random.default_rng(0)
    obs = pd.DataFrame({"donor": [f"d{k % 3}" for k in range(30)]}, index=[f"cell{k}" for k in range(30)])
    anndata.AnnData(rng.poisson(2.0, (30, 6)).astype(np.float32), obs=obs).write_h5ad(tmp_path / "cells.h5ad")
    datamodule = ArrayDataModule(str(tmp_path / "cells.h5ad"), batch_size=8)
    model = _model((6,), [{"key": "donor", "kind": "discrete"}])
    model.attach_covariates(datamodule)
    for batches in _batches(datamodule).values():
        rows = torch.cat([batch[1] for batch in batches]).numpy()
        assert [row["donor"] for row in _described(model, batches)] == list(obs.donor.iloc[rows])


# ----- the conditional configs -------------------------------------------------------------------------------


def _cli(*args) -> LVMCLI:
    """The config's CLI as train.py builds it (links included), without training or writing a run."""
    with tempfile.TemporaryDirectory() as root:
        return LVMCLI([*args, "--trainer.default_root_dir", root, "--trainer.logger", "false"], fit_and_test=False)


def test_the_conditional_vocalization_config_conditions_on_the_bird_and_duration_and_every_bird_trains(tmp_path):
    root = _recordings(tmp_path / "birds", birds=4, syllables=10)
    cli = _cli("--config", str(VOCALIZATIONS), "--data.init_args.root", str(root))
    assert [(spec["key"], spec["kind"]) for spec in cli.model.covariates.specs] == [
        ("audio_filenames", "discrete"), ("duration", "continuous")]
    assert cli.datamodule.group_key is None and cli.model.decoder.data_shape == (1, 64, 64)
    cli.model.attach_covariates(cli.datamodule)  # split by syllable: every bird is in the training split
    assert cli.model.covariates.specs[0]["categories"] == [f"bird{k}.wav" for k in range(4)]
    x, _, codes = next(iter(cli.datamodule.test_dataloader()))
    assert codes.shape == (len(x), 2)


def test_the_conditional_mocap_config_reads_two_subjects_and_trains_on_the_subject(tmp_path):
    for subject in (54, 55):
        write_cmu_subject(tmp_path / "mocap", subject=subject, trials=6, frames=14)
    cli = _cli("--config", str(MOCAP), "--data.init_args.root", str(tmp_path / "mocap"))
    assert cli.datamodule.subjects == [54, 55] and cli.datamodule.data_shape == (10, 97)
    assert [spec["key"] for spec in cli.model.covariates.specs] == ["subject"]
    run = cli_main(["--config", str(MOCAP), "--data.init_args.root", str(tmp_path / "mocap"),
                    "--data.init_args.batch_size", "4", "--trainer.default_root_dir", str(tmp_path / "runs"), *FAST])
    assert run.model.hparams["covariates"][0]["categories"] == ["54", "55"]  # what the checkpoint keeps
    metrics = json.loads((Path(run.trainer.default_root_dir) / "metrics.json").read_text())
    assert np.isfinite(metrics["train/loss"]) and np.isfinite(metrics["test/log_likelihood"])


# ----- bad covariates: one line naming the data and what to do, nothing written -----------------------------


def _usage_error(tmp_path: Path, config: Path, *args) -> str:
    """The one-line message of a run that must stop before writing anything."""
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(UsageError) as error:
        cli_main(["--config", str(config), "--trainer.default_root_dir", str(tmp_path / "runs"), *FAST, *args])
    assert sorted(tmp_path.rglob("*")) == before  # no run directory, config, checkpoint or logger files
    message = str(error.value)
    assert "\n" not in message
    return message


def test_a_covariate_missing_from_the_metadata_stops_the_run_naming_the_data_and_the_fields(tmp_path):
    root = _recordings(tmp_path / "birds")
    message = _usage_error(tmp_path, VOCALIZATIONS, "--data.init_args.root", str(root),
                           "--model.covariates", "[{key: individual, kind: discrete}]")
    assert f"'individual' is not a metadata field of {root}; choose one of ['audio_filenames', 'mean_freq', " \
           "'offsets', 'onsets']" in message
    write_cmu_subject(tmp_path / "mocap", subject=54, trials=2, frames=12)
    message = _usage_error(tmp_path, MOCAP, "--data.init_args.root", str(tmp_path / "mocap"),
                           "--data.init_args.subjects", "[54]", "--model.covariates", "[{key: speed}]")
    assert "'speed' is not a metadata field of CMU mocap subject(s) [54]" in message and "'subject'" in message


def test_nan_covariate_values_stop_the_run_naming_the_data_and_the_row(tmp_path):
    root = _recordings(tmp_path / "birds", nan_at=0)
    message = _usage_error(tmp_path, VOCALIZATIONS, "--data.init_args.root", str(root), "--model.covariates",
                           "[{key: mean_freq, kind: continuous}]")
    assert str(root) in message and "covariate 'mean_freq' has 1 NaN or infinite value(s)" in message
    assert "fill or drop those rows" in message


def test_a_category_training_never_saw_stops_the_run_and_says_not_to_split_by_it(tmp_path):
    root = _recordings(tmp_path / "birds", birds=5, syllables=6)
    message = _usage_error(tmp_path, VOCALIZATIONS, "--data.init_args.root", str(root),
                           "--data.init_args.group_key", "audio_filenames")  # whole birds held out
    assert message.startswith(f"{root}: covariate 'audio_filenames' has categor")
    assert "that the training split never had" in message and "data.init_args.group_key" in message
    write_cmu_subject(tmp_path / "mocap", subject=54, trials=5, frames=12)
    message = _usage_error(tmp_path, MOCAP, "--data.init_args.root", str(tmp_path / "mocap"),
                           "--data.init_args.subjects", "[54]", "--model.covariates", "[{key: trial}]")
    assert "CMU mocap subject(s) [54]" in message and "covariate 'trial' has categor" in message
