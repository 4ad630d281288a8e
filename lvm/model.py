"""The single LightningModule of lvm: a decoder, a likelihood, a latent space, an optional
encoder and one objective plugin that supplies the training loss."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn

from objectives.base import Objective

from .evaluation import MAX_QMC_DIM, HeldOutEvaluation
from .lattices import default_num_points, lattice_rule, random_shift
from .latent_spaces import LatentSpace
from .likelihoods import Likelihood
from .qmc import qmc_log_likelihood, qmc_posterior

__all__ = ["LatentVariableModel", "NonFiniteLossError"]


class NonFiniteLossError(FloatingPointError):
    """Raised before the optimiser step when a training loss is NaN or infinite, so the
    parameters and the checkpoints already written stay those of the last good step."""


class LatentVariableModel(L.LightningModule):
    """A deep latent variable model p(x) = integral p(x | f(z)) p(z) dz.

    Args:
        decoder: maps latent features ``latent.features(z)`` to likelihood parameters.
        likelihood: the observation model p(x | decoder output).
        latent: the latent space and prior (the torus by default for QMC).
        objective: the training objective plugin (see :class:`objectives.Objective`).
        encoder: optional amortised posterior network (needed by ELBO/IWAE).
        optimizer: a callable ``params -> Optimizer``; Adam (lr=1e-3, its default) as in appendix B.
        lr_scheduler: an optional callable ``optimizer -> scheduler``; plateau schedulers watch
            ``val/loss``.
        eval_num_points: lattice size for the held-out log-likelihood (``val/`` and
            ``test/log_likelihood``); ``None`` picks the dense default for the latent dimension.
        eval_chunk_size: decode at most this many lattice points at once during evaluation.
        eval_num_samples: K for the importance-sampled held-out estimate of encoder models
            (see :mod:`lvm.evaluation`).
        eval_shift_seed: the seed of the lattice shift of the held-out QMC estimate (one shift for all
            batches and processes; ``None``: a fresh shift per batch).
        latent_sampler: an optional sampler fitted to the training codes after training (e.g.
            :class:`lvm.samplers.GaussianMixtureSampler`, fitted by :class:`callbacks.FitLatentSampler`);
            once fitted, :meth:`sample` draws latents from it instead of the prior.
    """

    def __init__(
        self,
        decoder: nn.Module,
        likelihood: Likelihood,
        latent: LatentSpace,
        objective: Objective,
        encoder: nn.Module | None = None,
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        eval_num_points: int | None = None,
        eval_chunk_size: int = 4096,
        eval_num_samples: int = 100,
        latent_sampler: nn.Module | None = None,
        eval_shift_seed: int | None = 0,
    ):
        super().__init__()
        with warnings.catch_warnings():
            # The CLI stores the components as class_path configs, which is what lets
            # load_from_checkpoint rebuild them; Lightning's advice to ignore nn.Module
            # arguments would break that, so its warning is silenced here.
            warnings.filterwarnings("ignore", message=".*is an instance of `nn.Module`")
            self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
        self.decoder, self.likelihood, self.latent = decoder, likelihood, latent
        self.encoder, self.objective = encoder, objective
        self.optimizer_factory, self.scheduler_factory = optimizer, lr_scheduler
        self.evaluation = HeldOutEvaluation(latent.dim, self._encoder_kind(encoder, objective), eval_num_samples)
        self.eval_num_points = eval_num_points
        self.eval_chunk_size, self.eval_shift_seed = eval_chunk_size, eval_shift_seed
        self.latent_sampler = latent_sampler
        if latent_sampler is not None:
            latent_sampler.attach(latent.dim)
        with torch.no_grad():  # fixes the input size of lazy first layers
            self.decoder(self.latent.features(self.latent.sample(1)))
        objective.attach(self)

    @staticmethod
    def _encoder_kind(encoder: nn.Module | None, objective: Objective) -> str | None:
        if encoder is None:
            return None
        if objective.deterministic_encoder:
            return "deterministic"
        return "isotropic" if objective.isotropic_encoder else "gaussian"

    # ----- the public API a scientist uses on a trained model -----------------------------

    @staticmethod
    def flatten(x: torch.Tensor) -> torch.Tensor:
        return x.flatten(start_dim=1)  # [b, D]

    def decoder_params(self, z: torch.Tensor) -> torch.Tensor:
        """Likelihood parameters for latent values ``z: [n, d]``, flattened to ``[n, D]``."""
        return self.decoder(self.latent.features(z)).flatten(start_dim=1)

    def decoded_mean(self, z: torch.Tensor) -> torch.Tensor:
        """``f_theta(z) = E[x | z]`` flattened to ``[n, D]``."""
        return self.likelihood.mean(self.decoder_params(z))

    def latent_code(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's point code ``[b, d]``: ``f(x)`` for an autoencoder (deterministic encoder),
        the mean of q(z | x) for a variational one (the first d encoder outputs in every case)."""
        if self.encoder is None:
            raise ValueError("latent_code needs an encoder; use embed(x) for the lattice posterior of a decoder-only model.")
        return self.encoder(x)[:, :self.latent.dim]

    @torch.no_grad()
    def encode_dataset(self, dataset, batch_size: int = 1024) -> torch.Tensor:
        """:meth:`latent_code` of every example of a dataset of ``x`` or ``(x, ...)`` items, ``[n, d]``."""
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
        return torch.cat([self.latent_code(self._data(batch).to(self.device)) for batch in loader])

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The decoded mean ``f_theta(z) = E[x | z]`` with the data's shape ``[n, *data_shape]``."""
        out = self.decoder(self.latent.features(z))  # [n, *data_shape] or [n, k, *data_shape]
        data_shape = out.shape[1:] if self.likelihood.params_per_dim == 1 else out.shape[2:]
        return self.likelihood.mean(out.flatten(start_dim=1)).view(-1, *data_shape)

    @torch.no_grad()
    def sample(self, n: int, from_prior: bool = False) -> torch.Tensor:
        """Decoded means of ``n`` latent draws: from the fitted ``latent_sampler`` if there is one
        (unless ``from_prior``), else from the prior (the objective's own, e.g. the R-VAE's Brownian
        motion, or the latent space's)."""
        sampler, z = self.latent_sampler, None
        if sampler is not None and sampler.fitted and not from_prior:
            z = sampler.sample(n, dtype=next(self.decoder.parameters()).dtype).to(self.device)
        if z is None:
            z = self.objective.sample_latent(self, n)
        if z is None:
            z = self.latent.sample(n, device=self.device)
        return self.decode(z)

    def lattice_points(self, num_points: int | None = None) -> torch.Tensor:
        """The unshifted evaluation lattice in the unit cube ``[m, d]`` (float64); the latent values
        are ``latent.from_unit_cube`` of it (the points of :meth:`posterior`)."""
        return lattice_rule(num_points or self.eval_num_points or default_num_points(self.latent.dim), self.latent.dim)

    def _cube_points(self, num_points: int | None, shift: bool, shift_seed: int | None = None) -> torch.Tensor:
        points = self.lattice_points(num_points)
        if not shift:
            return points
        generator = None if shift_seed is None else torch.Generator().manual_seed(shift_seed)
        return random_shift(points, generator)

    @torch.no_grad()
    def log_likelihood(self, x: torch.Tensor, num_points: int | None = None, shift_seed: int | None = None) -> torch.Tensor:
        """Randomized-QMC estimate of ``log p(x)`` in nats per example (eq. 5), ``[b]``.

        Works for any decoder (QLVM, VAE, IWAE): the lattice is mapped into the latent space
        by the inversion method, so VAE decoders are scored against their N(0, I) prior. The shift is
        random, or drawn from ``shift_seed`` (the same for every batch and process: held-out
        evaluation uses ``eval_shift_seed``, so its values are reproducible and identical under DDP).
        """
        points = self._cube_points(num_points, True, shift_seed)
        return qmc_log_likelihood(self, self.flatten(x), points, self.eval_chunk_size)

    @torch.no_grad()
    def posterior(self, x: torch.Tensor, num_points: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The discrete posterior over the (unshifted) lattice: points ``[m, d]`` and
        normalised weights ``[b, m]`` proportional to ``p(x | z_j)`` (Fig. 1C)."""
        return qmc_posterior(self, self.flatten(x), self._cube_points(num_points, False), self.eval_chunk_size)

    @torch.no_grad()
    def embed(self, x: torch.Tensor, reduce: str = "mean", num_points: int | None = None) -> torch.Tensor:
        """A point embedding ``[b, d]``: the posterior mean (circular on the torus) or mode on the
        lattice. Above 3-D, where lattices are impractical, and for objectives with their own prior
        (R-VAE), the encoder's code (the mean and mode of q(z | x))."""
        if reduce not in ("mean", "mode"):
            raise ValueError(f"reduce must be 'mean' or 'mode'; got {reduce!r}.")
        if self.encoder is not None and (self.latent.dim > MAX_QMC_DIM or self.objective.own_prior):
            return self.latent_code(x)
        z, weights = self.posterior(x, num_points)
        if reduce == "mode":
            return z[weights.argmax(dim=1)]
        return self.latent.weighted_mean(z, weights)

    # ----- Lightning hooks ---------------------------------------------------------------

    def setup(self, stage: str) -> None:
        data_shape = getattr(self.trainer.datamodule, "data_shape", None)
        if data_shape is None:
            return
        with torch.no_grad():
            produced = self.decode(self.latent.sample(1, device=self.device)).shape[1:]
            if math.prod(produced) != math.prod(data_shape):
                raise ValueError(
                    f"The decoder produces outputs of shape {list(produced)} but the data have shape "
                    f"{list(data_shape)}; set the decoder's output shape (e.g. decoder.init_args.data_shape)."
                )
            if self.encoder is not None:  # fixes the input size of a lazy first layer
                outputs = self.encoder(torch.zeros(1, *data_shape, device=self.device)).shape[-1]
                expected, kind = self.objective.encoder_outputs(self.latent.dim)
                if outputs != expected:
                    raise ValueError(
                        f"{type(self.objective).__name__} needs an encoder that outputs {kind}: {expected} features "
                        f"for a {self.latent.dim}-D latent; it outputs {outputs}. Set encoder.init_args.latent_dim: "
                        f"{self.latent.dim} and the encoder's output kind accordingly."
                    )

    @staticmethod
    def _data(batch) -> torch.Tensor:
        return batch[0] if isinstance(batch, Sequence) else batch

    def _log_objective(self, outputs: dict, stage: str, batch_size: int) -> None:
        self.log_dict(
            {f"{stage}/{key}": value for key, value in outputs.items()},
            batch_size=batch_size, prog_bar=False, sync_dist=stage != "train",
        )

    def training_step(self, batch, batch_idx):
        x = self._data(batch)
        outputs = self.objective(self, x)
        if not torch.isfinite(outputs["loss"]):
            raise NonFiniteLossError(
                f"The training loss is {outputs['loss'].item()} at global step {self.global_step} "
                f"(batch {batch_idx}). Training stopped before the optimiser step; the checkpoints "
                "written so far are intact (resume with --ckpt_path <run dir>/checkpoints/last.ckpt, "
                "e.g. with a lower learning rate)."
            )
        self._log_objective(outputs, "train", len(x))
        return outputs["loss"]

    def _heldout_step(self, batch, stage: str):
        x = self._data(batch)
        self._log_objective(self.objective(self, x), stage, len(x))
        self.evaluation.update(self, x, stage)

    def validation_step(self, batch, batch_idx):
        self._heldout_step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._heldout_step(batch, "test")

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val/loss"}}
