"""Bits per dimension of quantised data (uniform dequantisation) and of probability masses."""

import math

import pytest
import torch

from lvm.estimators.heldout import bits_per_dim
from lvm.likelihoods import BernoulliLikelihood, GaussianLikelihood
from lvm.model import LatentVariableModel
from lvm.networks import MLPDecoder
from lvm.objectives import QMCObjective
from lvm.priors import TorusPrior


def test_a_density_flat_over_each_bin_gives_the_exact_bits_of_the_levels():
    """A density constant on each bin of width `step` (a histogram with bin probabilities w) has the value w / step at
    a level; the quantised data's bits are then exactly -log2 w, whatever the step."""
    torch.manual_seed(0)
    step, levels, dims = 1 / 16, 17, 3
    w = torch.softmax(torch.randn(levels, dtype=torch.float64), 0)  # P(level)
    k = torch.randint(levels, (5, dims))  # [b, D] levels of 5 examples
    log_density = (w[k] / step).log().sum(1)  # [b]: log p(x) of the histogram density at the levels
    exact = -w[k].log2().mean(1)  # [b]: -log2 P(x) / D
    torch.testing.assert_close(bits_per_dim(log_density, dims, step), exact)
    # the uniform choice of one of 17 levels: log2(17) bits, the density (16/17 per unit) alone gives a negative value
    uniform = torch.tensor([dims * math.log(16 / 17)], dtype=torch.float64)
    assert bits_per_dim(uniform, dims, step).item() == pytest.approx(math.log2(17))
    assert bits_per_dim(uniform, dims).item() == pytest.approx(math.log2(17 / 16))


@pytest.mark.parametrize("likelihood, offset", [(GaussianLikelihood(0.1), 4.0), (BernoulliLikelihood(), 0.0)])
def test_held_out_bits_add_the_bins_volume_only_for_a_density(monkeypatch, likelihood, offset):
    """A Gaussian is a density over the grey levels: + log2(1/step) bits; a Bernoulli is already a probability mass."""
    torch.manual_seed(0)
    model = LatentVariableModel(MLPDecoder([1, 4, 4], [8]), likelihood, TorusPrior(2), QMCObjective(89),
                                eval_num_points=233, quantization_step=1 / 16)
    logged = {}
    monkeypatch.setattr(model, "log", lambda name, metric, **kwargs: logged.__setitem__(name, metric.compute()))
    x = torch.randint(17, (6, 1, 4, 4)).float() / 16  # quantised grey levels in [0, 1]
    model.evaluation.update(model, x, "test")
    expected = -logged["test/log_likelihood"] / (16 * math.log(2)) + offset
    assert logged["test/bits_per_dim"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_a_step_that_is_not_positive_is_refused():
    with pytest.raises(ValueError, match="quantization_step must be > 0"):
        LatentVariableModel(MLPDecoder([4], [8]), GaussianLikelihood(0.1), TorusPrior(2), QMCObjective(89),
                            quantization_step=0.0)
