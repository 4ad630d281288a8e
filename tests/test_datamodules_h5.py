"""3dShapes and vocalization datamodules on miniatures written in the real HDF5 / npz formats."""

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from lvm.datamodules import Shapes3DDataModule, VocalizationsDataModule
from lvm.datamodules.miniatures import write_3dshapes, write_vocalizations

RNG = np.random.default_rng(0)


def test_3dshapes_loads_lazily_with_seeded_disjoint_splits(tmp_path):
    path = write_3dshapes(tmp_path / "3dshapes.h5")
    dm = Shapes3DDataModule(str(path), batch_size=5, num_workers=0)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (28, 4, 8)
    x, factors = next(iter(dm.train_dataloader()))
    assert x.shape == (5, 3, 64, 64) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert factors.shape == (5, 6) and factors.dtype == torch.float32
    rows = [set(split.rows[i][1] for i in range(len(split))) for split in (dm.train_set, dm.val_set, dm.test_set)]
    assert rows[0].isdisjoint(rows[2]) and rows[1].isdisjoint(rows[2]) and len(set.union(*rows)) == 40
    again = Shapes3DDataModule(str(path))
    again.setup()
    assert again.test_set.rows == dm.test_set.rows
    with h5py.File(path, "r") as handle:  # items are the file's rows, scaled
        row = dm.test_set.rows[0][1]
        assert torch.allclose(dm.test_set[0][0], torch.from_numpy(handle["images"][row]).permute(2, 0, 1) / 255.0)
        assert torch.allclose(dm.test_set[0][1], torch.from_numpy(handle["labels"][row]).float())


def test_3dshapes_reads_through_two_workers_without_loading_the_file(tmp_path):
    dm = Shapes3DDataModule(str(write_3dshapes(tmp_path / "3dshapes.h5")), subset=30, batch_size=4, num_workers=2)
    dm.setup()
    assert dm.train_set.cache is None and len(dm.train_set) == 21
    seen = sum(len(x) for x, _ in DataLoader(dm.train_set, batch_size=4, num_workers=2))
    assert seen == 21 and dm.train_set._handles is None  # only the workers opened the file
    cached = Shapes3DDataModule(str(tmp_path / "3dshapes.h5"), subset=30, in_memory=True)
    cached.setup()
    assert cached.train_set.cache.shape == (21, 64, 64, 3)
    assert torch.equal(cached.train_set[3][0], dm.train_set[3][0])


@pytest.mark.parametrize("kind,error,message", [
    ("missing", FileNotFoundError, "3dshapes.h5"),
    ("no_labels", KeyError, "no dataset 'labels'"),
    ("shape", ValueError, r"shape \(10, 32, 32, 3\), expected \(N, 64, 64, 3\)"),
    ("nan", ValueError, "NaN"),
])
def test_3dshapes_errors_name_the_file_and_the_problem(tmp_path, kind, error, message):
    path = tmp_path / "3dshapes.h5"
    if kind != "missing":
        write_3dshapes(path, n=10, image_shape=(32, 32, 3) if kind == "shape" else (64, 64, 3), nan=kind == "nan",
                labels=kind != "no_labels")
    with pytest.raises(error, match=message) as info:
        Shapes3DDataModule(str(path)).prepare_data()
    assert str(path) in str(info.value)


def test_vocalizations_read_a_directory_of_files_with_metadata_labels(tmp_path):
    write_vocalizations(tmp_path / "bird_a.h5", 12)
    write_vocalizations(tmp_path / "bird_b.hdf5", 8)
    dm = VocalizationsDataModule(str(tmp_path), label_key="mean_freq", batch_size=4)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (14, 2, 4)
    x, label = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 1, 128, 128) and 0 <= x.min() and x.max() <= 1 and label.dtype == torch.float32
    assert set(dm.metadata) == {"onsets", "offsets", "audio_filenames", "mean_freq"} and len(dm.metadata["onsets"]) == 20
    assert dm.metadata["audio_filenames"][15] == "bird_b.wav"
    index = dm.test_set.indices[0]
    assert dm.test_set[0][1].item() == pytest.approx(dm.metadata["mean_freq"][index])
    again = VocalizationsDataModule(str(tmp_path))
    again.setup()
    assert again.test_set.indices == dm.test_set.indices and set(again.train_set.indices).isdisjoint(again.test_set.indices)


def test_vocalizations_from_npz_are_scaled_to_the_unit_interval(tmp_path):
    specs = RNG.normal(size=(10, 128, 128)).astype(np.float32) * 20  # log-magnitudes, not yet scaled
    np.savez(tmp_path / "calls.npz", specs=specs, family=np.array(["a", "b"] * 5))
    dm = VocalizationsDataModule(str(tmp_path / "calls.npz"), label_key="family", batch_size=10, test_fraction=0.0,
                                 val_fraction=0.0)
    dm.setup()
    x, label = next(iter(DataLoader(dm.train_set, batch_size=10)))
    assert x.min() >= 0 and x.max() <= 1 and x.max() == 1.0 and set(label.tolist()) == {0, 1}


@pytest.mark.parametrize("kind,error,message", [
    ("missing", FileNotFoundError, "vocalizations.preprocess"),
    ("key", KeyError, "no dataset 'specs'"),
    ("shape", ValueError, r"calls.h5: dataset 'specs' has shape \(3, 64, 64\), expected \(N, 128, 128\)"),
    ("nan", ValueError, "NaN"),
])
def test_vocalization_errors_name_the_file_and_the_problem(tmp_path, kind, error, message):
    path = tmp_path / "calls.h5"
    if kind == "key":
        write_vocalizations(path, 3, key="spectrograms")
    elif kind == "shape":  # every file's spectrograms must have the first file's size
        write_vocalizations(tmp_path / "a_first.h5", 3)
        write_vocalizations(path, 3, specs=np.zeros((3, 64, 64), dtype=np.float32))
    elif kind == "nan":
        write_vocalizations(path, 3, specs=np.full((3, 128, 128), np.nan, dtype=np.float32))
    with pytest.raises(error, match=message) as info:
        VocalizationsDataModule(str(tmp_path)).setup()
    assert str(tmp_path) in str(info.value)


def test_3dshapes_embeddings_are_plotted_per_factor(tmp_path):
    from lvm.runs.cli import cli_main

    path = write_3dshapes(tmp_path / "3dshapes.h5", n=40)
    config = tmp_path / "shapes.yaml"
    config.write_text(f"""
trainer:
  callbacks:
    - class_path: lvm.callbacks.LatentPlots
      init_args:
        per_side: 3
model:
  decoder:
    class_path: lvm.networks.MLPDecoder
    init_args:
      data_shape: [3, 64, 64]
      hidden: [8]
  likelihood:
    class_path: lvm.likelihoods.GaussianLikelihood
  prior:
    class_path: lvm.priors.TorusPrior
  objective:
    class_path: lvm.objectives.QMCObjective
    init_args:
      num_points: 89
  eval_num_points: 233
data:
  class_path: lvm.datamodules.Shapes3DDataModule
  init_args:
    path: {path}
    batch_size: 8
    num_workers: 0
""")
    cli = cli_main(["--config", str(config), "--trainer.default_root_dir", str(tmp_path / "runs"), "--trainer.max_epochs", "1",
                    "--trainer.logger", "lightning.pytorch.loggers.CSVLogger", "--trainer.enable_progress_bar", "false"])
    plots = {p.name for p in (tmp_path / "runs").glob("*/plots/*.png")}
    assert {f"embedding_{name}.png" for name in ("floor_hue", "shape", "orientation")} <= plots
    assert cli.trainer.callback_metrics["test/log_likelihood"].isfinite()


def test_an_npz_with_a_pandas_object_column_says_which_key_and_how_to_save_it(tmp_path):
    import pandas as pd

    table = pd.DataFrame({"species": ["zebra finch", "canary"] * 5, "onset": np.arange(10.0)})
    path = tmp_path / "calls.npz"
    np.savez(path, specs=np.random.default_rng(0).random((10, 16, 16)), species=table["species"].to_numpy(),
             onset=table["onset"].to_numpy())  # object array: numpy pickles it
    dm = VocalizationsDataModule(str(path), batch_size=5)
    message = r"calls.npz: array 'species' holds Python objects .*species=np.asarray\(column, dtype=str\)"
    with pytest.raises(ValueError, match=message):
        dm.prepare_data()  # the check the CLI runs before anything is written
    with pytest.raises(ValueError, match=message):
        dm.setup("fit")
    np.savez(path, specs=np.random.default_rng(0).random((10, 16, 16)),
             species=np.asarray(table["species"], dtype=str), onset=table["onset"].to_numpy())  # as the message says
    dm = VocalizationsDataModule(str(path), label_key="species", batch_size=5)
    dm.prepare_data()
    dm.setup("fit")
    assert sorted(dm.label_names) == ["canary", "zebra finch"]
