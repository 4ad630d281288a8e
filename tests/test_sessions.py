"""Sessions with different feature counts in one latent space (issue 28: ``kind: session`` covariates,
lvm.datamodules.SessionsDataModule): each example is scored on its own session's columns (against brute force), the
held-out log-likelihood is reported per session and overall, and a model of three sessions of Poisson counts (6, 10
and 15 neurons tuned to one periodic latent) recovers each session's latent and its true likelihood."""

import math

import numpy as np
import pytest
import torch
from scipy.special import gammaln

from lvm.analysis.consistency import aligned_r2
from lvm.likelihoods import GaussianLikelihood, PoissonLikelihood
from lvm.model import LatentVariableModel
from lvm.networks import MLPDecoder
from lvm.numerics.lattices import lattice_rule
from lvm.objectives import QMCObjective
from lvm.priors import TorusPrior
from lvm.runs.cli import LVMCLI
from lvm.runs.usage import UsageError

SIZES = (6, 10, 15)


def _sessions(folder, n=800, seed=0):
    """Three sessions of Poisson counts from rates exp(0.8 W_s [cos, sin](2 pi z) + 0.5), each with its own neurons."""
    rng = np.random.default_rng(seed)
    paths, truth = [], []
    for k, size in enumerate(SIZES):
        z = rng.random(n)
        weights = rng.normal(size=(2, size))
        x = rng.poisson(_rate(z, weights)).astype(np.float32)
        np.save(folder / f"day{k + 1}.npy", x)
        paths.append(str(folder / f"day{k + 1}.npy"))
        truth.append((z, weights, x))
    return paths, truth


def _rate(z, weights):
    return np.exp(0.8 * np.stack([np.cos(2 * np.pi * z), np.sin(2 * np.pi * z)], 1) @ weights + 0.5)


def _config(paths, folder, epochs=40, **model):
    return {"seed_everything": 0,
            "trainer": {"max_epochs": epochs, "default_root_dir": str(folder / "runs"), "logger": False,
                        "enable_progress_bar": False, "callbacks": []},
            "model": {"decoder": {"class_path": "lvm.networks.MLPDecoder", "init_args": {"hidden": [64, 64]}},
                      "likelihood": {"class_path": "lvm.likelihoods.PoissonLikelihood"},
                      "prior": {"class_path": "lvm.priors.TorusPrior", "init_args": {"dim": 1}},
                      "objective": {"class_path": "lvm.objectives.QMCObjective", "init_args": {"num_points": 256}},
                      "eval_num_points": 1024, "eval_every_n_epochs": 20,
                      "covariates": [{"key": "session", "kind": "session"}], **model},
            "data": {"class_path": "lvm.datamodules.SessionsDataModule",
                     "init_args": {"paths": paths, "batch_size": 128}}}


def _model(likelihood=None) -> LatentVariableModel:
    torch.manual_seed(0)
    model = LatentVariableModel(MLPDecoder([sum(SIZES)], [16]), likelihood or PoissonLikelihood(), TorusPrior(1),
                                QMCObjective(89), covariates=[{"key": "session", "kind": "session"}])
    ends = np.cumsum([0, *SIZES])
    blocks = {f"day{k + 1}": (ends[k], ends[k + 1]) for k in range(3)}
    model.covariates.fit({"session": np.array(["day1", "day2", "day3"])}, blocks=blocks)
    with torch.no_grad():
        for parameter in model.covariates.parameters():
            parameter.normal_(0, 0.3)
    return model


def test_each_example_is_scored_on_its_own_sessions_columns():
    model = _model()
    codes = torch.tensor([[0.0], [2.0], [1.0], [2.0], [0.0]])
    ends = np.cumsum([0, *SIZES])
    x = torch.zeros(5, sum(SIZES))
    for i, s in enumerate(codes[:, 0].long().tolist()):
        x[i, ends[s]:ends[s + 1]] = torch.poisson(torch.full((SIZES[s],), 2.0))
    z = torch.rand(40, 1)
    draws = torch.rand(3, 5, 1)
    with torch.no_grad(), model.given(codes):
        table = model.pairwise_log_likelihood(x, z)  # [5, 40]
        per_draw = model.log_prob(x, draws)  # [3, 5]
        outputs = model.decoder_outputs(z)
        draw_outputs = model.decoder_outputs(draws.reshape(15, 1)).view(3, 5, -1)
    for i, s in enumerate(codes[:, 0].long().tolist()):
        block = slice(ends[s], ends[s + 1])
        params = model.covariates.modulate(outputs, codes[i].expand(40, 1))[:, block]  # [40, D_s]
        torch.testing.assert_close(table[i], model.likelihood.log_prob(x[i, block], params), rtol=1e-5, atol=1e-4)
        params = model.covariates.modulate(draw_outputs[:, i], codes[i].expand(3, 1))[:, block]
        torch.testing.assert_close(per_draw[:, i], model.likelihood.log_prob(x[i, block], params), rtol=1e-5,
                                   atol=1e-4)


