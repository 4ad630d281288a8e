"""Trust diagnostics (lvm.analysis.consistency, lvm.analysis.decodability, lvm.analysis.clusters,
lvm.callbacks.TrustDiagnostics): alignment up to the latent space's symmetries, k-NN decodability against scikit-learn
and its baselines, cluster silhouettes around modes, and the callback's diagnostics.json on a trained model and when an
analysis fails."""

import itertools
import json
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import special_ortho_group
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from torch.utils.data import DataLoader, Subset, TensorDataset

import lvm.callbacks.diagnostics
from lvm.callbacks import TrustDiagnostics
from lvm.analysis.clusters import cluster_structure, lattice_modes, nearest_mode
from lvm.analysis.consistency import aligned_r2, consistency, consistency_summary
from lvm.analysis.decodability import decoding_features, knn_decodability
from lvm.likelihoods import GaussianLikelihood
from lvm.runs.metrics_file import MetricsFile
from lvm.model import LatentVariableModel
from lvm.networks import MLPDecoder
from lvm.priors import LaplaceLatticePrior, TorusPrior
from lvm.objectives import QMCObjective

ROOT = Path(__file__).resolve().parents[1]


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# ----- seed-to-seed consistency ------------------------------------------------------------------------------


def _torus_symmetry(z: np.ndarray, permutation, signs, shift) -> np.ndarray:
    """z -> signs * z[:, permutation] + shift, modulo 1."""
    return np.remainder(np.asarray(signs) * z[:, list(permutation)] + np.asarray(shift), 1.0)


@pytest.mark.parametrize("d", [1, 2, 3])
def test_a_torus_translation_reflection_and_axis_swap_is_aligned_exactly(d):
    z = _rng(d).random((1000, d))
    permutation = list(reversed(range(d)))
    moved = _torus_symmetry(z, permutation, [-1.0] + [1.0] * (d - 1), np.linspace(0.3, 0.9, d))
    assert aligned_r2(z, moved, periodic=True) > 0.999
    assert aligned_r2(moved, z, periodic=True) > 0.999


def test_unrelated_torus_embeddings_score_about_zero_and_a_noisy_copy_in_between():
    rng = _rng(1)
    a, b = rng.random((2000, 2)), rng.random((2000, 2))
    assert abs(aligned_r2(a, b, periodic=True)) < 0.05
    noisy = _torus_symmetry(a, [1, 0], [1.0, -1.0], [0.5, 0.25]) + 0.05 * rng.normal(size=a.shape)
    r2 = aligned_r2(a, noisy, periodic=True)
    # wrapped Gaussian noise of variance 0.05^2 against the uniform spread 1/12 per coordinate
    assert r2 == pytest.approx(1 - 0.05**2 * 12, abs=0.02)


def test_the_torus_alignment_searches_every_permutation_and_reflection():
    """The assignment search finds the best of all d! 2^d symmetries: the score cannot depend on which of them
    was applied to the aligned embedding."""
    rng = _rng(2)
    reference = rng.random((500, 3))
    other = np.remainder(reference + 0.08 * rng.normal(size=reference.shape), 1.0)
    scores = [aligned_r2(reference, _torus_symmetry(other, permutation, signs, [0.1, 0.6, 0.35]), periodic=True)
              for permutation in itertools.permutations(range(3))
              for signs in itertools.product([1.0, -1.0], repeat=3)]
    assert len(scores) == 48 and np.ptp(scores) < 1e-9
    assert 0.5 < scores[0] < 0.99


def test_a_rotated_reflected_translated_and_rescaled_euclidean_copy_is_aligned_exactly():
    rng = _rng(3)
    z = rng.normal(size=(1000, 3))
    rotation = special_ortho_group.rvs(3, random_state=0) @ np.diag([1.0, -1.0, 1.0])  # a reflection too
    moved = z @ rotation + np.array([5.0, -2.0, 0.5])
    assert aligned_r2(z, moved, periodic=False) > 0.999
    assert aligned_r2(z, 0.4 * moved, periodic=False) > 0.999  # one common scale is allowed
    noisy = moved + 0.5 * rng.normal(size=z.shape)
    assert 0.5 < aligned_r2(z, noisy, periodic=False) < 0.9
    # a different scale per axis is no symmetry
    assert aligned_r2(z, z * np.array([1.0, 0.05, 0.05]), periodic=False) < 0.5


