"""Conditional models (issue 28, lvm.covariates): the grouped likelihood table against brute force, the fitted
encodings in checkpoints, counterfactual decoding, every objective trained with covariates, DDP equality, and the
recovery of a known latent from data generated with a known discrete or continuous covariate."""

import math

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset

from lvm.analysis.consistency import aligned_r2
from lvm.covariates import CovariateError, Covariates
from lvm.likelihoods import BernoulliLikelihood, GaussianLikelihood
from lvm.model import LatentVariableModel
from lvm.networks import MLPDecoder
from lvm.objectives import QMCObjective
from lvm.priors import TorusPrior
from lvm.runs.cli import LVMCLI
from lvm.runs.usage import UsageError

SPECS = [{"key": "animal", "kind": "discrete"}, {"key": "duration", "kind": "continuous", "levels": 4}]


def _model(likelihood=None, specs=SPECS, dim=2, data_size=6) -> LatentVariableModel:
    torch.manual_seed(0)
    return LatentVariableModel(MLPDecoder([data_size], [16]), likelihood or GaussianLikelihood(0.1), TorusPrior(dim),
                               QMCObjective(89), covariates=specs, eval_num_points=144)


def _fit(model: LatentVariableModel, n: int = 60, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    columns = {"animal": np.array(["owl", "bat", "finch"])[rng.integers(0, 3, n)], "duration": rng.uniform(0.1, 0.5, n)}
    model.covariates.fit(columns)
    with torch.no_grad():  # give the FiLM network weights that make the rows differ
        for parameter in model.covariates.parameters():
            parameter.normal_(0, 0.5)
    return columns


def test_the_grouped_table_equals_scoring_every_pair_under_its_own_covariates():
    # sigmoid-mean Gaussian and Bernoulli: grouped by row; identity-mean Gaussians: per-example matmuls
    for likelihood in (GaussianLikelihood(0.1), BernoulliLikelihood(), GaussianLikelihood(0.1, "identity"),
                       GaussianLikelihood(0.1, "identity", learn_variance="per_feature")):
        model = _model(likelihood)
        columns = _fit(model)
        codes = model.covariates.encode(columns)[:12]
        x = torch.rand(12, 6)
        z = torch.rand(30, 2)
        with torch.no_grad(), model.given(codes):
            table = model.pairwise_log_likelihood(x, z)  # [12, 30]
            outputs = model.decoder_outputs(z)
            brute = torch.stack([model.likelihood.log_prob(x[i], model.covariates.modulate(
                outputs, codes[i].expand(len(z), -1))) for i in range(len(x))])  # each pair under c_i
            # decoder_params aligns row r with example r % b: draws [k, b, d] flattened
            draws = torch.rand(3, 12, 2)
            per_draw = model.log_prob(x, draws)  # [3, 12]
        direct = torch.stack([torch.stack([model.likelihood.log_prob(x[i], model.covariates.modulate(
            model.decoder_outputs(draws[k, i][None]), codes[i][None])[0]) for i in range(12)]) for k in range(3)])
        torch.testing.assert_close(table, brute, rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(per_draw, direct.detach(), rtol=1e-5, atol=1e-4)
        assert len(model.covariates.rows(codes)[0]) > 1  # several groups were scored
        direct_form = model.likelihood.modulated_pairwise_log_prob(x, outputs, outputs[:12] * 0, outputs[:12] * 0)
        assert (direct_form is not None) == (getattr(model.likelihood, "mean_activation", "") == "identity")


def test_continuous_values_move_to_their_nearest_level_and_categories_keep_their_names():
    model = _model()
    columns = _fit(model)
    spec = model.covariates.specs[1]
    assert len(spec["values"]) == 4 and spec["min"] == pytest.approx(columns["duration"].min())
    codes = model.covariates.encode(columns)
    rows, inverse = model.covariates.rows(codes)
    levels = torch.tensor(spec["values"])
    nearest = levels[(codes[:, 1, None] - levels).abs().argmin(1)]
    torch.testing.assert_close(rows[inverse][:, 1], nearest)
    assert model.covariates.specs[0]["categories"] == ["bat", "finch", "owl"]
    described = model.covariates.describe(codes[:3])
    assert [row["animal"] for row in described] == list(columns["animal"][:3])
    assert [row["duration"] for row in described] == pytest.approx(list(columns["duration"][:3]), rel=1e-5)


def test_bad_covariates_are_refused_with_one_line_naming_the_data():
    model = _model()
    columns = _fit(model)
    with pytest.raises(CovariateError, match="'bison'.*never had"):
        model.covariates.encode({**columns, "animal": np.array(["owl", "bison"])}, "new.csv")
    with pytest.raises(CovariateError, match="new.csv: covariate 'duration' has 1 NaN"):
        model.covariates.encode({"animal": np.array(["owl", "bat"]), "duration": np.array([0.2, np.nan])}, "new.csv")
    with pytest.raises(CovariateError, match="'animal' is not a metadata field of new.csv"):
        model.covariates.encode({"duration": np.array([0.2])}, "new.csv")
    with pytest.raises(CovariateError, match="give each example's covariates"):
        model.log_likelihood(torch.rand(2, 6))
    with pytest.raises(CovariateError, match="kind must be one of"):
        Covariates([{"key": "animal", "kind": "categorical"}], 6)


def test_a_checkpoint_keeps_the_encodings_and_decodes_counterfactuals_alike(tmp_path):
    model = _model()
    columns = _fit(model)
    model.hparams["covariates"] = [dict(spec) for spec in model.covariates.specs]  # as attach_covariates does
    trainer = L.Trainer(logger=False, enable_checkpointing=False, max_epochs=0)
    trainer.strategy.connect(model)
    path = tmp_path / "conditional.ckpt"
    trainer.save_checkpoint(path)
    loaded = LatentVariableModel.load_from_checkpoint(path, weights_only=False)  # (components built in Python)
    assert loaded.covariates.specs == model.covariates.specs
    z = torch.rand(5, 2)
    with torch.no_grad():
        owl, bat = model.decode(z, {"animal": "owl", "duration": 0.3}), model.decode(z, {"animal": "bat", "duration": 0.3})
        torch.testing.assert_close(loaded.decode(z, {"animal": "owl", "duration": 0.3}), owl)
    assert not torch.allclose(owl, bat)  # the same latent point, another animal
    with torch.no_grad():  # a covariate left out takes its reference value (the training mean)
        mean = model.covariates.specs[1]["mean"]
        torch.testing.assert_close(model.decode(z, {"animal": "bat"}), model.decode(z, {"animal": "bat", "duration": mean}))
    torch.testing.assert_close(loaded.covariates.encode(columns), model.covariates.encode(columns))
    with pytest.raises(CovariateError, match="never had"):
        loaded.decode(z, {"animal": "bison", "duration": 0.3})


def _digits_files(tmp_path, n=300):
    x = (load_digits().images[:n] / 16.0).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    pd.DataFrame({"animal": np.array(["a", "b", "c"])[np.arange(n) % 3],
                  "duration": np.linspace(0.1, 0.5, n)}).to_csv(tmp_path / "meta.csv", index=False)
    return ["--data", "lvm.datamodules.ArrayDataModule", "--data.path", str(tmp_path / "x.npy"),
            "--data.metadata", str(tmp_path / "meta.csv"), "--data.batch_size", "64",
            "--trainer.default_root_dir", str(tmp_path / "runs"), "--trainer.logger", "false",
            "--trainer.callbacks", "[]"]


@pytest.mark.parametrize("config", ["quickstart", "digits_vae", "digits_iwae", "taylor_digits", "mlae_digits",
                                    "lattice_digits"])
def test_every_objective_trains_and_tests_with_covariates(config, tmp_path):
    specs = '[{"key": "animal", "kind": "discrete"}, {"key": "duration", "kind": "continuous", "levels": 4}]'
    cli = LVMCLI(args=["--config", f"configs/{config}.yaml", *_digits_files(tmp_path), "--model.covariates", specs,
                       "--model.covariate_warmup_steps", "2", "--trainer.max_epochs", "1",
                       "--trainer.limit_train_batches", "4"], test=True)
    metrics = cli.trainer.callback_metrics
    assert math.isfinite(float(metrics["test/log_likelihood"]))
    assert cli.model.covariates.fitted and any(p.abs().sum() > 0 for p in cli.model.covariates.film[-1].parameters())


def test_the_riemannian_objective_refuses_covariates(tmp_path):
    with pytest.raises(UsageError, match="RiemannianObjective does not take model.covariates"):
        LVMCLI(args=["--config", "configs/rvae_digits.yaml", *_digits_files(tmp_path),
                     "--model.covariates", '[{"key": "animal"}]'], test=False)
    assert not (tmp_path / "runs").exists()


def test_only_the_covariates_learn_during_the_warmup():
    model = _model()
    columns = _fit(model)
    model.hparams["covariate_warmup_steps"] = 5
    model.__dict__["_trainer"] = type("T", (), {"global_step": 0})()  # a trainer at its first step
    codes = model.covariates.encode(columns)[:8]
    model.train()
    with model.given(codes):
        model.objective(model, torch.rand(8, 6))["loss"].backward()
    assert all(p.grad is None for p in model.decoder.parameters())
    last = model.covariates.film[-1]  # outputs [gain (P), offset (P)]: only the offsets learn in the warm-up
    assert last.weight.grad[:6].abs().sum() == 0 and last.weight.grad[6:].abs().sum() > 0
    model.eval()
    assert not model._covariates_warming()  # evaluation: the whole network (gains included)


def test_the_default_warmup_is_a_tenth_of_the_run_at_most_200_steps():
    for total, expected in ((50, 5), (1000, 100), (10**5, 200)):
        model = _model()
        model.hparams["covariate_warmup_steps"] = None
        model.__dict__["_trainer"] = type("T", (), {"global_step": 0, "estimated_stepping_batches": total})()
        assert model._warmup_steps() == expected


class _CodedDigits(L.LightningDataModule):
    """64 digits with covariate codes, in batches of 8 (2 processes: no padding)."""

    def test_dataloader(self):
        x = torch.tensor(load_digits().images[:64], dtype=torch.float32).div(16).unsqueeze(1)
        codes = torch.stack([torch.arange(64) % 3, torch.linspace(-1.5, 1.5, 64)], 1).float()
        return DataLoader(TensorDataset(x, torch.zeros(64), codes), batch_size=8)


def _conditional_test(devices: int) -> dict:
    torch.manual_seed(0)
    model = LatentVariableModel(MLPDecoder([1, 8, 8], [16]), GaussianLikelihood(0.1), TorusPrior(2), QMCObjective(89),
                                eval_num_points=233, covariates=SPECS)
    rng = np.random.default_rng(0)
    model.covariates.fit({"animal": np.array(["a", "b", "c"])[rng.integers(0, 3, 50)], "duration": rng.normal(size=50)})
    with torch.no_grad():
        for parameter in model.covariates.parameters():
            parameter.normal_(0, 0.3, generator=torch.Generator().manual_seed(1))
    trainer = L.Trainer(accelerator="cpu", devices=devices, strategy="ddp_spawn" if devices > 1 else "auto",
                        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    return trainer.test(model, datamodule=_CodedDigits(), verbose=False)[0]


class _SessionDigits(L.LightningDataModule):
    """64 digits as two sessions of 32 pixels each (the top and bottom halves, each in its own block), batches of 8."""

    def test_dataloader(self):
        x = torch.tensor(load_digits().images[:64], dtype=torch.float32).div(16).reshape(64, 64)
        session = torch.arange(64) % 2
        x = torch.where((torch.arange(64)[None] >= 32) == session[:, None].bool(), x, 0.0)  # [64, 64] blocks
        return DataLoader(TensorDataset(x, session, session[:, None].float()), batch_size=8)


def _sessions_test(devices: int) -> dict:
    torch.manual_seed(0)
    model = LatentVariableModel(MLPDecoder([64], [16]), GaussianLikelihood(0.1), TorusPrior(2), QMCObjective(89),
                                eval_num_points=233, covariates=[{"key": "session", "kind": "session"}])
    model.covariates.fit({"session": np.array(["top", "bottom"])}, blocks={"top": (0, 32), "bottom": (32, 64)})
    model._build_session_metrics()
    trainer = L.Trainer(accelerator="cpu", devices=devices, strategy="ddp_spawn" if devices > 1 else "auto",
                        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    return trainer.test(model, datamodule=_SessionDigits(), verbose=False)[0]


@pytest.mark.slow
def test_the_conditional_heldout_likelihood_under_ddp_equals_the_single_process_value():
    single, distributed = _conditional_test(1), _conditional_test(2)
    assert distributed["test/log_likelihood"] == pytest.approx(single["test/log_likelihood"], abs=1e-5)
    single, distributed = _sessions_test(1), _sessions_test(2)  # per session too
    for key in ("test/log_likelihood", "test/log_likelihood/session=bottom", "test/log_likelihood/session=top"):
        assert distributed[key] == pytest.approx(single[key], abs=1e-5), key


# ----- recovery of a known latent (the must-hold) -----------------------------------------------------------

N, D, SIGMA = 3000, 20, 0.1


def _synthetic(kind: str):
    """Data from a 1-D periodic latent z and a covariate c through a known decoder: x = tanh(W [cos, sin](2 pi z)) *
    gain(c) + offset(c) + noise. Discrete: four categories, each with its own gain and offset per feature (offsets
    larger than the latent's signal); continuous: c uniform in [-1, 1], gain 1 + 0.4 c and offset c v."""
    rng = np.random.default_rng(0)
    z = rng.random(N)
    weights = rng.normal(size=(2, D))
    if kind == "discrete":
        c = rng.integers(0, 4, N)
        gains, offsets = rng.uniform(0.5, 1.5, size=(4, D)), rng.normal(size=(4, D))
        metadata = pd.DataFrame({"animal": np.array(["a", "b", "c", "d"])[c]})

        def mean(grid, i):
            return np.tanh(_features(grid) @ weights) * gains[c[i]] + offsets[c[i]]
    else:
        c = rng.uniform(-1, 1, N)
        v = rng.normal(size=D)
        metadata = pd.DataFrame({"duration": c})

        def mean(grid, i):
            return np.tanh(_features(grid) @ weights) * (1 + 0.4 * c[i]) + c[i] * v
    x = np.stack([mean(z[i:i + 1], i)[0] for i in range(N)]) + SIGMA * rng.normal(size=(N, D))
    return z, x.astype(np.float32), metadata, mean


def _features(z):
    return np.stack([np.cos(2 * np.pi * z), np.sin(2 * np.pi * z)], 1)


def _true_log_likelihood(x, rows, mean) -> float:
    grid = (np.arange(4096) + 0.5) / 4096  # the true model's integral over z, far finer than the model's lattice
    values = []
    for i in rows:
        log_p = (-0.5 * ((x[i] - mean(grid, i)) / SIGMA) ** 2 - math.log(SIGMA) - 0.5 * math.log(2 * math.pi)).sum(1)
        values.append(np.logaddexp.reduce(log_p) - math.log(len(grid)))
    return float(np.mean(values))


def _fit_synthetic(tmp_path, x, metadata, covariates, epochs=100):
    tmp_path.mkdir(parents=True)
    np.save(tmp_path / "x.npy", x)
    metadata.to_csv(tmp_path / "meta.csv", index=False)
    model = {"decoder": {"class_path": "lvm.networks.MLPDecoder", "init_args": {"data_shape": [D], "hidden": [64, 64]}},
             "likelihood": {"class_path": "lvm.likelihoods.GaussianLikelihood",
                            "init_args": {"variance": SIGMA ** 2, "mean_activation": "identity"}},
             "prior": {"class_path": "lvm.priors.TorusPrior", "init_args": {"dim": 1}},
             "objective": {"class_path": "lvm.objectives.QMCObjective", "init_args": {"num_points": 256}},
             "eval_num_points": 1024, "eval_every_n_epochs": 50}
    if covariates:
        model["covariates"] = covariates
    config = {"seed_everything": 0, "model": model,
              "trainer": {"max_epochs": epochs, "default_root_dir": str(tmp_path / "runs"), "logger": False,
                          "enable_progress_bar": False, "callbacks": []},
              "data": {"class_path": "lvm.datamodules.ArrayDataModule",
                       "init_args": {"path": str(tmp_path / "x.npy"), "metadata": str(tmp_path / "meta.csv")}}}
    cli = LVMCLI(args=config, test=False)
    return cli.model.eval(), cli.datamodule


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["discrete", "continuous"])
def test_a_conditional_1d_model_recovers_a_known_latent_and_the_true_likelihood(kind, tmp_path):
    z, x, metadata, mean = _synthetic(kind)
    spec = {"key": "animal", "kind": "discrete"} if kind == "discrete" else \
        {"key": "duration", "kind": "continuous", "levels": 64}
    model, datamodule = _fit_synthetic(tmp_path / "conditional", x, metadata, [spec])
    rows = datamodule.split_rows("test")
    true = _true_log_likelihood(x, rows, mean)
    with torch.no_grad(), model.given(datamodule.covariate_codes[rows]):
        fitted = model.log_likelihood(torch.from_numpy(x[rows]), 4181, 0).mean().item()
        embedding = model.embed(torch.from_numpy(x[rows])).numpy()
    assert abs(fitted - true) / abs(true) < 0.05, (fitted, true)
    assert aligned_r2(z[rows, None], embedding, periodic=True) >= 0.9
    # the wrong-covariate check passes the trained model and flags it once its covariate network is zeroed
    from lvm.analysis.covariate_use import shuffled_log_likelihood
    key = spec["key"]
    test_batches = datamodule.test_dataloader()
    assert not shuffled_log_likelihood(model, test_batches, warn=False)[key]["ignored"]
    with torch.no_grad():
        for parameter in model.covariates.film[-1].parameters():
            parameter.zero_()
    assert shuffled_log_likelihood(model, test_batches, warn=False)[key]["ignored"]
    unconditional, _ = _fit_synthetic(tmp_path / "unconditional", x, metadata, None)
    with torch.no_grad():
        plain = unconditional.log_likelihood(torch.from_numpy(x[rows]), 4181, 0).mean().item()
    assert plain < true - 0.2 * abs(true), (plain, true)  # the covariate's effect is beyond a 1-D latent


def test_the_estimator_conditions_on_metadata_columns(tmp_path):
    from lvm.tools.estimator import Embedding
    rng = np.random.default_rng(0)
    animal = np.array(["a", "b", "c"])[rng.integers(0, 3, 300)]
    x = (rng.normal(size=(300, 5)) + 3.0 * (animal == "b")[:, None]).astype(np.float32)
    estimator = Embedding(latent_dim=1, max_epochs=2, n_init=1, covariates=["animal"], root_dir=str(tmp_path))
    z = estimator.fit_transform(x, metadata={"animal": animal})
    assert z.shape == (300, 1) and estimator.model_.covariates.specs[0]["categories"] == ["a", "b", "c"]
    with pytest.raises(ValueError, match=r"conditioned on \['animal'\]; pass metadata="):
        estimator.transform(x)
    with pytest.raises(CovariateError, match="never had"):
        estimator.score(x[:2], metadata={"animal": ["a", "zebra"]})
    assert math.isfinite(estimator.score(x[:20], metadata={"animal": animal[:20]}))
    a, b = (estimator.inverse_transform([[0.3]], covariates={"animal": name}) for name in ("a", "b"))
    assert not np.allclose(a, b)  # the same point decoded as another category
    assert estimator.sample(4, random_state=0, covariates={"animal": "c"}).shape == (4, 5)
