"""The objective plugin API: the extension point of lvm. An objective is a loss.

The model (:class:`lvm.model.LatentVariableModel`) holds every component: ``model.prior`` (:mod:`lvm.priors`),
``model.likelihood`` (:mod:`lvm.likelihoods`), ``model.decoder``, and optionally ``model.encoder`` with
``model.posterior`` (:mod:`lvm.posteriors`). An objective holds no parameters and no flags: it calls
:meth:`Objective.validate` once, when the model is built, to say what it needs (clear errors otherwise), then
``objective(model, x)`` on every training and held-out batch (``x: [b, *data_shape]``) and returns a dict with
a scalar ``"loss"`` to minimise; every other scalar entry is logged as ``"{stage}/{key}"``.

What an objective uses from the model:

* ``model.encode(x) -> params`` (the encoder's output, read by ``model.posterior``: ``code``, ``rsample``,
  ``log_prob``), ``model.latent_code(x) -> [b, d]``, ``model.posterior_samples(x, k) -> [k, b, d]``;
* ``model.prior.log_prob(z)`` (``model.prior_log_prob(z)`` for priors defined through the decoder), ``model.prior.dim``,
  ``model.immersion()`` (the decoder's immersion, which geometric components take as an argument);
* ``model.log_prob(x, z) -> [k, b]`` (``log p(x | z)`` for draws ``z: [k, b, d]``), ``model.pairwise_log_likelihood(
  x_flat, z) -> [b, m]``, ``model.decoder_params(z) -> [n, D]``, ``model.decoded_mean(z) -> [n, D]``,
  ``model.flatten(x) -> [b, D]``;
* the estimators of :mod:`lvm.estimators` and the closed-form KLs of :mod:`lvm.divergences`, which take these as
  tensors and callables.

Callbacks steer an objective only through attributes it declares: :attr:`Objective.kl_weight` (``None`` for an
objective without a weighted KL term) is the one :class:`lvm.callbacks.KLWarmup` writes.
"""

from __future__ import annotations

import torch
from torch import nn

from lvm.numerics.derived import reusing_derived_weights

__all__ = ["Objective"]


class Objective(nn.Module):
    """Base class of training objectives: override :meth:`forward` and, to check what you need,
    :meth:`validate` (with :meth:`require`)."""

    kl_weight: float | None = None  # beta of a weighted KL term (set to 1.0 by objectives that have one)

    def validate(self, model) -> None:
        """Raise a ``ValueError`` that says what to change if ``model`` lacks what this objective needs."""

    def require(self, model, *, prior: type | tuple[type, ...] | None = None,
                posterior: type | tuple[type, ...] | None = None,
                likelihood: type | tuple[type, ...] | None = None) -> None:
        """Check the model's components' types; ``posterior`` also requires an encoder."""
        name = type(self).__name__
        for role, wanted in (("prior", prior), ("posterior", posterior), ("likelihood", likelihood)):
            if wanted is None:
                continue
            component = getattr(model, role)
            if not isinstance(component, wanted):
                options = " or ".join(f"{cls.__module__}.{cls.__name__}" for cls in (wanted if isinstance(wanted, tuple) else (wanted,)))
                extra = " (with model.encoder)" if role == "posterior" else ""
                got = "none" if component is None else type(component).__name__
                raise ValueError(f"{name} needs model.{role}: {options}{extra}; got {got}.")

    def refuse_sessions(self, model, reason: str) -> None:
        """Raise a ``ValueError`` if ``model`` has a session covariate (examples with different feature counts,
        :mod:`lvm.covariates`), which this objective cannot take for ``reason``."""
        covariates = getattr(model, "covariates", None)
        if covariates is not None and covariates.has_sessions:
            raise ValueError(f"{type(self).__name__} does not take a session covariate (kind: session): {reason}. Use "
                             "QMCObjective, ELBO or IWAE for sessions with different feature counts.")

    def __call__(self, model, x: torch.Tensor) -> dict[str, torch.Tensor]:
        with reusing_derived_weights():  # networks called several times per loss derive their weights once
            return super().__call__(model, x)

    def forward(self, model, x: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError
