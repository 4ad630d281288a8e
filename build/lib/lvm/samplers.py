"""Latent samplers fitted after training, separate from the model's prior (as in Pythae).

MLAE paper, section 5.2: "To get latent samples, Pythae proposes to sample from a standard normal,
and a GMM with 10 components fit to the training latent codes." The mixture is fitted with
scikit-learn and stored as buffers, so it travels in checkpoints and ``model.sample(n)`` draws from
it after ``load_from_checkpoint``.
"""

from __future__ import annotations

import torch
from sklearn.mixture import GaussianMixture
from torch import nn
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

__all__ = ["GaussianMixtureSampler"]


class GaussianMixtureSampler(nn.Module):
    """A full-covariance Gaussian mixture over latent codes.

    Args:
        num_components: mixture components (10 in the paper).
        seed: scikit-learn's ``random_state`` for the k-means initialisation (a fit is deterministic).
        max_iter: EM iterations.

    The model calls :meth:`attach` with the latent dimension; :meth:`fit` takes codes ``[n, d]``.
    Until it is fitted, :attr:`fitted` is ``False`` and the model samples from its prior.
    """

    def __init__(self, num_components: int = 10, seed: int = 0, max_iter: int = 200):
        super().__init__()
        if num_components < 1:
            raise ValueError(f"num_components must be at least 1; got {num_components}.")
        self.num_components, self.seed, self.max_iter = num_components, seed, max_iter

    def attach(self, dim: int) -> None:
        """Allocate the mixture's buffers for a ``dim``-dimensional latent space."""
        k = self.num_components
        self.register_buffer("weights", torch.full((k,), 1.0 / k, dtype=torch.float64))
        self.register_buffer("means", torch.zeros(k, dim, dtype=torch.float64))
        self.register_buffer("covariances", torch.eye(dim, dtype=torch.float64).repeat(k, 1, 1))
        self.register_buffer("is_fitted", torch.tensor(False))

    @property
    def fitted(self) -> bool:
        return bool(self.is_fitted)

    @torch.no_grad()
    def fit(self, codes: torch.Tensor) -> "GaussianMixtureSampler":
        """Fit the mixture to codes ``[n, d]`` (EM, k-means initialisation)."""
        if len(codes) < self.num_components:
            raise ValueError(f"Fitting {self.num_components} components needs at least as many codes; got {len(codes)}.")
        mixture = GaussianMixture(self.num_components, covariance_type="full", random_state=self.seed,
                                  max_iter=self.max_iter).fit(codes.detach().cpu().double().numpy())
        for name in ("weights", "means", "covariances"):
            getattr(self, name).copy_(torch.from_numpy(getattr(mixture, f"{name}_")))
        self.is_fitted.fill_(True)
        return self

    def distribution(self) -> MixtureSameFamily:
        return MixtureSameFamily(Categorical(probs=self.weights), MultivariateNormal(self.means, self.covariances))

    @torch.no_grad()
    def sample(self, n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``n`` latent draws ``[n, d]`` from the mixture."""
        if not self.fitted:
            raise RuntimeError("The Gaussian mixture has not been fitted; call fit(codes) first.")
        return self.distribution().sample((n,)).to(dtype)
