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

__all__ = ["Objective"]


class Objective(nn.Module):
    """Base class for training objectives. Subclasses override :meth:`forward`.

    Set ``requires_encoder = True`` when the objective needs ``model.encoder``,
    ``requires_gaussian_latent = True`` when it assumes the N(0, I) prior, and
    ``deterministic_encoder = True`` when the encoder outputs a code ``z = f(x): [b, d]`` (an
    autoencoder such as MLAE) rather than the mean and log-variance ``[b, 2d]`` of q(z | x).
    """

    requires_encoder: bool = False
    requires_gaussian_latent: bool = False
    deterministic_encoder: bool = False

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
