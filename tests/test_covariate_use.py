"""The check that a conditional model uses its covariates (lvm.analysis.covariate_use) on hand-set models whose answer
is known: a FiLM network at zero (the state right after fitting) ignores the covariates; one that gives each category
its own offset, on data generated from those offsets, uses them. And TrustDiagnostics writes the check into
diagnostics.json at the end of a conditional model's test pass."""

import json
import math
import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Subset, TensorDataset

import lightning as L
from lvm.analysis.covariate_use import (IgnoredCovariateWarning, MIN_DROP, covariate_use, output_spread,
                                        shuffled_log_likelihood)
from lvm.callbacks import TrustDiagnostics
from lvm.datamodules.base import SplitDataModule
from lvm.likelihoods import GaussianLikelihood
from lvm.model import LatentVariableModel
from lvm.networks import MLPDecoder
from lvm.objectives import QMCObjective
from lvm.priors import TorusPrior
from lvm.runs.metrics_file import MetricsFile

CATEGORIES = ["finch", "gerbil", "mouse"]
A = torch.tensor([[0.8, 0.3], [-0.2, 0.6]])  # f(z) = A (sin 2 pi z, cos 2 pi z) + B
B = torch.tensor([0.5, -1.0])
OFFSETS = torch.tensor([[0.0, 1.5, -1.5], [1.0, 0.0, -1.0]])  # [D, categories]: each animal's offset
VARIANCE = 0.05
EMBEDDING_SCALE = 2.0


def _metadata(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"animal": rng.choice(CATEGORIES, n), "duration": rng.gamma(4.0, 0.02, n)}


def _model(uses_animal: bool) -> LatentVariableModel:
    """A 1-D torus model with two data dimensions whose decoder is ``f(z) = A (sin, cos) + B`` exactly (a ReLU layer
    kept in its linear range), conditioned on a discrete ``animal`` and a continuous ``duration``. Fitted on synthetic
    metadata, so the FiLM network is zero; ``uses_animal`` sets it by hand to add ``OFFSETS[:, animal]`` (no gain,
    duration without effect)."""
    torch.manual_seed(0)
    decoder = MLPDecoder([2], [2])
    model = LatentVariableModel(decoder, GaussianLikelihood(VARIANCE, mean_activation="identity"), TorusPrior(1),
                                QMCObjective(64), eval_num_points=128, eval_num_samples=8, covariate_hidden=4,
                                covariates=[{"key": "animal", "kind": "discrete"},
                                            {"key": "duration", "kind": "continuous", "levels": 8}])
    model.covariates.fit(_metadata(200, 0))
    with torch.no_grad():
        first, last = decoder.net[0], decoder.net[-1]
        first.weight.copy_(torch.eye(2)), first.bias.fill_(2.0)  # features in [-1, 1] + 2 > 0: ReLU is the identity
        last.weight.copy_(A), last.bias.copy_(B - 2.0 * A.sum(dim=1))
        if uses_animal:
            film = model.covariates.film
            model.covariates.embeddings["0"].weight.copy_(EMBEDDING_SCALE * torch.eye(3))  # animal l -> 2 e_l
            film[0].weight.zero_(), film[0].bias.zero_()
            film[0].weight[:3, :3] = torch.eye(3)  # hidden = SiLU(2 e_l) = SiLU(2) e_l; duration's column stays 0
            silu = EMBEDDING_SCALE / (1 + math.exp(-EMBEDDING_SCALE))
            film[2].weight.zero_(), film[2].bias.zero_()
            film[2].weight[2:, :3] = OFFSETS / silu  # rows P..2P-1: the offsets (the gains, rows 0..P-1, stay 0)
    model.eval()
    return model


def _data(n: int, seed: int, model: LatentVariableModel):
    """Examples of the true model of ``_model(uses_animal=True)``: ``x = f(z) + OFFSETS[:, animal] + noise``, and
    batches ``(x, label, codes)``."""
    generator = torch.Generator().manual_seed(seed)
    metadata = _metadata(n, seed)
    z = torch.rand(n, 1, generator=generator)
    angle = 2 * math.pi * z
    clean = torch.cat([torch.sin(angle), torch.cos(angle)], dim=1) @ A.T + B  # [n, 2]
    animal = torch.as_tensor(np.searchsorted(CATEGORIES, metadata["animal"]))
    x = clean + OFFSETS[:, animal].T + math.sqrt(VARIANCE) * torch.randn(n, 2, generator=generator)
    codes = model.covariates.encode(metadata)  # [n, 2]
    return x, animal, codes


def _loader(model, n=300, seed=1):
    x, animal, codes = _data(n, seed, model)
    return DataLoader(TensorDataset(x, animal, codes), batch_size=64)


