"""The objective plugin API: the extension point of lvm.

An objective is a ``torch.nn.Module`` (so it may own parameters and buffers, which are saved
in checkpoints and moved between devices with the model). The :class:`LatentVariableModel`
calls ``attach(model)`` once at construction, then ``objective(model, x)`` on every training
and validation batch. ``x`` has shape ``[b, *data_shape]``. The returned dict must hold a
scalar ``"loss"`` to minimise; every other scalar entry is logged as ``"{stage}/{key}"``.

Through ``model`` an objective reaches ``model.latent`` (:class:`lvm.latent_spaces.LatentSpace`),
``model.likelihood`` (:class:`lvm.likelihoods.Likelihood`), ``model.encoder`` (or ``None``),
``model.decoder_params(z) -> [n, D]``, ``model.decoded_mean(z) -> [n, D]``, ``model.latent_code(x) -> [b, d]``
and ``model.flatten(x) -> [b, D]``.
"""

from __future__ import annotations

import torch
from torch import nn

from lvm.latent_spaces import GaussianLatent
from lvm.variational import encode, rsample

__all__ = ["Objective"]


class Objective(nn.Module):
    """Base class for training objectives. Subclasses override :meth:`forward`.

    Set ``requires_encoder = True`` when the objective needs ``model.encoder``,
    ``requires_gaussian_latent = True`` when it assumes the N(0, I) prior, and
    ``deterministic_encoder = True`` when the encoder outputs a code ``z = f(x): [b, d]`` (an
    autoencoder such as MLAE) and ``isotropic_encoder = True`` when it outputs a mean and one
    log-variance ``[b, d + 1]`` (R-VAE), rather than the mean and log-variances ``[b, 2d]`` of q(z | x).
    An objective with a prior of its own sets ``own_prior = True`` (the model then embeds data with
    the encoder's code, not a lattice posterior under the latent space's prior) and overrides
    :meth:`held_out_log_likelihood` and :meth:`sample_latent`.
    """

    requires_encoder: bool = False
    requires_gaussian_latent: bool = False
    deterministic_encoder: bool = False
    isotropic_encoder: bool = False
    own_prior: bool = False

    def encoder_outputs(self, latent_dim: int) -> tuple[int, str]:
        """How many features the encoder must output, and what they are (for error messages)."""
        if self.deterministic_encoder:
            return latent_dim, "a code z (encoder.init_args.deterministic: true)"
        if self.isotropic_encoder:
            return latent_dim + 1, "a mean and one log-variance (encoder.init_args.isotropic: true)"
        return 2 * latent_dim, "a mean and log-variances (the encoders' default)"

    def draw_latent(self, model, x: torch.Tensor) -> torch.Tensor:
        """One reparameterised draw ``[b, d]`` from the encoder's q(z | x) (the code, for autoencoders)."""
        if self.deterministic_encoder:
            return model.latent_code(x)
        if self.isotropic_encoder:
            raise NotImplementedError(f"{type(self).__name__} must define how to draw from its isotropic posterior.")
        mean, log_var = encode(model, x)
        return rsample(mean, log_var, 1)[0]

    def held_out_log_likelihood(self, model, x: torch.Tensor, num_samples: int,
                                chunk_size: int | None = None) -> torch.Tensor | None:
        """The held-out ``log p(x)`` estimate ``[b]`` for a model whose prior the objective owns;
        ``None`` (the default) lets :mod:`lvm.evaluation` use the latent space's prior."""
        return None

    def sample_latent(self, model, n: int) -> torch.Tensor | None:
        """``n`` draws ``[n, d]`` from the objective's own prior; ``None`` (the default): the latent space's."""
        return None

    def attach(self, model) -> None:
        """Check that ``model`` provides what this objective needs (clear errors otherwise)
        and build any buffers that depend on it (e.g. the latent dimension)."""
        name = type(self).__name__
        if self.requires_encoder and model.encoder is None:
            raise ValueError(
                f"{name} needs an encoder: set model.encoder in the config (e.g. class_path: "
                "lvm.networks.MLPEncoder with latent_dim equal to the latent space's dim)."
            )
        if self.requires_gaussian_latent and not isinstance(model.latent, GaussianLatent):
            raise ValueError(
                f"{name} assumes a standard normal prior; set model.latent to "
                f"lvm.latent_spaces.GaussianLatent (got {type(model.latent).__name__})."
            )

    def forward(self, model, x: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError
