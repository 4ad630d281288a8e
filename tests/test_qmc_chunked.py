"""Memory-bounded QMC: the chunked (checkpointed) step equals the single pass, its memory does not grow with m,
and chunked importance-sampled estimates equal unchunked ones."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from lvm.likelihoods import BernoulliLikelihood, GaussianLikelihood
from lvm.model import LatentVariableModel
from lvm.networks import ConvDecoder, MLPDecoder
from lvm.priors import TorusPrior
from lvm.estimators.variational import importance_sampled_log_likelihood
from lvm.objectives import QMCObjective

ROOT = Path(__file__).resolve().parents[1]


def _loss_and_gradients(model, x, chunk_size):
    model.objective.chunk_size, model.objective.points = chunk_size, "qmc"  # the fixed lattice: same points each call
    model.zero_grad()
    loss = model.objective(model, x)["loss"]
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.decoder.parameters()]


@pytest.mark.parametrize("likelihood, decoder, shape", [
    (BernoulliLikelihood, lambda: MLPDecoder([1, 8, 8], [16, 32]), (1, 8, 8)),
    (lambda: GaussianLikelihood(0.1), lambda: MLPDecoder([1, 8, 8], [16, 32]), (1, 8, 8)),
    (BernoulliLikelihood, lambda: ConvDecoder(28, hidden=16, channels=[8, 4]), (1, 28, 28)),
])
def test_chunked_qmc_step_equals_the_single_pass(float64, likelihood, decoder, shape):
    torch.manual_seed(0)
    model = LatentVariableModel(decoder(), likelihood(), TorusPrior(2), QMCObjective(89))
    x = torch.rand(6, *shape).round()
    loss, gradients = _loss_and_gradients(model, x, None)
    for chunk_size in (7, 32, 88):  # 89 points: never a multiple
        chunked_loss, chunked_gradients = _loss_and_gradients(model, x, chunk_size)
        torch.testing.assert_close(chunked_loss, loss, rtol=1e-12, atol=1e-12)
        for chunked, single in zip(chunked_gradients, gradients):
            torch.testing.assert_close(chunked, single, rtol=1e-10, atol=1e-12)


def test_automatic_chunk_size_follows_the_memory_budget():
    model = LatentVariableModel(ConvDecoder(28, hidden=16, channels=[8, 4]), BernoulliLikelihood(), TorusPrior(2),
                                QMCObjective(2584))
    x_flat = torch.rand(4, 784)
    assert model.objective.points_per_chunk(model, x_flat) is None  # 1 GiB holds all 2584 points: single pass
    model.objective.memory_budget_mb = 1.0
    chunk = model.objective.points_per_chunk(model, x_flat)
    # the decoder's output alone is 784 floats per point, so 1 MiB holds fewer than 2**20 / (4 * 784) = 334 points
    assert 1 <= chunk < 334
    with pytest.raises(ValueError, match="chunk_size must be a positive"):
        QMCObjective(chunk_size=0)


PEAK_SCRIPT = textwrap.dedent("""
    import json, sys
    import torch
    from benchmarks.measure import PeakMemory
    from lvm.likelihoods import BernoulliLikelihood
    from lvm.model import LatentVariableModel
    from lvm.networks import ConvDecoder
    from lvm.priors import TorusPrior
    from lvm.objectives import QMCObjective

    torch.manual_seed(0)
    num_points, chunk_size = int(sys.argv[1]), None if sys.argv[2] == "none" else int(sys.argv[2])
    model = LatentVariableModel(ConvDecoder(64, hidden=64, channels=[32, 32, 16, 16]), BernoulliLikelihood(),
                                TorusPrior(2), QMCObjective(num_points, chunk_size=chunk_size))
    x = torch.rand(8, 1, 64, 64).round()
    with PeakMemory("cpu") as peak:
        model.objective(model, x)["loss"].backward()
    print(json.dumps({"peak_mb": peak.bytes / 2**20}))
""")


def _peak_mb(num_points: int, chunk_size: int | None) -> float:
    out = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(num_points), str(chunk_size or "none")], cwd=ROOT,
                         capture_output=True, text=True, check=True, env={"PYTHONPATH": str(ROOT), "PATH": ""})
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mb"]


@pytest.mark.slow
def test_chunked_step_memory_does_not_grow_with_the_lattice():
    chunked_small, chunked_large = _peak_mb(610, 128), _peak_mb(2584, 128)
    single_large = _peak_mb(2584, None)
    assert chunked_large < 300  # the stated budget for this decoder and batch (about 180 MB measured)
    assert chunked_large < 1.2 * chunked_small + 20  # m grew 4.2x, memory did not (20 MB of sampling noise)
    assert single_large > 2 * chunked_large  # the single pass's activations do grow with m


def test_chunked_importance_sampling_equals_one_pass(float64):
    torch.manual_seed(0)
    model = LatentVariableModel(MLPDecoder([5], [8]), GaussianLikelihood(0.3, "identity"), TorusPrior(2),
                                QMCObjective(89))
    x = torch.randn(4, 5)
    z, log_ratio = torch.rand(23, 4, 2), torch.randn(23, 4)  # fixed draws, so chunking changes nothing but memory
    taken = 0

    def draw(k):
        nonlocal taken
        taken += k
        return z[taken - k:taken], log_ratio[taken - k:taken]

    log_likelihood = lambda z_: model.log_prob(x, z_)  # noqa: E731
    whole = importance_sampled_log_likelihood(log_likelihood, draw, 23)
    for chunk in (1, 5, 22):
        taken = 0
        torch.testing.assert_close(importance_sampled_log_likelihood(log_likelihood, draw, 23, chunk), whole)
