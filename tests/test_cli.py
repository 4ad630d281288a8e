"""End-to-end runs of ``train.py`` (in-process through ``cli_main``) on the bundled digits."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from lvm.runs.cli import cli_main
from lvm.numerics.lattices import PointSet
from lvm.model import LatentVariableModel, NonFiniteLossError
from lvm.objective import Objective
from lvm.priors import InvertiblePrior

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = str(ROOT / "configs" / "quickstart.yaml")
FAST = [
    "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "2", "--trainer.limit_test_batches", "2",
    "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
    "--model.eval_num_points", "233",
]
CSV = ["--trainer.logger", "lightning.pytorch.loggers.CSVLogger"]

pytestmark = pytest.mark.slow


def _run(tmp_path, *args, config=QUICKSTART):
    cli = cli_main(["--config", config, "--trainer.default_root_dir", str(tmp_path), *FAST, *args])
    return cli, Path(cli.trainer.default_root_dir)


class NaNAfterTwoSteps(Objective):
    """Eq. 5 on a fixed lattice until global step 2, then a NaN loss."""

    def validate(self, model):
        self.require(model, prior=InvertiblePrior)
        self.point_set = PointSet(89, model.prior.dim, "qmc")

    def forward(self, model, x):
        log_p = model.pairwise_log_likelihood(model.flatten(x), self.point_set.draw().to(x))
        loss = -torch.logsumexp(log_p, dim=1).mean()
        return {"loss": loss * float("nan") if model.global_step >= 2 else loss}


def test_quickstart_writes_checkpoints_metrics_plots_config_and_wandb_files(tmp_path):
    _, run_dir = _run(tmp_path, "--trainer.max_epochs", "1")
    assert run_dir.parent == tmp_path and run_dir.name.startswith("quickstart-")
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert list((run_dir / "checkpoints").glob("best-*.ckpt"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test/log_likelihood"] < 0 or metrics["test/log_likelihood"] > 0  # a finite number
    # the digits' 17 levels are 1/16 apart: bits/dim of the quantised data (the density's bits + log2 16)
    assert metrics["test/bits_per_dim"] == pytest.approx(-metrics["test/log_likelihood"] / (64 * np.log(2)) + 4, rel=1e-4)
    assert metrics["test/bits_per_dim"] > 0  # a probability of quantised data (the density's bits are negative here)
    assert (run_dir / "plots" / "embedding.png").stat().st_size > 10_000
    assert (run_dir / "plots" / "decoded_grid.png").stat().st_size > 10_000
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["model"]["objective"]["class_path"] == "lvm.objectives.QMCObjective"
    assert config["model"]["quantization_step"] == 1 / 16  # from the datamodule, in the run's config
    assert list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))


@pytest.mark.parametrize("logger,pattern", [("CSVLogger", "metrics.csv"), ("TensorBoardLogger", "events.out.tfevents.*")])
def test_fallback_loggers_write_into_the_run_directory(tmp_path, logger, pattern):
    _, run_dir = _run(tmp_path, "--trainer.max_epochs", "1", "--trainer.logger", f"lightning.pytorch.loggers.{logger}")
    assert list(run_dir.glob(pattern)) and (run_dir / "config.yaml").is_file() and (run_dir / "metrics.json").is_file()


def test_taylor_run_logs_biased_and_unbiased_estimates_side_by_side(tmp_path):
    _, run_dir = _run(tmp_path, "--trainer.max_epochs", "1", *CSV, config=str(ROOT / "configs" / "taylor_digits.yaml"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("taylor_elbo", "sampled_elbo", "importance_log_likelihood", "log_likelihood", "collapsed_fraction"):
        assert f"test/{key}" in metrics, key
    assert metrics["test/sampled_elbo"] < metrics["test/importance_log_likelihood"]


def test_resume_from_last_checkpoint_continues_the_same_run(tmp_path):
    _, run_dir = _run(tmp_path, "--trainer.max_epochs", "1", *CSV)
    last = run_dir / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["global_step"] == 3
    cli, resumed_dir = _run(tmp_path, "--trainer.max_epochs", "2", "--ckpt_path", str(last), *CSV)
    assert resumed_dir == run_dir and len(list(tmp_path.iterdir())) == 1
    assert torch.load(last, weights_only=False)["global_step"] == 6
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["global_step"] == 6 and "test/log_likelihood" in metrics
    model = LatentVariableModel.load_from_checkpoint(last)
    x = torch.rand(4, 1, 8, 8)
    assert torch.equal(model.decode(torch.full((1, 2), 0.3)), cli.model.cpu().decode(torch.full((1, 2), 0.3)))
    assert model.embed(x).shape == (4, 2)


def test_resumed_run_matches_an_uninterrupted_run_exactly(tmp_path):
    _, straight = _run(tmp_path / "straight", "--trainer.max_epochs", "2", *CSV)
    _, first = _run(tmp_path / "resumed", "--trainer.max_epochs", "1", *CSV)
    _run(tmp_path / "resumed", "--trainer.max_epochs", "2", "--ckpt_path", str(first / "checkpoints" / "last.ckpt"), *CSV)
    expected = torch.load(straight / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    resumed = torch.load(first / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert expected.keys() == resumed.keys()
    assert all(torch.equal(expected[k], resumed[k]) for k in expected)


def test_custom_objective_from_a_test_module_trains_via_class_path(tmp_path):
    config = tmp_path / "nan.yaml"
    config.write_text(yaml.safe_dump({"model": {"objective": {"class_path": f"{__name__}.NaNAfterTwoSteps"}}}))
    with pytest.raises(NonFiniteLossError, match="global step 2"):
        _run(tmp_path, "--config", str(config), "--trainer.max_epochs", "3", "--trainer.limit_train_batches", "1",
             "--trainer.limit_val_batches", "1", *CSV)
    run_dir = next(tmp_path.glob("quickstart-*"))
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["global_step"] == 2  # the last good state, written before the NaN step
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point())


def _readme_block(language: str, marker: str) -> str:
    readme = (ROOT / "README.md").read_text()
    match = re.search(rf"```{language}\n(# {re.escape(marker)}\n.*?)```", readme, re.S)
    assert match, f"README has no ```{language} block starting with '# {marker}'"
    return match.group(1)


def test_readme_plugin_example_trains_from_the_users_own_module(tmp_path, monkeypatch):
    (tmp_path / "my_objectives.py").write_text(_readme_block("python", "my_objectives.py"))
    (tmp_path / "my_objective.yaml").write_text(_readme_block("yaml", "my_objective.yaml"))
    monkeypatch.syspath_prepend(str(tmp_path))
    cli, run_dir = _run(tmp_path / "runs", "--config", str(tmp_path / "my_objective.yaml"), "--trainer.max_epochs", "1", *CSV)
    assert type(cli.model.objective).__name__ == "HardLatticeObjective"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert "train/best_log_likelihood" in metrics and "test/log_likelihood" in metrics


def test_mlae_run_fits_the_mixture_sampler_into_its_checkpoints_and_logs_the_frechet_score(tmp_path):
    _, run_dir = _run(tmp_path, "--trainer.max_epochs", "2", *CSV, config=str(ROOT / "configs" / "mlae_digits.yaml"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("log_likelihood", "bits_per_dim", "frechet_gaussian", "reconstruction", "latent_nll"):
        assert f"test/{key}" in metrics, key
    assert metrics["test/frechet_gaussian"] > 0
    best = next((run_dir / "checkpoints").glob("best-*.ckpt"))
    model = LatentVariableModel.load_from_checkpoint(best)
    assert model.latent_sampler.fitted and model.latent_sampler.means.shape == (10, 2)
    torch.manual_seed(0)
    from_mixture = model.sample(3)
    torch.manual_seed(0)
    assert torch.allclose(from_mixture, model.decode(model.latent_sampler.sample(3)))
    assert model.sample(3, from_prior=True).shape == (3, 1, 8, 8)


def test_mlae_tabular_config_runs_on_generated_maf_files_with_the_laplace_estimate(tmp_path):
    """A 21-D latent: the held-out log-likelihood is the Laplace importance-sampled estimate."""
    (tmp_path / "maf" / "miniboone").mkdir(parents=True)
    np.save(tmp_path / "maf" / "miniboone" / "data.npy", np.random.default_rng(0).normal(size=(400, 43)))
    _, run_dir = _run(tmp_path / "runs", "--trainer.max_epochs", "1", "--data.init_args.root", str(tmp_path / "maf"),
                      "--data.init_args.batch_size", "32", "--model.eval_num_samples", "8", *CSV,
                      config=str(ROOT / "configs" / "mlae_miniboone.yaml"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert np.isfinite(metrics["test/log_likelihood"]) and np.isfinite(metrics["test/frechet_gaussian"])
    assert metrics["test/bits_per_dim"] == pytest.approx(-metrics["test/log_likelihood"] / (43 * np.log(2)), rel=1e-4)


def test_rvae_two_phase_run_switches_once_and_samples_by_brownian_motion(tmp_path):
    config = yaml.safe_load((ROOT / "configs" / "rvae_digits.yaml").read_text())
    schedule = next(c for c in config["trainer"]["callbacks"] if c["class_path"] == "lvm.callbacks.TwoPhaseTraining")
    schedule["init_args"]["switch_epoch"] = 1
    (tmp_path / "rvae_digits.yaml").write_text(yaml.safe_dump(config))
    _, run_dir = _run(tmp_path / "runs", "--trainer.max_epochs", "2", *CSV, config=str(tmp_path / "rvae_digits.yaml"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("elbo", "kl", "reconstruction", "prior_time", "log_likelihood", "code_f1", "code_f1_class_9"):
        assert f"test/{key}" in metrics, key
    assert np.isfinite(metrics["test/log_likelihood"]) and 0 <= metrics["test/code_f1"] <= 1
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["epoch"] == 1  # last.ckpt is the last epoch even when it did not improve val/log_likelihood
    (state,) = [v for k, v in last["callbacks"].items() if k.startswith("TwoPhaseTraining")]
    assert state["switched"]
    model = LatentVariableModel.load_from_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert model.prior.placed and model.prior.centre.abs().sum() > 0  # centred on the codes
    assert not torch.equal(model.decoder.precision.centres, torch.zeros_like(model.decoder.precision.centres))
    model.prior.walk_steps = 5
    assert model.sample(4).shape == (4, 1, 8, 8)


def test_lattice_run_reports_the_quantized_inference_path(tmp_path):
    _, run_dir = _run(tmp_path, "--trainer.max_epochs", "1", "--model.eval_num_samples", "4", *CSV,
                      config=str(ROOT / "configs" / "lattice_digits.yaml"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("nll_1sample", "code_length_bits", "kl", "reconstruction", "log_likelihood"):
        assert np.isfinite(metrics[f"test/{key}"]), key
    assert (run_dir / "plots" / "embedding.png").is_file()


@pytest.mark.parametrize("dim,points", [(2, "233"), (3, "509")])
def test_posterior_plots_are_written_and_logged_to_the_offline_wandb_run(tmp_path, dim, points):
    overlay = tmp_path / "posterior_plots.yaml"
    overlay.write_text(yaml.safe_dump({"trainer": {"callbacks": [
        {"class_path": "lvm.callbacks.LatentPlots"},
        {"class_path": "lvm.callbacks.PosteriorPlots", "init_args": {"bandwidth": 0.15}},
    ]}}))
    _, run_dir = _run(tmp_path / "runs", "--config", str(overlay), "--trainer.max_epochs", "1",
                      "--model.prior.init_args.dim", str(dim), "--model.eval_num_points", points,
                      "--model.objective.init_args.num_points", points)
    names = ["embedding", "decoded_grid", "aggregated_posterior", "jacobian_norm", "mode_reconstructions", "samples",
             "reconstructions"]
    for name in names:
        assert (run_dir / "plots" / f"{name}.png").stat().st_size > 5_000, name
    media = list((run_dir / "wandb").glob("offline-run-*/files/media/images/plots/*.png"))
    assert {m.name.split("_")[0] for m in media} >= {"aggregated", "jacobian", "embedding", "samples"}
    assert list((run_dir / "wandb").glob("offline-run-*/files/media/table/prototypes_*.table.json"))


def test_encoder_models_get_the_empirical_versus_variational_posterior_plot(tmp_path):
    overlay = tmp_path / "posterior_plots.yaml"
    overlay.write_text(yaml.safe_dump({"trainer": {"callbacks": [{"class_path": "lvm.callbacks.PosteriorPlots"}]}}))
    _, run_dir = _run(tmp_path / "runs", "--config", str(overlay), "--trainer.max_epochs", "1", *CSV,
                      config=str(ROOT / "configs" / "digits_vae.yaml"))
    assert (run_dir / "plots" / "posterior_comparison.png").stat().st_size > 5_000
