"""A scientist's own data (lvm.datamodules.ArrayDataModule): every format gives the same numbers, metadata joins and
reaches the export, the transform is fitted on the training split and travels in checkpoints, bad input is one line
naming the file with nothing written, and a memory-mapped .npy larger than the memory limit trains."""

import os
import resource
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from lvm.datamodules import ArrayDataModule
from lvm.runs.cli import cli_main
from lvm.runs.files import UsageError, load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
COUNTS = str(ROOT / "configs" / "qlvm_counts.yaml")
ARRAY = str(ROOT / "configs" / "qlvm_array.yaml")
FAST = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3", "--trainer.logger", "false",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--model.eval_num_points", "89", "--model.objective.init_args.num_points", "55", "--trainer.callbacks", "[]"]


def _array(n=40, d=6, seed=0):
    return np.random.default_rng(seed).poisson(3.0, size=(n, d)).astype(np.float32)


def _all_rows(datamodule) -> np.ndarray:
    """Every example in the data set's order, through the datamodule's own training loader and splits."""
    datamodule.setup("fit")
    rows = {}
    for part in (datamodule.train_set, datamodule.val_set, datamodule.test_set):
        for position, index in enumerate(part.indices):
            rows[index] = part[position][0].numpy()
    return np.stack([rows[i] for i in range(len(rows))])


def _write_all_formats(folder: Path, x: np.ndarray) -> dict[str, dict]:
    anndata = pytest.importorskip("anndata")
    scipy_sparse = pytest.importorskip("scipy.sparse")
    columns = [f"gene_{k}" for k in range(x.shape[1])]
    np.save(folder / "x.npy", x)
    np.savez(folder / "x.npz", counts=x, cell=np.asarray([f"c{i}" for i in range(len(x))]))
    table = pd.DataFrame(x, columns=columns).assign(cell=[f"c{i}" for i in range(len(x))])
    table.to_csv(folder / "x.csv", index=False)
    table.to_csv(folder / "x.tsv", index=False, sep="\t")
    table.to_parquet(folder / "x.parquet")
    with h5py.File(folder / "x.h5", "w") as handle:
        handle["counts"], handle["cell"] = x, np.asarray([f"c{i}" for i in range(len(x))], dtype="S")
    obs = pd.DataFrame({"donor": [f"d{i % 3}" for i in range(len(x))]}, index=[f"c{i}" for i in range(len(x))])
    anndata.AnnData(X=x, obs=obs).write_h5ad(folder / "dense.h5ad")
    anndata.AnnData(X=scipy_sparse.csr_matrix(x), obs=obs).write_h5ad(folder / "sparse.h5ad")
    anndata.AnnData(X=np.zeros_like(x), obs=obs, layers={"counts": scipy_sparse.csr_matrix(x)}).write_h5ad(
        folder / "layer.h5ad")
    return {"x.npy": {}, "x.npz": {"key": "counts"}, "x.csv": {}, "x.tsv": {"features": columns},
            "x.parquet": {"features": "gene_"}, "x.h5": {"key": "counts"}, "dense.h5ad": {}, "sparse.h5ad": {},
            "layer.h5ad": {"key": "counts"}}


def test_every_format_gives_the_same_numbers_and_its_metadata(tmp_path):
    x = _array()
    for name, options in _write_all_formats(tmp_path, x).items():
        datamodule = ArrayDataModule(str(tmp_path / name), **options)
        assert datamodule.data_shape == (6,), name
        np.testing.assert_array_equal(_all_rows(datamodule), x, err_msg=name)
        if name != "x.npy":  # the format's own per-row fields
            field = "obs_name" if name.endswith(".h5ad") else "cell"
            assert list(datamodule.metadata[field][:2]) == ["c0", "c1"], name


def test_a_metadata_table_joins_by_row_order_or_by_id_and_sets_labels_groups_and_splits(tmp_path):
    x = _array(60)
    np.save(tmp_path / "x.npy", x)
    meta = pd.DataFrame({"cell": [f"c{i}" for i in range(60)], "animal": [f"a{i % 4}" for i in range(60)],
                         "speed": np.arange(60) / 10, "split": ["train"] * 40 + ["val"] * 10 + ["test"] * 10})
    meta.to_csv(tmp_path / "meta.csv", index=False)
    datamodule = ArrayDataModule(str(tmp_path / "x.npy"), metadata=str(tmp_path / "meta.csv"), label_key="animal",
                                 split_key="split")
    datamodule.setup("fit")
    assert [len(datamodule.train_set), len(datamodule.val_set), len(datamodule.test_set)] == [40, 10, 10]
    assert datamodule.label_names == ["a0", "a1", "a2", "a3"]
    assert datamodule.train_set[5][1].item() == 1  # row 5 is a1
    grouped = ArrayDataModule(str(tmp_path / "x.npy"), metadata=str(tmp_path / "meta.csv"), group_key="animal")
    grouped.setup("fit")
    animals = [set(meta.animal[part.indices]) for part in (grouped.train_set, grouped.val_set, grouped.test_set)]
    assert all(not (a & b) for a, b in [(animals[0], animals[1]), (animals[0], animals[2]), (animals[1], animals[2])])

    table = pd.DataFrame(x, columns=[f"f{k}" for k in range(6)]).assign(cell=[f"c{i}" for i in range(60)])
    table.to_csv(tmp_path / "x.csv", index=False)
    meta.sample(frac=1.0, random_state=0).to_parquet(tmp_path / "shuffled.parquet")  # another order: join by id
    joined = ArrayDataModule(str(tmp_path / "x.csv"), metadata=str(tmp_path / "shuffled.parquet"), id_column="cell")
    joined.prepare_data()
    np.testing.assert_allclose(joined.metadata["speed"], np.arange(60) / 10)
    assert joined.data_shape == (6,)  # the id column is not a feature


def test_images_of_a_folder_are_grey_or_rgb_resized_to_one_size_in_the_unit_interval(tmp_path):
    from PIL import Image

    folder = tmp_path / "images"
    (folder / "mouse1").mkdir(parents=True)
    (folder / "mouse2").mkdir()
    ramp = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (8, 1))  # [8, 16]
    Image.fromarray(ramp).save(folder / "mouse1" / "a.png")
    Image.fromarray((ramp.astype(np.uint16) * 257)).save(folder / "mouse1" / "b.tif")  # 16-bit
    Image.fromarray(np.stack([ramp] * 3, -1)).save(folder / "mouse2" / "c.jpg", quality=100)
    grey = ArrayDataModule(str(folder), image_size=[4, 8], channels=1, val_fraction=0.0, test_fraction=0.0)
    assert grey.data_shape == (1, 4, 8)
    rows = _all_rows(grey)
    assert rows.shape == (3, 1, 4, 8) and rows.min() >= 0 and rows.max() <= 1
    np.testing.assert_allclose(rows[0], rows[1], atol=1e-3)  # 8- and 16-bit versions of one image agree
    assert list(grey.metadata["path"]) == ["mouse1/a.png", "mouse1/b.tif", "mouse2/c.jpg"]
    assert list(grey.metadata["folder"]) == ["mouse1", "mouse1", "mouse2"]
    assert ArrayDataModule(str(folder / "mouse2")).data_shape == (3, 8, 16)  # RGB, own size


def test_the_transform_is_fitted_on_the_training_split_and_restored_from_the_state(tmp_path):
    x = _array(50) * np.arange(1, 7, dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    datamodule = ArrayDataModule(str(tmp_path / "x.npy"), transform="standardize")
    datamodule.setup("fit")
    train = x[datamodule.train_set.indices]
    np.testing.assert_allclose(datamodule.transform.offset, train.mean(0), rtol=1e-5)
    np.testing.assert_allclose(datamodule.transform.scale, train.std(0), rtol=1e-5)
    np.testing.assert_allclose(datamodule.train_set[0][0].numpy(), (train[0] - train.mean(0)) / train.std(0), atol=1e-5)
    again = ArrayDataModule(str(tmp_path / "x.npy"), transform="standardize", val_fraction=0.5)  # another split
    again.load_state_dict(datamodule.state_dict())
    again.setup("fit")
    np.testing.assert_array_equal(again.transform.offset, datamodule.transform.offset)  # kept, not refitted
    new = again.transform_array(x[:3])
    np.testing.assert_allclose(again.inverse_transform_array(new), x[:3], rtol=1e-5)
    with pytest.raises(ValueError, match=r"shape \[3, 5\].*\[n, 6\]"):
        again.transform_array(x[:3, :5])
    minmax = ArrayDataModule(str(tmp_path / "x.npy"), transform="minmax")
    minmax.setup("fit")
    scaled = torch.stack([minmax.train_set[i][0] for i in range(len(minmax.train_set))])
    assert torch.allclose(scaled.amin(0), torch.zeros(6)) and torch.allclose(scaled.amax(0), torch.ones(6))
    log1p = ArrayDataModule(str(tmp_path / "x.npy"), transform="log1p", val_fraction=0.0, test_fraction=0.0)
    np.testing.assert_allclose(_all_rows(log1p), np.log1p(x), rtol=1e-6)


def _usage_error(tmp_path, *args, config=COUNTS) -> str:
    """The one-line message of a run that must stop before writing anything."""
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(UsageError) as error:
        cli_main(["--config", config, "--trainer.default_root_dir", str(tmp_path / "runs"), *FAST, *args])
    assert sorted(tmp_path.rglob("*")) == before  # no run directory, config or logger files
    message = str(error.value)
    assert "\n" not in message
    return message


def test_bad_input_is_one_line_naming_the_file_and_nothing_is_written(tmp_path):
    counts = _array(30)
    np.save(tmp_path / "counts.npy", counts)
    nan = counts.copy()
    nan[7, 2] = np.nan
    nan[9, 0] = np.inf
    np.save(tmp_path / "nan.npy", nan)
    np.save(tmp_path / "real.npy", counts + 0.5)
    negative = counts.copy()
    negative[4, 1] = -2
    np.save(tmp_path / "negative.npy", negative)
    pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}).to_csv(tmp_path / "text.csv", index=False)
    pd.DataFrame({"animal": ["a"] * 29}).to_csv(tmp_path / "short.csv", index=False)
    np.savez(tmp_path / "two.npz", counts=counts, other=counts)
    (tmp_path / "empty").mkdir()
    path = "--data.init_args.path"
    assert "NaN or infinite" in _usage_error(tmp_path, path, str(tmp_path / "nan.npy"))
    assert "2 NaN or infinite value(s), the first at row 7, index 2" in _usage_error(
        tmp_path, path, str(tmp_path / "nan.npy"))
    message = _usage_error(tmp_path, path, str(tmp_path / "real.npy"))
    assert "real.npy: 180 non-integer value(s), the first at row 0, index 0" in message and "Gaussian" in message
    assert "negative.npy: 1 negative value(s), the first at row 4, index 1" in _usage_error(
        tmp_path, path, str(tmp_path / "negative.npy"))
    assert "set data.init_args.transform: none" in _usage_error(
        tmp_path, path, str(tmp_path / "counts.npy"), "--data.init_args.transform", "standardize")
    assert "text.csv: feature column(s) ['b'] are not numeric (e.g. {'b': 'x'})" in _usage_error(
        tmp_path, path, str(tmp_path / "text.csv"), "--data.init_args.features", "[a, b]")
    assert "short.csv has 29 rows but" in _usage_error(
        tmp_path, path, str(tmp_path / "counts.npy"), "--data.init_args.metadata", str(tmp_path / "short.csv"))
    assert "two.npz: holds the arrays ['counts', 'other']; name the data with data.init_args.key" in _usage_error(
        tmp_path, path, str(tmp_path / "two.npz"))
    assert "two.npz: no array 'spikes'; it has ['counts', 'other']" in _usage_error(
        tmp_path, path, str(tmp_path / "two.npz"), "--data.init_args.key", "spikes")
    assert "empty: no images" in _usage_error(tmp_path, path, str(tmp_path / "empty"))
    assert "absent.npy: no such file" in _usage_error(tmp_path, path, str(tmp_path / "absent.npy"))
    assert "label_key 'animal' is not a metadata field" in _usage_error(
        tmp_path, path, str(tmp_path / "counts.npy"), "--data.init_args.label_key", "animal")