def test_euclidean_r2_is_the_least_squares_similarity_fit():
    """Brute force: the residual of the best s R over a dense grid of rotation angles and scales (2-D)."""
    rng = _rng(6)
    z = rng.normal(size=(200, 2))
    other = np.tanh(z) + 0.3 * rng.normal(size=z.shape)
    centred, source = z - z.mean(0), other - other.mean(0)
    best = np.inf
    for angle in np.linspace(0, 2 * np.pi, 721):
        for flip in (1.0, -1.0):
            rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) @ np.diag([1, flip])
            mapped = source @ rotation
            scale = (mapped * centred).sum() / (mapped**2).sum()
            best = min(best, ((centred - scale * mapped) ** 2).sum())
    expected = 1 - best / (centred**2).sum()
    assert aligned_r2(z, other, periodic=False) == pytest.approx(expected, abs=1e-4)


def test_independent_gaussian_embeddings_score_about_zero():
    rng = _rng(4)
    r2 = aligned_r2(rng.normal(size=(2000, 2)), rng.normal(size=(2000, 2)), periodic=False)
    assert 0 <= r2 < 0.01


def test_consistency_reports_each_pair_once_with_the_symmetric_average():
    rng = _rng(5)
    base = rng.random((300, 2))
    runs = [base, _torus_symmetry(base, [1, 0], [1, -1], [0.2, 0.7]), rng.random((300, 2))]
    table = consistency(runs, periodic=True, names=["seed0", "seed1", "seed2"])
    assert list(table.columns) == ["run_a", "run_b", "r2"]
    assert list(zip(table.run_a, table.run_b)) == [("seed0", "seed1"), ("seed0", "seed2"), ("seed1", "seed2")]
    assert table.r2[0] > 0.999 and abs(table.r2[1]) < 0.1
    both_ways = 0.5 * (aligned_r2(runs[0], runs[2], True) + aligned_r2(runs[2], runs[0], True))
    assert table.r2[1] == pytest.approx(both_ways)
    summary = consistency_summary(table)
    assert summary["pairs"] == 3 and summary["mean_r2"] == pytest.approx(table.r2.mean())
    assert summary["min_r2"] == pytest.approx(table.r2.min())
    with pytest.raises(ValueError, match="2 names for 3 embeddings"):
        consistency(runs, periodic=True, names=["a", "b"])
    with pytest.raises(ValueError, match="must embed the same examples"):
        aligned_r2(base, base[:10], periodic=True)
    with pytest.raises(ValueError, match="1 of its 600 values are not finite"):
        aligned_r2(base, np.where(np.arange(600).reshape(300, 2) == 7, np.nan, base), periodic=True)


# ----- label decodability --------------------------------------------------------------------------------------


