"""One evaluation pass at test time (issue 30): the decoded lattice is kept across batches while the parameters are
unchanged (LatentVariableModel.lattice_table), and the test loop's per-example results (held-out estimate, posterior
summaries, aggregated posterior) are what every test-time analysis reads (LatentVariableModel.results_for), with the
values of computing them afresh."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lvm.analysis.embedding import embedding_table
from lvm.analysis.landscape import aggregated_posterior
from lvm.estimators.qmc import pairwise_table
from lvm.likelihoods import BernoulliLikelihood
from lvm.model import LatentVariableModel
from lvm.networks import MLPDecoder
from lvm.objectives import QMCObjective
from lvm.priors import TorusPrior

ROOT = Path(__file__).resolve().parents[1]


def _model(**kwargs) -> LatentVariableModel:
    torch.manual_seed(0)
    return LatentVariableModel(MLPDecoder([1, 4, 4], [16]), BernoulliLikelihood(), TorusPrior(2), QMCObjective(89),
                               eval_num_points=610, eval_chunk_size=128, **kwargs).eval()


def _count_decoded(model) -> list[int]:
    """A list that grows by the number of latent points of each decoder call."""
    decoded = []
    model.decoder.register_forward_hook(lambda module, inputs, output: decoded.append(len(inputs[0])))
    return decoded


def test_the_lattice_is_decoded_once_per_evaluation_and_gives_the_values_of_decoding_afresh():
    model = _model()
    decoded = _count_decoded(model)
    x = torch.rand(2, 6, 1, 4, 4).round()  # two batches of binary images
    cube = model.lattice_points()  # [610, 2]
    z = model.prior.from_unit_cube(cube.float())
    with torch.no_grad():
        first, second = (model.lattice_table(model.flatten(batch), cube) for batch in x)  # [6, 610] each
        assert sum(decoded) == 610  # both batches: one decoding of the lattice (in chunks of 128)
        for batch, table in zip(x, (first, second)):
            fresh = pairwise_table(lambda z_: model.pairwise_log_likelihood(model.flatten(batch), z_), z)
            torch.testing.assert_close(table, fresh, rtol=1e-6, atol=1e-5)
        decoded.clear()
        model.lattice_table(model.flatten(x[0]), model.shifted_lattice(shift_seed=0))  # another lattice: decoded,
        model.lattice_table(model.flatten(x[1]), cube)  # and the first still kept beside it
        assert sum(decoded) == 610
        next(model.decoder.parameters()).add_(0.1)  # an optimiser step changes the parameters in place
        decoded.clear()
        changed = model.lattice_table(model.flatten(x[0]), cube)
        assert sum(decoded) == 610 and not torch.allclose(changed, first)
    decoded.clear()
    model.lattice_table(model.flatten(x[0]), cube)  # with autograd (training), never kept
    model.lattice_table(model.flatten(x[0]), cube)
    assert sum(decoded) == 2 * 610


def test_a_fused_optimiser_step_invalidates_the_kept_lattice():
    """Regression: fused Adam (the model's default optimiser where PyTorch has the kernel) updates the parameters in
    place without bumping their version counters; a kept lattice keyed on those counters went stale, and validation
    scored the new likelihood against old decoder outputs (held-out log-likelihood -108 where it was -22)."""
    model = _model()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1, fused=True)
    x = torch.rand(6, 1, 4, 4).round()
    cube = model.lattice_points()
    with torch.no_grad():
        before = model.lattice_table(model.flatten(x), cube)
    model.train()
    model.objective(model, x)["loss"].backward()
    optimizer.step()
    model.eval()
    with torch.no_grad():
        after = model.lattice_table(model.flatten(x), cube)
        fresh = pairwise_table(lambda z_: model.pairwise_log_likelihood(model.flatten(x), z_),
                               model.prior.from_unit_cube(cube.float()))
    assert not torch.allclose(after, before)
    torch.testing.assert_close(after, fresh, rtol=1e-6, atol=1e-5)


def test_a_lattice_too_large_for_the_budget_is_decoded_per_call():
    model = _model(eval_cache_bytes=610 * 16 * 4 - 1)  # one byte short of the decoded lattice's float32 logits
    decoded = _count_decoded(model)
    x = torch.rand(6, 1, 4, 4).round()
    with torch.no_grad():
        model.lattice_table(model.flatten(x), model.lattice_points())
        model.lattice_table(model.flatten(x), model.lattice_points())
    assert sum(decoded) == 2 * 610


def _fit_and_test(tmp_path, *extra):
    from lvm.runs.cli import cli_main

    callbacks = json.dumps([{"class_path": f"lvm.callbacks.{name}"}
                            for name in ("LatentPlots", "PosteriorPlots", "Explorer", "TrustDiagnostics")])
    return cli_main(["--config", str(ROOT / "configs" / "quickstart.yaml"), "--trainer.default_root_dir",
                     str(tmp_path), "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "4",
                     "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar", "false",
                     "--trainer.enable_model_summary", "false", "--trainer.logger", "false",
                     "--model.eval_num_points", "610", "--trainer.callbacks", callbacks, *extra])


def _count_calls(monkeypatch) -> dict:
    """Count the lattice posteriors and the held-out estimates computed in the test loop and after it."""
    from lvm.estimators.heldout import DefensiveEstimator

    counts, phase = {}, {"now": "training"}

    def counted(name, original):
        def wrapper(*args, **kwargs):
            counts.setdefault((phase["now"], name), []).append(1)
            return original(*args, **kwargs)
        return wrapper

    for cls, name in ((LatentVariableModel, "posterior_on_lattice"), (DefensiveEstimator, "__call__")):
        monkeypatch.setattr(cls, name, counted(name, getattr(cls, name)))
    start, end = LatentVariableModel.on_test_epoch_start, LatentVariableModel.on_test_epoch_end
    monkeypatch.setattr(LatentVariableModel, "on_test_epoch_start", lambda self: phase.update(now="loop") or start(self))
    monkeypatch.setattr(LatentVariableModel, "on_test_epoch_end", lambda self: end(self) or phase.update(now="after"))
    return counts


def test_the_test_time_analyses_read_the_test_pass_instead_of_recomputing_it(tmp_path, monkeypatch):
    counts = _count_calls(monkeypatch)
    cli = _fit_and_test(tmp_path)
    run_dir = Path(cli.trainer.default_root_dir)
    for written in ("plots/embedding.png", "plots/aggregated_posterior.png", "plots/explorer.html", "diagnostics.json"):
        assert (run_dir / written).is_file(), written
    assert json.loads((run_dir / "diagnostics.json").read_text())["skipped"] == {}
    test_batches = len(cli.datamodule.test_dataloader())
    assert len(counts[("loop", "__call__")]) == test_batches  # the held-out estimate, once per batch
    assert len(counts[("loop", "posterior_on_lattice")]) == test_batches
    assert ("after", "__call__") not in counts and ("after", "posterior_on_lattice") not in counts

    model, datamodule = cli.model.eval(), cli.datamodule  # (the trainer leaves it in training mode)
    results = model.results_for(datamodule.test_set)
    assert results is not None and results.count == len(datamodule.test_set) == 359
    kept, _ = embedding_table(model, datamodule, ("test",))
    points, density = aggregated_posterior(model, datamodule.test_dataloader())
    model.test_results = None  # the same analyses computed afresh
    fresh, _ = embedding_table(model, datamodule, ("test",))
    columns = ["z1", "z2", "mode1", "mode2", "spread1", "spread2", "entropy", "log_likelihood", "label"]
    np.testing.assert_allclose(kept[columns].to_numpy(float), fresh[columns].to_numpy(float), rtol=1e-5, atol=1e-6)
    fresh_points, fresh_density = aggregated_posterior(model, datamodule.test_dataloader())
    torch.testing.assert_close(points, fresh_points)
    torch.testing.assert_close(density, fresh_density, rtol=1e-5, atol=1e-9)
    assert float(density.sum()) == pytest.approx(1.0)


def test_the_trust_diagnostics_from_the_test_pass_equal_those_computed_afresh(tmp_path):
    from lvm.callbacks import TrustDiagnostics

    cli = _fit_and_test(tmp_path)
    model, trainer = cli.model.eval(), cli.trainer
    callback = next(c for c in trainer.callbacks if isinstance(c, TrustDiagnostics))
    path = Path(trainer.default_root_dir) / "diagnostics.json"
    assert model.results_for(cli.datamodule.test_set) is not None
    callback.on_test_end(trainer, model)
    kept = json.loads(path.read_text())
    model.test_results = None
    callback.on_test_end(trainer, model)
    fresh = json.loads(path.read_text())
    assert kept["skipped"] == fresh["skipped"] == {}
    assert kept["decodability"]["label"] == pytest.approx(fresh["decodability"]["label"])
    assert kept["clusters"]["num_modes"] == fresh["clusters"]["num_modes"] > 0
    np.testing.assert_allclose(kept["clusters"]["modes"], fresh["clusters"]["modes"], atol=1e-6)
    assert kept["clusters"]["silhouette"] == pytest.approx(fresh["clusters"]["silhouette"], abs=1e-6)


def test_a_partial_test_pass_is_not_read_as_the_whole_test_set(tmp_path):
    cli = _fit_and_test(tmp_path, "--trainer.limit_test_batches", "2")
    model, datamodule = cli.model, cli.datamodule
    assert model.test_results is not None and not model.test_results.complete
    assert model.results_for(datamodule.test_set) is None
    diagnostics = json.loads((Path(cli.trainer.default_root_dir) / "diagnostics.json").read_text())
    assert diagnostics["n"] == 359  # the analyses covered the whole test set themselves


def test_results_of_a_changed_model_or_another_lattice_are_not_reused(tmp_path):
    cli = _fit_and_test(tmp_path)
    model, datamodule = cli.model, cli.datamodule
    assert model.results_for(datamodule.test_set) is None  # the trainer leaves the model in training mode (dropout)
    model.eval()
    assert model.results_for(datamodule.test_set) is not None
    assert model.results_for(datamodule.test_set, num_points=233) is None  # another lattice size
    assert model.results_for(datamodule.val_set) is None  # another split
    with torch.no_grad():
        next(model.decoder.parameters()).add_(0.1)
    assert model.results_for(datamodule.test_set) is None


def test_a_test_pass_keeps_only_per_example_values_of_an_r_vae(tmp_path):
    """Regression: the R-VAE's held-out evaluation also returns a scalar (the prior normaliser's relative error), which
    the per-example results took as a batch and failed on (len() of a 0-d tensor)."""
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    import lvm.objectives
    from lvm.likelihoods import HeteroscedasticGaussianLikelihood
    from lvm.networks import MeanPrecisionDecoder, MLPEncoder, RBFPrecision
    from lvm.posteriors import BrownianStepPosterior
    from lvm.priors import BrownianMotionPrior

    torch.manual_seed(0)
    decoder = MeanPrecisionDecoder(MLPDecoder([6], [8], activation="elu"), RBFPrecision(2, 6, num_centers=4))
    model = LatentVariableModel(decoder, HeteroscedasticGaussianLikelihood("identity"), BrownianMotionPrior(2),
                                lvm.objectives.RiemannianELBO(), MLPEncoder(3, [8]), BrownianStepPosterior(),
                                eval_num_samples=4)
    dataset = TensorDataset(torch.randn(20, 6), torch.arange(20))
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path)
    metrics = trainer.test(model, DataLoader(dataset, batch_size=8), verbose=False)[0]
    assert "test/prior_normalisation_error" in metrics
    results = model.eval().results_for(dataset)
    assert results is not None and results["log_likelihood"].shape == (20,) and results["mean"].shape == (20, 2)
    assert "prior_normalisation_error" not in results and results.label_tensor().tolist() == list(range(20))