def test_the_counts_config_states_the_shape_once_and_tools_see_metadata_and_the_transform(tmp_path):
    x = _array(80, 5)
    np.save(tmp_path / "counts.npy", x)
    pd.DataFrame({"animal": [f"a{i % 2}" for i in range(80)], "z1": np.arange(80)}).to_csv(tmp_path / "m.csv",
                                                                                           index=False)
    cli = cli_main(["--config", COUNTS, "--trainer.default_root_dir", str(tmp_path / "runs"), *FAST,
                    "--data.init_args.path", str(tmp_path / "counts.npy"), "--data.init_args.metadata",
                    str(tmp_path / "m.csv"), "--data.init_args.label_key", "animal"])
    run = Path(cli.trainer.default_root_dir)
    assert cli.model.decoder.data_shape == (5,)
    assert "data_shape:\n      - 5" in (run / "config.yaml").read_text()
    model, datamodule = load_checkpoint(run / "checkpoints" / "last.ckpt")
    from lvm.analysis.embedding import embedding_table
    table, _ = embedding_table(model, datamodule, log_likelihood=False)
    assert list(table.sort_values("example").animal[:3]) == ["a0", "a1", "a0"]
    np.testing.assert_array_equal(table.sort_values("example").meta_z1, np.arange(80))  # not over the embedding's z1
    assert not np.array_equal(table.sort_values("example").z1, np.arange(80))

    features = pd.DataFrame(x * 3 + 1, columns=list("abcde")).assign(animal=[f"a{i % 2}" for i in range(80)])
    features.to_csv(tmp_path / "features.csv", index=False)
    cli = cli_main(["--config", ARRAY, "--trainer.default_root_dir", str(tmp_path / "runs"), *FAST,
                    "--data.init_args.path", str(tmp_path / "features.csv")])
    fitted = cli.datamodule.transform.offset
    model, datamodule = load_checkpoint(Path(cli.trainer.default_root_dir) / "checkpoints" / "last.ckpt",
                                        {"val_fraction": 0.5})  # another split: the run's transform all the same
    datamodule.setup("fit")
    np.testing.assert_array_equal(datamodule.transform.offset, fitted)
    assert model.likelihood.variance.shape == (5,)  # learned per feature


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_DATA counts private memory on Linux")
def test_a_memory_mapped_npy_larger_than_the_memory_limit_trains_an_epoch(tmp_path):
    """RLIMIT_DATA bounds the process's private memory (heap, anonymous maps) but not a file mapped read-only: an
    epoch over a 1.2 GB .npy runs under a limit 600 MB above what the process needs, and reading the file whole fails
    under the same limit (the control)."""
    rows, width = 150_000, 2_000  # 1.2 GB of float32
    data = np.lib.format.open_memmap(tmp_path / "big.npy", mode="w+", dtype=np.float32, shape=(rows, width))
    for start in range(0, rows, 10_000):
        data[start:start + 10_000] = np.random.default_rng(start).poisson(2.0, (10_000, width))
    data.flush()
    del data
    script = textwrap.dedent(f"""
        import resource, sys
        import numpy as np
        from lvm.runs.cli import cli_main
        from lvm.datamodules import ArrayDataModule
        soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
        used = int(open("/proc/self/status").read().split("VmData:")[1].split()[0]) * 1024
        resource.setrlimit(resource.RLIMIT_DATA, (used + 600 * 2**20, hard))
        if sys.argv[1] == "load":
            np.load("{tmp_path / 'big.npy'}")
        cli_main(["--config", "{COUNTS}", "--trainer.default_root_dir", "{tmp_path / 'runs'}",
                  "--data.init_args.path", "{tmp_path / 'big.npy'}", "--data.init_args.batch_size", "256", "--model.eval_num_samples", "8",
                  "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "20", "--trainer.limit_val_batches",
                  "2", "--trainer.limit_test_batches", "1", "--trainer.logger", "false", "--trainer.callbacks", "[]",
                  "--trainer.enable_progress_bar", "false", "--model.eval_num_points", "55",
                  "--model.objective.init_args.num_points", "34", "--model.decoder.init_args.hidden", "[32]"])
        print("TRAINED")
    """)
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    control = subprocess.run([sys.executable, "-c", script, "load"], capture_output=True, text=True, env=env)
    assert control.returncode != 0 and "MemoryError" in control.stderr, control.stderr[-1500:]
    result = subprocess.run([sys.executable, "-c", script, "mmap"], capture_output=True, text=True, env=env)
    assert result.returncode == 0 and "TRAINED" in result.stdout, result.stderr[-3000:]


@pytest.mark.parametrize("kind", ["none", "standardize", "minmax", "log1p"])
def test_the_transforms_jacobian_is_the_log_derivative_of_each_feature(tmp_path, kind):
    """Scores of new data are in the data's own units: log p(x) = log p(t(x)) + sum_k log |t'(x_k)|."""
    x = _array(30) * np.arange(1, 7, dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    datamodule = ArrayDataModule(str(tmp_path / "x.npy"), transform=kind)
    datamodule.setup("fit")
    t = datamodule.transform
    step = 1e-3
    raw = x[:5].astype(np.float64)
    derivative = (t.apply(raw + step) - t.apply(raw - step)) / (2 * step)  # [5, 6], per feature
    np.testing.assert_allclose(t.log_abs_det_jacobian(raw), np.log(np.abs(derivative)).sum(1), rtol=1e-5, atol=1e-6)