def test_objectives_and_likelihoods_that_cannot_take_sessions_say_so():
    with pytest.raises(ValueError, match="learns one parameter per feature"):
        LatentVariableModel(MLPDecoder([sum(SIZES)], [16]), GaussianLikelihood(0.1, learn_variance="per_feature"),
                            TorusPrior(1), QMCObjective(89), covariates=[{"key": "session", "kind": "session"}])
    from lvm.covariates import CovariateError, Covariates
    with pytest.raises(CovariateError, match="at most one covariate has kind: session"):
        Covariates([{"key": "a", "kind": "session"}, {"key": "b", "kind": "session"}], 10)


def test_bad_session_files_stop_the_run_in_one_line_and_write_nothing(tmp_path):
    paths, _ = _sessions(tmp_path, n=60)
    bad = np.load(paths[1])
    bad[7, 3] = np.nan
    np.save(paths[1], bad)
    with pytest.raises(UsageError, match=r"day2.npy: 1 NaN or infinite value\(s\), the first at row 7, column 3"):
        LVMCLI(args=_config(paths, tmp_path, epochs=1), test=False)
    assert not (tmp_path / "runs").exists()
    np.save(paths[1], np.nan_to_num(bad))
    config = _config(paths, tmp_path, epochs=1)
    config["data"]["init_args"]["names"] = ["a", "a", "b"]
    with pytest.raises(UsageError, match="names repeat"):
        LVMCLI(args=config, test=False)
    config = _config(paths, tmp_path, epochs=1)
    config["model"]["objective"] = {"class_path": "lvm.objectives.TaylorELBO"}
    with pytest.raises(UsageError):  # (its prior and posterior are checked first; the session refusal is tested below)
        LVMCLI(args=config, test=False)
    assert not (tmp_path / "runs").exists()


def test_taylor_refuses_a_session_covariate():
    from lvm.networks import MLPEncoder
    from lvm.objectives import TaylorELBO
    from lvm.posteriors import DiagonalGaussianPosterior
    from lvm.priors import StandardNormalPrior
    with pytest.raises(ValueError, match="TaylorELBO does not take a session covariate"):
        LatentVariableModel(MLPDecoder([sum(SIZES)], [16]), GaussianLikelihood(0.1, mean_activation="identity"),
                            StandardNormalPrior(1), TaylorELBO(), MLPEncoder(2, [16]), DiagonalGaussianPosterior(),
                            covariates=[{"key": "session", "kind": "session"}])


def test_three_sessions_share_one_model_and_each_recovers_its_latent_and_true_likelihood(tmp_path):
    paths, truth = _sessions(tmp_path)
    cli = LVMCLI(args=_config(paths, tmp_path), test=True)
    metrics = {key: float(value) for key, value in cli.trainer.callback_metrics.items()}
    model, datamodule = cli.model.eval(), cli.datamodule
    rows = datamodule.split_rows("test")
    sessions = datamodule.metadata["session"][rows]
    within = datamodule.metadata["row"][rows]
    x = datamodule.test_set.dataset.tensors[0][rows]
    with torch.no_grad(), model.given(datamodule.covariate_codes[rows]):
        embedding = model.embed(x).numpy()
    grid = lattice_rule(4096, 1).numpy()[:, 0]
    counts = []
    for k, (z, weights, counts_k) in enumerate(truth):
        name = f"day{k + 1}"
        mine = sessions == name
        own = within[mine]
        assert aligned_r2(z[own, None], embedding[mine], periodic=True) >= 0.9, name
        rates = _rate(grid, weights)  # [m, D_s]
        log_p = (counts_k[own, None] * np.log(rates) - rates - gammaln(counts_k[own, None] + 1)).sum(-1)  # [n, m]
        true = float(np.mean(np.logaddexp.reduce(log_p, axis=1) - math.log(len(grid))))
        fitted = metrics[f"test/log_likelihood/session={name}"]
        assert abs(fitted - true) / abs(true) < 0.03, (name, fitted, true)
        counts.append(mine.sum())
    overall = sum(c * metrics[f"test/log_likelihood/session=day{k + 1}"] for k, c in enumerate(counts)) / sum(counts)
    assert metrics["test/log_likelihood"] == pytest.approx(overall, abs=1e-4)