def test_a_model_whose_film_network_is_zero_is_flagged_ignored_with_spread_ratio_zero():
    model = _model(uses_animal=False)
    loader = _loader(model)
    with pytest.warns(IgnoredCovariateWarning) as record:
        result = covariate_use(model, loader, k=5, folds=3)
    messages = [str(w.message) for w in record if issubclass(w.category, IgnoredCovariateWarning)]
    assert len(messages) == 2 and "'animal'" in messages[0] and "'duration'" in messages[1]
    for key in ("animal", "duration"):
        use = result[key]
        assert use["ignored"] is True
        assert use["output_spread"]["ratio"] == 0.0 and use["output_spread"]["covariate_spread"] == 0.0
        # (A's rows' squared norms) / 2: the variance of a sinusoid over equally spaced points
        assert use["output_spread"]["latent_spread"] == pytest.approx(float(A.pow(2).sum()) / 2, rel=1e-5)
        shuffled = use["shuffled"]
        assert abs(shuffled["drop"]) < 1e-4 and shuffled["threshold"] >= MIN_DROP
        assert f"{shuffled['log_likelihood_own']:.4f}" in messages[0]
    assert result["animal"]["output_spread"]["num_values"] == 3
    assert result["duration"]["output_spread"]["num_values"] == len(model.covariates.specs[1]["values"]) == 8
    assert result["duration"]["decodability"]["task"] == "regression"
    # the data differ by animal (OFFSETS) and a model that ignores it puts the difference into its latent: the embedding
    # carries the animal (the conditional model of the next test, on the same data, leaves it at chance)
    decodability = result["animal"]["decodability"]
    assert decodability["num_classes"] == 3 and decodability["balanced_accuracy"] > 0.8


def test_a_model_that_offsets_each_category_uses_it_and_its_spread_ratio_has_the_closed_form():
    model = _model(uses_animal=True)
    loader = _loader(model)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        result = covariate_use(model, loader, k=5, folds=3)
    flagged = [str(w.message) for w in record if issubclass(w.category, IgnoredCovariateWarning)]
    assert len(flagged) == 1 and "'duration'" in flagged[0]  # its FiLM input weights are zero
    animal = result["animal"]
    assert animal["ignored"] is False and result["duration"]["ignored"] is True
    # the same animal keeps its log-likelihood; a wrong one costs |offset difference|^2 / (2 s2) nats, many of them
    assert animal["shuffled"]["drop"] > 10 * animal["shuffled"]["drop_se"] > 0
    assert animal["shuffled"]["drop"] > 2.0
    assert 0.5 < animal["shuffled"]["changed_fraction"] < 0.8  # about 2/3 of the examples get another animal
    # output spread: across animals the offsets' variance (population, over the 3 categories), independent of z;
    # across z the sinusoids' variance (|A_d|^2 / 2 per output), the same for every animal
    covariate = float(OFFSETS.var(dim=1, unbiased=False).sum())  # (4.5 / 3) + (2 / 3)
    latent = float(A.pow(2).sum()) / 2
    spread = animal["output_spread"]
    assert spread["covariate_spread"] == pytest.approx(covariate, rel=1e-5)
    assert spread["latent_spread"] == pytest.approx(latent, rel=1e-5)
    assert spread["ratio"] == pytest.approx(covariate / latent, rel=1e-5)
    assert output_spread(model, "duration")["ratio"] == 0.0
    # given its animal, an example's posterior is about z alone: the embedding carries little of the animal
    decodability = animal["decodability"]
    assert decodability["chance_balanced_accuracy"] == pytest.approx(1 / 3)
    assert decodability["balanced_accuracy"] < 0.5


def test_the_shuffled_check_scores_as_the_held_out_estimate_and_its_permutation_is_seeded():
    model = _model(uses_animal=True)
    loader = _loader(model, n=128)
    with pytest.warns(IgnoredCovariateWarning):
        first = shuffled_log_likelihood(model, loader, seed=3)
        again = shuffled_log_likelihood(model, loader, seed=3)
    assert first == again
    own = []
    for x, _, codes in loader:
        with model.given(codes):
            own.append(model.evaluation.log_likelihood(model, x)["log_likelihood"])
    assert first["animal"]["log_likelihood_own"] == pytest.approx(torch.cat(own).double().mean().item(), rel=1e-9)


class _Animals(SplitDataModule):
    data_shape = (2,)

    def __init__(self, model):
        super().__init__(batch_size=64, num_workers=0, seed=0)
        x, animal, _ = _data(300, 2, model)
        self.x, self.animal, self.metadata = x, animal, _metadata(300, 2)

    def build_splits(self):
        dataset = TensorDataset(self.x, self.animal)
        return Subset(dataset, range(150)), Subset(dataset, range(150, 180)), Subset(dataset, range(180, 300))


def test_trust_diagnostics_writes_the_covariate_check_of_a_conditional_model(tmp_path):
    model = _model(uses_animal=True)
    trainer = L.Trainer(default_root_dir=tmp_path, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False,
                        callbacks=[TrustDiagnostics(k=3, folds=3), MetricsFile()])
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        trainer.test(model, datamodule=_Animals(model), verbose=False)
    assert any("'duration' looks ignored" in str(w.message) for w in record)
    diagnostics = json.loads((tmp_path / "diagnostics.json").read_text())
    assert diagnostics["skipped"] == {}
    use = diagnostics["covariate_use"]
    assert use["animal"]["ignored"] is False and use["duration"]["ignored"] is True
    assert use["animal"]["shuffled"]["n"] == 120
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["test/covariate_use/animal/log_likelihood_drop"] == pytest.approx(use["animal"]["shuffled"]["drop"])
    assert metrics["test/covariate_use/animal/log_likelihood_shuffled"] < metrics["test/log_likelihood"]
    assert metrics["test/covariate_use/animal/spread_ratio"] == pytest.approx(use["animal"]["output_spread"]["ratio"])
    assert metrics["test/covariate_use/duration/ignored"] == 1.0
    assert "test/covariate_use/animal/balanced_accuracy" in metrics
