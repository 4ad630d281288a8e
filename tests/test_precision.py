"""What makes a GPU fast, checked on the CPU (issue 30): bf16-mixed precision runs the decoder in bfloat16 but keeps
the likelihood table and the log-sum-exp in float32 (LatentVariableModel.pairwise_from_params), so the loss equals the
float32 loss within bfloat16's rounding of the decoder; and an opt-in torch.compile of the decoder gives the same
values with the decoder's own parameters and state dict."""

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lvm.likelihoods import BernoulliLikelihood, GaussianLikelihood
from lvm.model import LatentVariableModel
from lvm.networks import MLPDecoder
from lvm.objectives import QMCObjective
from lvm.priors import TorusPrior


def _model(likelihood=None, **kwargs) -> LatentVariableModel:
    torch.manual_seed(0)
    return LatentVariableModel(MLPDecoder([1, 8, 8], [32, 64]), likelihood or BernoulliLikelihood(), TorusPrior(2),
                               QMCObjective(233), **kwargs)


@pytest.mark.parametrize("likelihood", [BernoulliLikelihood(), GaussianLikelihood(0.1)])
def test_bf16_mixed_keeps_the_table_in_float32_and_the_loss_within_rounding(likelihood):
    model = _model(likelihood)
    x = torch.rand(32, 1, 8, 8).round() if isinstance(likelihood, BernoulliLikelihood) else torch.rand(32, 1, 8, 8)
    z = model.prior.from_unit_cube(model.lattice_points(233).float())
    torch.manual_seed(1)
    full = model.objective(model, x)["loss"]
    table = model.pairwise_log_likelihood(model.flatten(x), z)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        torch.manual_seed(1)  # the same lattice shift
        mixed = model.objective(model, x)["loss"]
        mixed_table = model.pairwise_log_likelihood(model.flatten(x), z)
        assert model.decoder_params(z[:4]).dtype == torch.bfloat16  # the decoder does run in bfloat16
        naive = model.likelihood.pairwise_log_prob(model.flatten(x), model.decoder_params(z))  # no float32 table
        decoded = model.decode(z[:4])
    assert mixed_table.dtype == mixed.dtype == decoded.dtype == torch.float32  # (plots read decoded images as numpy)
    # the decoder's outputs rounded to 8 significant bits move each log-likelihood by a little; a bfloat16 table
    # would also round the sums of 64 pixels' terms
    assert (mixed - full).abs() < 0.01 * full.abs()
    assert (mixed_table - table).abs().max() < (naive.float() - table).abs().max()


def test_training_with_bf16_mixed_precision_runs_and_lowers_the_loss(tmp_path):
    model = _model()
    x = (torch.rand(256, 1, 8, 8) < torch.linspace(0.1, 0.9, 64).view(1, 1, 8, 8)).float()
    loader = DataLoader(TensorDataset(x), batch_size=64)
    torch.manual_seed(2)
    before = model.objective(model, x)["loss"].item()
    trainer = L.Trainer(precision="bf16-mixed", max_epochs=5, accelerator="cpu", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path, limit_val_batches=0)
    trainer.fit(model, loader)
    torch.manual_seed(2)
    after = model.objective(model, x)["loss"].item()
    assert all(p.dtype == torch.float32 for p in model.parameters())  # mixed: the weights stay float32
    assert after < before


def test_a_compiled_decoder_gives_the_same_values_and_state_dict():
    plain, compiled = _model(), _model(compile_decoder="eager")  # the eager backend: compilation's plumbing only
    assert list(compiled.state_dict()) == list(plain.state_dict())
    compiled.load_state_dict(plain.state_dict())
    x = torch.rand(16, 1, 8, 8).round()
    z = torch.rand(50, 2)
    torch.testing.assert_close(compiled.decoder_params(z), plain.decoder_params(z))
    torch.manual_seed(3)
    loss = compiled.objective(compiled, x)["loss"]
    torch.manual_seed(3)
    torch.testing.assert_close(loss, plain.objective(plain, x)["loss"])
    loss.backward()
    assert next(compiled.decoder.parameters()).grad is not None  # the compiled module trains the decoder's parameters
    assert compiled.hparams["compile_decoder"] == "eager"  # and a checkpoint compiles it again


def test_held_out_estimates_and_embeddings_are_float32_whatever_precision_trained(tmp_path):
    """Under bf16-mixed the held-out log-likelihood, the posterior summaries the test pass keeps and the embeddings are
    computed without autocast: the same values as a float32 test of the same weights."""
    x = (torch.rand(128, 1, 8, 8) < torch.linspace(0.1, 0.9, 64).view(1, 1, 8, 8)).float()
    loader = DataLoader(TensorDataset(x), batch_size=64)
    results = {}
    for precision in ("32-true", "bf16-mixed"):
        model = _model(eval_num_points=610)
        trainer = L.Trainer(precision=precision, accelerator="cpu", logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
        metrics = trainer.test(model, loader, verbose=False)[0]
        results[precision] = (metrics["test/log_likelihood"], model.test_results["mean"], model.test_results["entropy"])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert model.eval().embed(x[:4]).dtype == torch.float32
    (full, mean, entropy), (mixed, mixed_mean, mixed_entropy) = results.values()
    assert mixed_mean.dtype == mixed_entropy.dtype == torch.float32
    assert mixed == pytest.approx(full, rel=1e-6)
    torch.testing.assert_close(mixed_mean, mean)
    torch.testing.assert_close(mixed_entropy, entropy)