def _blobs(n_per_class=(60, 40, 30), seed=0) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping 2-D Gaussian blobs ``[n, 2]`` with string labels ``[n]``."""
    rng = _rng(seed)
    centres = np.array([[0.0, 0.0], [1.0, 0.5], [0.3, 1.2]])
    z = np.concatenate([c + 0.5 * rng.normal(size=(m, 2)) for c, m in zip(centres, n_per_class)])
    labels = np.repeat(np.array(["alpha", "beta", "gamma"]), n_per_class)
    return z, labels


@pytest.mark.parametrize("periodic", [False, True])
def test_knn_decodability_is_scikit_learns_cross_validated_balanced_accuracy(periodic):
    z, labels = _blobs()
    if periodic:
        z = np.remainder(z / 3, 1.0)
    result = knn_decodability(z, labels, periodic, k=7, folds=4, seed=3)
    expected = cross_val_score(KNeighborsClassifier(n_neighbors=7), decoding_features(z, periodic), labels,
                               cv=StratifiedKFold(4, shuffle=True, random_state=3), scoring="balanced_accuracy")
    assert result["balanced_accuracy"] == pytest.approx(expected.mean(), abs=1e-12)
    assert result["balanced_accuracy_std"] == pytest.approx(expected.std(), abs=1e-12)
    assert 0.4 < result["balanced_accuracy"] < 0.95  # overlapping blobs: informative, not perfect
    assert (result["task"], result["k"], result["folds"], result["n"]) == ("classification", 7, 4, 130)
    codes = pd.factorize(labels)[0]  # integer labels give the same score
    assert knn_decodability(z, codes, periodic, k=7, folds=4, seed=3)["balanced_accuracy"] == \
        pytest.approx(result["balanced_accuracy"])


def test_a_label_across_the_torus_seam_is_decoded_with_the_periodic_metric():
    rng = _rng(6)
    z = rng.random((600, 2))
    near_seam = np.abs(z[:, 0] - np.round(z[:, 0])) < 0.25  # class A around z1 = 0 = 1, class B around 0.5
    labels = np.where(near_seam, "A", "B")
    result = knn_decodability(z, labels, periodic=True, k=5)
    assert result["balanced_accuracy"] > 0.97
    turned = np.remainder(z + np.array([0.37, 0.81]), 1.0)  # the seam elsewhere: the same neighbours
    assert knn_decodability(turned, labels, periodic=True, k=5)["balanced_accuracy"] == \
        pytest.approx(result["balanced_accuracy"], abs=1e-9)


def test_baselines_of_an_imbalanced_label_and_what_is_dropped():
    rng = _rng(7)
    labels = np.array([0.0] * 70 + [1.0] * 27 + [2.0] * 3 + [7.0] + [np.nan] * 4)  # 7.0: a single example
    z = rng.normal(size=(len(labels), 2))
    result = knn_decodability(z, labels, periodic=False, k=10, folds=5)
    assert result["chance_balanced_accuracy"] == pytest.approx(1 / 3)
    assert result["majority_accuracy"] == pytest.approx(0.7)
    assert (result["num_classes"], result["n"], result["dropped_missing"], result["dropped_rare"]) == (3, 100, 4, 1)
    assert result["folds"] == 3  # the smallest class has 3 examples
    with pytest.raises(ValueError, match="at least 2 classes with 2 or more examples"):
        knn_decodability(z[:10], np.arange(10), periodic=False)  # an example index is no label


def test_a_real_valued_label_gets_a_knn_regression_r2():
    z = _rng(8).random((400, 2))
    result = knn_decodability(z, np.cos(2 * np.pi * z[:, 0]), periodic=True)
    assert result["task"] == "regression" and result["r2"] > 0.95
    unrelated = knn_decodability(z, _rng(9).normal(size=400), periodic=True)
    assert unrelated["r2"] < 0.05


# ----- cluster structure ---------------------------------------------------------------------------------------


def test_clusters_around_modes_one_across_the_seam_have_a_silhouette_near_one():
    rng = _rng(10)
    modes = np.array([[0.0, 0.5], [0.5, 0.5], [0.3, 0.15]])  # the first straddles the seam z1 = 0 = 1
    truth = np.repeat(np.arange(3), [200, 150, 100])
    z = np.remainder(modes[truth] + 0.02 * rng.normal(size=(450, 2)), 1.0)
    assert ((z[truth == 0, 0] > 0.9).any() and (z[truth == 0, 0] < 0.1).any())
    np.testing.assert_array_equal(nearest_mode(z, modes, periodic=True), truth)
    result = cluster_structure(z, modes, periodic=True)
    assert result["silhouette"] > 0.9 and result["reason"] is None
    assert result["cluster_sizes"] == [200, 150, 100] and result["num_modes"] == 3
    assert result["silhouette_points"] == 450
    # read without the wrap, the seam cluster's far half joins another mode and the silhouette drops
    misassigned = nearest_mode(z, modes, periodic=False) != truth
    assert 60 < misassigned.sum() == (z[truth == 0, 0] > 0.5).sum()
    assert cluster_structure(z, modes, periodic=False)["silhouette"] < result["silhouette"] - 0.15
    subsampled = cluster_structure(z, modes, periodic=True, max_points=100, seed=1)
    assert subsampled["silhouette_points"] == 100 and subsampled["silhouette"] > 0.9


def test_euclidean_clusters_and_fewer_than_two_modes():
    rng = _rng(11)
    modes = np.array([[-3.0, 0.0], [3.0, 0.0]])
    z = np.concatenate([modes[0] + 0.3 * rng.normal(size=(50, 2)), modes[1] + 0.3 * rng.normal(size=(50, 2))])
    assert cluster_structure(z, modes, periodic=False)["silhouette"] > 0.85
    one = cluster_structure(z, modes[:1], periodic=False)
    assert np.isnan(one["silhouette"]) and one["reason"].startswith("1 mode:") and one["cluster_sizes"] == [100]
    none = cluster_structure(z, np.zeros((0, 2)), periodic=False)
    assert np.isnan(none["silhouette"]) and none["reason"].startswith("0 modes:")
    all_near_one = cluster_structure(z, np.array([[-3.0, 0.0], [50.0, 0.0]]), periodic=False)
    assert np.isnan(all_near_one["silhouette"]) and "fall into 1 cluster" in all_near_one["reason"]


def test_lattice_modes_need_a_prior_reached_from_the_unit_cube():
    with pytest.raises(ValueError, match="InvertiblePrior.*LaplaceLatticePrior"):
        lattice_modes(SimpleNamespace(prior=LaplaceLatticePrior(2)), [])


# ----- the callback --------------------------------------------------------------------------------------------


def _skips(record) -> list[str]:
    return [str(w.message) for w in record if " skipped: " in str(w.message)]


def test_the_callback_writes_diagnostics_of_a_trained_model_and_logs_them(tmp_path):
    from lvm.runs.cli import cli_main

    callback = json.dumps([{"class_path": "lvm.callbacks.TrustDiagnostics", "init_args": {"k": 5, "folds": 4}}])
    cli = cli_main(["--config", str(ROOT / "configs" / "quickstart.yaml"), "--trainer.default_root_dir", str(tmp_path),
                    "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "4",
                    "--trainer.limit_val_batches", "1",
                    "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
                    "--model.eval_num_points", "233", "--trainer.logger", "lightning.pytorch.loggers.CSVLogger",
                    "--trainer.callbacks", callback])
    run_dir = Path(cli.trainer.default_root_dir)
    diagnostics = json.loads((run_dir / "diagnostics.json").read_text())
    assert diagnostics["skipped"] == {}
    assert (diagnostics["n"], diagnostics["latent_dim"], diagnostics["periodic"]) == (359, 2, True)
    model, datamodule = cli.model, cli.datamodule  # the tested (best) weights
    embedding = torch.cat([model.embed(x) for x, _ in datamodule.test_dataloader()]).double().numpy()
    labels = torch.cat([y for _, y in datamodule.test_dataloader()]).numpy()
    label = diagnostics["decodability"]["label"]
    assert label == pytest.approx(knn_decodability(embedding, labels, periodic=True, k=5, folds=4))
    assert label["balanced_accuracy"] > label["chance_balanced_accuracy"] == pytest.approx(0.1)
    clusters = diagnostics["clusters"]
    assert clusters["num_modes"] == len(clusters["modes"]) and sum(clusters["cluster_sizes"]) == 359
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert "test/log_likelihood" in metrics
    assert metrics["test/decodability/label/balanced_accuracy"] == pytest.approx(label["balanced_accuracy"])
    assert metrics["test/clusters/num_modes"] == clusters["num_modes"]
    logged = pd.read_csv(run_dir / "metrics.csv")
    assert logged["test/decodability/label/majority_accuracy"].dropna().tolist() == \
        pytest.approx([label["majority_accuracy"]])


def _stub_run(tmp_path, datamodule):
    torch.manual_seed(0)
    model = LatentVariableModel(MLPDecoder([1, 8, 8], [16]), GaussianLikelihood(0.1), TorusPrior(2), QMCObjective(89),
                                eval_num_points=144)
    trainer = SimpleNamespace(default_root_dir=str(tmp_path), loggers=[], callbacks=[MetricsFile()], current_epoch=1,
                              global_step=4, callback_metrics={"test/log_likelihood": torch.tensor(-1.5)},
                              datamodule=datamodule)
    return model, trainer


def test_a_failing_analysis_is_skipped_with_a_warning_and_the_rest_is_written(tmp_path, monkeypatch):
    x = torch.rand(64, 1, 8, 8)
    batches = [(x[i:i + 16], torch.arange(i, i + 16) % 4) for i in range(0, 64, 16)]
    model, trainer = _stub_run(tmp_path, SimpleNamespace(test_dataloader=lambda: batches))
    metrics_seen = []

    def fail(*args, **kwargs):
        metrics_seen.append(json.loads((tmp_path / "metrics.json").read_text()))  # written before the analyses
        raise RuntimeError("out of ink")

    monkeypatch.setattr(lvm.callbacks.diagnostics, "cluster_structure", fail)
    with pytest.warns(UserWarning) as record:
        TrustDiagnostics(k=3, folds=3).on_test_end(trainer, model)
    assert _skips(record) == ["TrustDiagnostics: cluster structure skipped: RuntimeError: out of ink"]
    assert metrics_seen and metrics_seen[0]["test/log_likelihood"] == -1.5
    diagnostics = json.loads((tmp_path / "diagnostics.json").read_text())
    assert diagnostics["skipped"] == {"cluster structure": "RuntimeError: out of ink"} and "clusters" not in diagnostics
    assert diagnostics["decodability"]["label"]["num_classes"] == 4
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["test/log_likelihood"] == -1.5 and "test/decodability/label/balanced_accuracy" in metrics
    assert not any(key.startswith("test/clusters/") for key in metrics)


def test_metadata_fields_factors_and_index_labels(tmp_path):
    """Metadata rows follow the test set's (nested) Subset indices; 2-D labels give one entry per factor; an
    example index is no label; a missing field is skipped with a warning."""
    rng = _rng(12)
    x = torch.rand(90, 1, 8, 8)
    dataset = TensorDataset(x, torch.arange(90))
    test_set = Subset(Subset(dataset, rng.permutation(90)[:70].tolist()), rng.permutation(70)[:48].tolist())
    metadata = {"species": rng.choice(["finch", "gerbil", "mouse"], 90), "duration": rng.random(90)}
    datamodule = SimpleNamespace(test_dataloader=lambda: DataLoader(test_set, batch_size=16), test_set=test_set,
                                 metadata=metadata, label_key=None)
    model, trainer = _stub_run(tmp_path, datamodule)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        TrustDiagnostics(fields=["species", "duration", "colour"], k=3).on_test_end(trainer, model)
    skips = _skips(record)
    assert any(s.startswith("TrustDiagnostics: decodability of the label skipped: the labels are example indices")
               for s in skips)
    assert any(s.startswith("TrustDiagnostics: decodability of colour skipped: KeyError") for s in skips)
    diagnostics = json.loads((tmp_path / "diagnostics.json").read_text())
    rows = np.array([test_set.dataset.indices[i] for i in test_set.indices])
    embedding = torch.cat([model.embed(batch) for batch, _ in DataLoader(test_set, batch_size=16)]).double().numpy()
    decodability = diagnostics["decodability"]
    assert set(decodability) == {"species", "duration"}
    assert decodability["species"] == pytest.approx(knn_decodability(embedding, metadata["species"][rows], True, k=3))
    assert decodability["duration"]["task"] == "regression"
    assert decodability["duration"] == pytest.approx(knn_decodability(embedding, metadata["duration"][rows], True, k=3))

    factors = torch.stack([torch.arange(48) % 3, torch.arange(48) % 4], 1).float()  # [n, 2]
    factor_batches = [(x[i:i + 16], factors[i:i + 16]) for i in range(0, 48, 16)]
    datamodule = SimpleNamespace(test_dataloader=lambda: factor_batches, factor_names=("shape", "scale"))
    model, trainer = _stub_run(tmp_path, datamodule)
    TrustDiagnostics(k=3).on_test_end(trainer, model)
    decodability = json.loads((tmp_path / "diagnostics.json").read_text())["decodability"]
    assert {name: result["num_classes"] for name, result in decodability.items()} == {"shape": 3, "scale": 4}
