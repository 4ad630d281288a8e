import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
import torch

from lvm.likelihoods import BernoulliLikelihood, GaussianLikelihood

LIKELIHOODS = [BernoulliLikelihood(), GaussianLikelihood(0.1), GaussianLikelihood(0.5, "identity")]


@pytest.mark.parametrize("likelihood", LIKELIHOODS, ids=lambda l: f"{type(l).__name__}")
def test_pairwise_log_prob_equals_broadcast_reference(likelihood):
    torch.manual_seed(0)
    x = torch.rand(7, 30, dtype=torch.float64)
    params = torch.randn(11, 30, dtype=torch.float64)
    reference = likelihood.log_prob(x[:, None, :], params[None, :, :])  # [b, m] via a [b, m, D] tensor
    assert torch.allclose(likelihood.pairwise_log_prob(x, params), reference, atol=1e-10)


def test_log_probs_match_torch_distributions():
    torch.manual_seed(0)
    x = torch.bernoulli(torch.full((5, 20), 0.3))
    logits = torch.randn(5, 20)
    expected = torch.distributions.Bernoulli(logits=logits).log_prob(x).sum(-1)
    assert torch.allclose(BernoulliLikelihood().log_prob(x, logits), expected, atol=1e-5)

    y, raw = torch.rand(5, 20), torch.randn(5, 20)
    expected = torch.distributions.Normal(torch.sigmoid(raw), 0.1**0.5).log_prob(y).sum(-1)
    assert torch.allclose(GaussianLikelihood(0.1).log_prob(y, raw), expected, atol=1e-4)


def test_gaussian_rejects_bad_arguments():
    with pytest.raises(ValueError, match="positive variance"):
        GaussianLikelihood(0.0)
    with pytest.raises(ValueError, match="mean_activation"):
        GaussianLikelihood(0.1, "relu")


@settings(max_examples=25, deadline=None)
@given(b=st.integers(1, 6), m=st.integers(1, 9), d=st.integers(1, 40), seed=st.integers(0, 2**16))
def test_pairwise_log_prob_matches_reference_for_any_shape(b, m, d, seed):
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(b, d, generator=generator, dtype=torch.float64)
    params = 3 * torch.randn(m, d, generator=generator, dtype=torch.float64)
    for likelihood in LIKELIHOODS:
        reference = likelihood.log_prob(x[:, None, :], params[None, :, :])
        assert torch.allclose(likelihood.pairwise_log_prob(x, params), reference, atol=1e-9)
