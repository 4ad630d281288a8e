"""The plugin contract: objectives are losses, the README's encoder example runs,
and checkpoints of the component layout load."""

import json
import re
from pathlib import Path

import pytest
import torch

import lvm.objectives
from lvm.runs.cli import cli_main
from lvm.likelihoods import GaussianLikelihood
from lvm.model import LatentVariableModel
from lvm.networks import MLPDecoder, MLPEncoder
from lvm.objective import Objective
from lvm.posteriors import DiagonalGaussianPosterior, PointMassPosterior
from lvm.priors import StandardNormalPrior, TorusPrior

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "2",
        "--trainer.limit_test_batches", "2", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--model.eval_num_points", "233",
        "--trainer.logger", "lightning.pytorch.loggers.CSVLogger"]


def test_objectives_hold_no_parameters_or_buffers():
    for path in (ROOT / "objectives").glob("*.py"):
        assert "nn.Parameter" not in path.read_text(), path.name
    for name in lvm.objectives.__all__:
        objective = getattr(lvm.objectives, name)()  # every objective has defaults
        assert isinstance(objective, Objective)
        assert list(objective.parameters()) == [] and list(objective.buffers()) == [], name


def test_no_docstring_cites_a_path_outside_the_repository():
    for path in [*ROOT.glob("lvm/*.py"), *ROOT.glob("objectives/*.py"), *ROOT.glob("callbacks/*.py")]:
        assert "shared/papers" not in path.read_text(), path.name


def test_an_objective_says_what_it_needs():
    likelihood = GaussianLikelihood(0.1)
    decoder = MLPDecoder([6], [8])  # fixed to 2 latent features by the first build
    with pytest.raises(ValueError, match="ELBO needs model.posterior: lvm.posteriors.DiagonalGaussianPosterior"):
        LatentVariableModel(decoder, likelihood, StandardNormalPrior(2), lvm.objectives.ELBO())
    with pytest.raises(ValueError, match="ELBO needs model.prior: lvm.priors.StandardNormalPrior"):
        LatentVariableModel(MLPDecoder([6], [8]), likelihood, TorusPrior(2), lvm.objectives.ELBO(), MLPEncoder(4),
                            DiagonalGaussianPosterior())
    with pytest.raises(ValueError, match="An encoder and a posterior come together"):
        LatentVariableModel(decoder, likelihood, StandardNormalPrior(2), lvm.objectives.ELBO(), MLPEncoder(4))
    with pytest.raises(ValueError, match="MLAEObjective needs model.posterior: lvm.posteriors.PointMassPosterior"):
        LatentVariableModel(decoder, likelihood, StandardNormalPrior(2), lvm.objectives.MLAEObjective(), MLPEncoder(4),
                            DiagonalGaussianPosterior())


def test_mlae_ties_beta_to_the_likelihood_variance():
    def build(beta, variance):
        return LatentVariableModel(MLPDecoder([6], [8]), GaussianLikelihood(variance), StandardNormalPrior(2),
                                   lvm.objectives.MLAEObjective(beta), MLPEncoder(2), PointMassPosterior())

    model = build(None, 0.05)
    assert model.objective.beta_at(model, 0) == pytest.approx(10.0)  # read from c = 1 / (2 beta)
    build(10.0, 0.05)  # consistent: accepted
    with pytest.raises(ValueError, match=r"variance: 0.005"):
        build(100.0, 0.05)  # the README's old beta sweep that silently kept c = 0.05


def _readme_block(language: str, marker: str) -> str:
    readme = (ROOT / "README.md").read_text()
    match = re.search(rf"```{language}\n(# {re.escape(marker)}\n.*?)```", readme, re.S)
    assert match, f"README has no ```{language} block starting with '# {marker}'"
    return match.group(1)


@pytest.mark.slow
def test_readme_beta_vae_example_trains_and_its_checkpoint_loads(tmp_path, monkeypatch):
    source = _readme_block("python", "beta_vae.py")
    assert len(source.splitlines()) <= 25
    assert not re.search(r"requires_|deterministic|isotropic|own_prior", source)  # no flags
    (tmp_path / "beta_vae.py").write_text(source)
    (tmp_path / "beta_vae.yaml").write_text(_readme_block("yaml", "beta_vae.yaml"))
    monkeypatch.syspath_prepend(str(tmp_path))
    cli = cli_main(["--config", str(ROOT / "configs" / "quickstart.yaml"), "--config", str(tmp_path / "beta_vae.yaml"),
                    "--trainer.default_root_dir", str(tmp_path / "runs"), *FAST])
    model = cli.model
    assert type(model.objective).__name__ == "BetaVAE" and model.objective.beta == 4.0
    assert model.encoder(torch.zeros(1, 1, 8, 8)).shape == (1, 4)  # out_features = 2d from the posterior
    run_dir = Path(cli.trainer.default_root_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"train/kl", "test/log_likelihood", "test/sampled_elbo"} <= set(metrics)

    loaded = LatentVariableModel.load_from_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert type(loaded.prior) is StandardNormalPrior and type(loaded.posterior) is DiagonalGaussianPosterior
    x = torch.rand(5, 1, 8, 8)
    model.eval()
    torch.testing.assert_close(loaded.latent_code(x), model.latent_code(x))
    torch.testing.assert_close(loaded.log_likelihood(x, 233, shift_seed=0), model.log_likelihood(x, 233, shift_seed=0))
