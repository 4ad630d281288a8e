"""The single LightningModule of lvm: a decoder, a likelihood, a prior, an optional encoder with its
posterior family, and one objective plugin that supplies the training loss."""

from __future__ import annotations

import atexit
import contextlib
import math
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn
from torchmetrics import MeanMetric

from lvm.batches import batch_data
from lvm.covariates import CovariateError, Covariates
from lvm.estimators.heldout import HeldOutEvaluation
from lvm.estimators.qmc import pairwise_table
from lvm.estimators.summaries import EvaluationResults, lattice_posterior_summary
from lvm.numerics.logspace import log_mean_exp
from lvm.legacy import upgraded_source
from lvm.likelihoods import Likelihood
from lvm.numerics.geometry import Immersion
from lvm.numerics.lattices import default_num_points, lattice_rule, random_shift
from lvm.numerics.snapshots import TensorSnapshot
from lvm.objective import Objective
from lvm.posteriors import Posterior
from lvm.priors import InvertiblePrior, Prior

__all__ = ["LatentVariableModel", "NonFiniteLossError"]


def _destroy_process_group_at_exit() -> None:
    """Destroy the process group, if any, when the interpreter exits (registered once per process).

    Lightning destroys only NCCL groups at exit. A gloo group left alive keeps its worker threads, and one that
    still holds the last collective's work when the interpreter finalises takes the GIL to free it; Python then
    ends that thread with ``pthread_exit``, whose unwinding through a ``noexcept`` destructor calls
    ``std::terminate``: the process aborts (SIGABRT, "terminate called without an active exception") after its work
    is done (the upstream race of pytorch/pytorch#179291). Exit handlers run while the interpreter is still whole,
    so destroying the group there joins those threads first."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


class NonFiniteLossError(FloatingPointError):
    """Raised before the optimiser step when a training loss is NaN or infinite, so the
    parameters and the checkpoints already written stay those of the last good step."""


class LatentVariableModel(L.LightningModule):
    """A deep latent variable model p(x) = integral p(x | f(z)) p(z) dz.

    Args:
        decoder: maps latent features ``prior.features(z)`` to likelihood parameters.
        likelihood: the observation model p(x | decoder output).
        prior: p(z) (:mod:`lvm.priors`; the torus by default for QMC); learned prior parameters live here.
        objective: the training loss (:class:`lvm.objective.Objective`).
        encoder: optional amortised inference network; its output is read by ``posterior``.
        posterior: the family q(z | x) of the encoder's output (:mod:`lvm.posteriors`); needed with an encoder.
        optimizer: a callable ``params -> Optimizer``; Adam (lr=1e-3, its default) as in appendix B.
        lr_scheduler: an optional callable ``optimizer -> scheduler``; plateau schedulers watch ``val/loss``.
        eval_num_points: lattice size for the held-out QMC log-likelihood (``val/`` and ``test/log_likelihood``);
            ``None`` picks the dense default for the latent dimension.
        eval_chunk_size: decode at most this many lattice points at once during evaluation.
        eval_cache_bytes: without autograd (evaluation, embeddings, plots) the decoded lattice is kept while the
            parameters stay unchanged, so each evaluation decodes its fixed lattice once rather than once per batch
            (:meth:`lattice_table`), if its decoder outputs fit in this many bytes; ``0``: never kept.
        covariates: known factors the decoder is conditioned on, named by the datamodule's metadata fields (e.g.
            ``[{key: animal, kind: discrete}, {key: duration, kind: continuous}]``; :mod:`lvm.covariates`): the
            encodings are fitted on the training split when training starts and kept in the checkpoint; batches then
            carry the codes (:meth:`attach_covariates`). ``None``: an unconditional model.
        covariate_hidden: the width of the covariates' FiLM network.
        covariate_warmup_steps: for this many first training steps only the covariates' offsets learn (the decoder's
            outputs are held and the gains at zero), so that what the covariates explain (a category's mean) is
            theirs before the latent space takes it; ``None``: a tenth of the run's steps, at most 200. Without it a
            1-D latent spent itself separating four categories whose offsets exceed the latent signal (consistency
            with the true latent 0.25-0.45 over 3 seeds; 0.998-0.999 with it; ``benchmarks/conditioning_modes.py``).
        compile_decoder: run the decoder through ``torch.compile`` (``True``: the default backend, Inductor; or a
            backend's name). Opt-in: compiling takes tens of seconds at the first batch and again for new shapes
            (the lattice chunks), and pays off on GPUs for long runs. The parameters and checkpoints are the
            decoder's own.
        eval_num_samples: K for the importance-sampled held-out estimates (see :mod:`lvm.estimators.heldout`).
        eval_shift_seed: the seed of the lattice shift of the held-out QMC estimate (one shift for all
            batches and processes; ``None``: a fresh shift per batch).
        eval_every_n_epochs: the held-out estimates (``val/log_likelihood`` and the other metrics of
            :mod:`lvm.estimators.heldout`) run on every n-th validation epoch and on the last one, so that validation costs
            about a training epoch's objective otherwise (the objective's own ``val/`` terms are logged every epoch;
            model selection uses the epochs that have the estimate). ``1``: every epoch; ``0``: only the last
            epoch. Testing always runs them.
        latent_sampler: an optional sampler fitted to the training codes (e.g.
            :class:`lvm.samplers.GaussianMixtureSampler`, fitted by :class:`lvm.callbacks.FitLatentSampler`);
            once fitted, :meth:`sample` draws latents from it instead of the prior.
        quantization_step: the spacing of the levels that quantised data take, in the model's units (1/16 for the
            digits' 17 grey levels scaled to [0, 1], 1/255 for 8-bit images); ``None`` for continuous data. With a
            density likelihood, ``bits_per_dim`` is then that of the quantised data (uniform dequantisation;
            :func:`lvm.estimators.heldout.bits_per_dim`). ``train.py`` takes it from the datamodule when unset.
    """

    def __init__(
        self,
        decoder: nn.Module,
        likelihood: Likelihood,
        prior: Prior,
        objective: Objective,
        encoder: nn.Module | None = None,
        posterior: Posterior | None = None,
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        eval_num_points: int | None = None,
        eval_chunk_size: int = 4096,
        eval_num_samples: int = 100,
        latent_sampler: nn.Module | None = None,
        eval_shift_seed: int | None = 0,
        eval_every_n_epochs: int = 10,
        quantization_step: float | None = None,
        eval_cache_bytes: int = 2**30,
        compile_decoder: bool | str = False,
        covariates: list[dict] | None = None,
        covariate_hidden: int = 64,
        covariate_warmup_steps: int | None = None,
    ):
        super().__init__()
        with warnings.catch_warnings():
            # The CLI stores the components as class_path configs, which is what lets
            # load_from_checkpoint rebuild them; Lightning's advice to ignore nn.Module
            # arguments would break that, so its warning is silenced here.
            warnings.filterwarnings("ignore", message=".*is an instance of `nn.Module`")
            self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
        if (encoder is None) != (posterior is None):
            raise ValueError(
                "An encoder and a posterior come together: the posterior family reads the encoder's output. Set both "
                "model.encoder and model.posterior (e.g. lvm.posteriors.DiagonalGaussianPosterior), or neither."
            )
        self.decoder, self.likelihood, self.prior = decoder, likelihood, prior
        self.encoder, self.posterior, self.objective = encoder, posterior, objective
        self.optimizer_factory, self.scheduler_factory = optimizer, lr_scheduler
        self.evaluation = HeldOutEvaluation(prior, posterior, eval_num_samples)
        self.eval_num_points = eval_num_points
        self.eval_chunk_size, self.eval_shift_seed = eval_chunk_size, eval_shift_seed
        self.eval_cache_bytes = eval_cache_bytes
        self._decoded_lattices: list[tuple[TensorSnapshot, torch.Tensor, torch.Tensor]] = []  # (state, z [m, d], params [m, P])
        self.test_results: EvaluationResults | None = None  # the last test pass (on_test_epoch_end)
        if eval_every_n_epochs < 0:
            raise ValueError(f"eval_every_n_epochs must be >= 0 (0: only the last epoch); got {eval_every_n_epochs}.")
        self.eval_every_n_epochs = eval_every_n_epochs
        if quantization_step is not None and not quantization_step > 0:
            raise ValueError(f"quantization_step must be > 0 (the spacing of the data's levels) or null; got "
                             f"{quantization_step}.")
        self.quantization_step = quantization_step
        self.compile_decoder = compile_decoder
        if compile_decoder:  # kept outside the module tree: the state dict stays the decoder's own
            backend = compile_decoder if isinstance(compile_decoder, str) else "inductor"
            self.__dict__["_compiled_decoder"] = torch.compile(decoder, backend=backend)
        self.latent_sampler = latent_sampler
        if latent_sampler is not None:
            latent_sampler.attach(prior.dim)
        prior.check(likelihood)
        if posterior is not None:
            posterior.check(prior)
        with torch.no_grad():  # fixes the input size of lazy first layers
            produced = self.decoder(self.prior.features(torch.zeros(1, prior.dim)))
        self.data_size = produced[0].numel() // likelihood.params_per_dim  # D, the values of one example
        likelihood.attach(self.data_size)  # learned per-feature scales (variance, dispersion) get their size
        self.covariates = None if not covariates else Covariates(
            covariates, self.data_size * likelihood.params_per_dim, covariate_hidden)
        self._codes: torch.Tensor | None = None  # the covariate codes [b, C] of the batch at hand (given())
        self.session_metrics: nn.ModuleDict | None = None  # per-session held-out log-likelihood (_log_sessions)
        self._build_session_metrics()
        if self.covariates is not None and self.covariates.has_sessions and any(
                t.shape and t.shape[-1] == self.data_size for t in (*likelihood.parameters(), *likelihood.buffers())):
            raise ValueError(f"{type(likelihood).__name__} learns one parameter per feature, which a session "
                             "covariate (different features per session) does not take; use a shared or fixed "
                             "variance/dispersion (e.g. learn_variance: none or shared).")
        objective.validate(self)

    # ----- the public API a scientist uses on a trained model -----------------------------

    def flatten(self, x: torch.Tensor) -> torch.Tensor:
        """Data ``[b, *data_shape]`` -> ``[b, D]``, or an error saying which size the decoder models."""
        if x.dim() < 2 or x[0].numel() != self.data_size:
            raise ValueError(f"x has shape {list(x.shape)}, but the decoder models examples of {self.data_size} values: "
                             f"pass a batch [b, *data_shape] with prod(data_shape) = {self.data_size} (e.g. the "
                             "datamodule's batches; a single example needs x.unsqueeze(0)).")
        return x.flatten(start_dim=1)  # [b, D]

    @property
    def _decoder(self) -> nn.Module:
        """The decoder, compiled where ``compile_decoder`` asks for it."""
        compiled = self.__dict__.get("_compiled_decoder")
        return self.decoder if compiled is None else compiled

    def decoder_outputs(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder's outputs for latent values ``z: [n, d]``, flattened to ``[n, P]``: the likelihood parameters of
        an unconditional model; a conditional one modulates them by the covariates (:meth:`decoder_params`)."""
        outputs = self._decoder(self.prior.features(z)).flatten(start_dim=1)
        return outputs.detach() if self._covariates_warming() else outputs

    def _covariates_warming(self) -> bool:
        """Whether this is one of the first ``covariate_warmup_steps`` training steps of a conditional model; the
        covariates' network then gives offsets only (its gains held at zero), while the decoder's outputs are held."""
        return (self.covariates is not None and self.training and torch.is_grad_enabled()
                and self._trainer is not None and self.global_step < self._warmup_steps())

    def _warmup_steps(self) -> int:
        """``covariate_warmup_steps``, or a tenth of the run's training steps, at most 200 (read once per fit)."""
        steps = self.hparams.get("covariate_warmup_steps")
        if steps is not None:
            return int(steps)
        if "_warmup_default" not in self.__dict__:
            total = getattr(self._trainer, "estimated_stepping_batches", None)
            finite = isinstance(total, (int, float)) and math.isfinite(total)
            self.__dict__["_warmup_default"] = min(200, max(1, int(0.1 * total))) if finite else 200
        return self.__dict__["_warmup_default"]

    def decoder_params(self, z: torch.Tensor) -> torch.Tensor:
        """Likelihood parameters for latent values ``z: [n, d]``, flattened to ``[n, P]``. In a conditional model row
        ``r`` belongs to example ``r % b`` of the batch's covariates (:meth:`given`): ``n = b`` latents, one per
        example, or ``n = k b`` from draws ``[k, b, d]`` flattened."""
        outputs = self.decoder_outputs(z)
        if self.covariates is None:
            return outputs
        codes = self.given_codes()
        if len(z) % len(codes):
            raise ValueError(f"A conditional model decodes latents [n, d] with n a multiple of the batch's {len(codes)} "
                             f"examples (row r has example r % b's covariates); got n = {len(z)}. For other latent "
                             "points use decode(z, covariates).")
        return self.covariates.modulate(outputs, codes.to(outputs.device).repeat(len(z) // len(codes), 1),
                                        self._covariates_warming())

    def pairwise_log_likelihood(self, x_flat: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``log p(x_i | z_j)`` (``log p(x_i | z_j, c_i)`` in a conditional model) for flattened data ``[b, D]`` and
        latent values ``[m, d]`` -> ``[b, m]``."""
        return self.pairwise_from_params(x_flat, self.decoder_outputs(z))

    def pairwise_from_params(self, x_flat: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """``log p(x_i | params_j)`` ``[b, m]`` for data ``[b, D]`` and decoder outputs ``[m, P]`` (a conditional
        model modulates them by each example's covariates: :meth:`lvm.covariates.Covariates.pairwise`, which groups
        the examples by covariate row so the table costs what the unconditional one does)."""
        if self.covariates is None:
            return self._likelihood_table(x_flat, params)
        return self.covariates.pairwise(x_flat, params, self.given_codes(), self._likelihood_table,
                                        self._modulated_table, self._covariates_warming())

    def _likelihood_table(self, x_flat: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """The likelihood's pairwise table, always in at least float32: under mixed precision (``trainer.precision:
        bf16-mixed``) the decoder runs in bfloat16, but a table of log-likelihoods of hundreds of nats in bfloat16 (8
        significant bits) would be off by nats, and the log-sum-exp over it with them; autocast is off here and the
        inputs are promoted."""
        with torch.autocast(params.device.type, enabled=False):
            dtype = torch.promote_types(params.dtype, torch.float32)
            return self.likelihood.pairwise_log_prob(x_flat.to(dtype), params.to(dtype))

    def _modulated_table(self, x_flat: torch.Tensor, outputs: torch.Tensor, gain: torch.Tensor,
                         offset: torch.Tensor) -> torch.Tensor | None:
        """The likelihood's table for parameters modulated per example (``None`` where it has no such form), in at
        least float32 as :meth:`_likelihood_table`."""
        with torch.autocast(outputs.device.type, enabled=False):
            dtype = torch.promote_types(outputs.dtype, torch.float32)
            return self.likelihood.modulated_pairwise_log_prob(x_flat.to(dtype), outputs.to(dtype), gain.to(dtype),
                                                               offset.to(dtype))

    # ----- covariates ---------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def given(self, covariates):
        """A context in which the model is conditioned on the covariates of the batch at hand: codes ``[b, C]``
        (the batch's last element), or raw values ``{key: [b]}`` (encoded with the fitted encodings). No-op for an
        unconditional model or ``None``."""
        if self.covariates is None or covariates is None:
            yield
            return
        if isinstance(covariates, dict):
            covariates = self.covariates.encode(covariates)
        codes = torch.as_tensor(covariates, dtype=torch.float32).reshape(-1, len(self.covariates.specs))
        previous, self._codes = self._codes, codes.to(self.device)
        try:
            yield
        finally:
            self._codes = previous

    def given_codes(self) -> torch.Tensor:
        """The covariate codes ``[b, C]`` the model is conditioned on, or an error saying how to give them."""
        if self._codes is None:
            raise CovariateError(
                f"This model is conditioned on {self.covariates.keys}; give each example's covariates: batches of "
                "the datamodule carry them (with model.given(batch_covariates(model, batch)): ...), or raw values "
                "with model.given({key: values}).")
        return self._codes

    def _build_session_metrics(self) -> None:
        """One example-weighted mean of the held-out log-likelihood per session and stage (synchronised under DDP),
        once a session covariate's categories are known."""
        if self.covariates is None or not self.covariates.has_sessions or not self.covariates.fitted:
            return
        categories = self.covariates.specs[self.covariates.session]["categories"]
        self.session_metrics = nn.ModuleDict({f"{stage}_{k}": MeanMetric() for stage in ("val", "test")
                                              for k in range(len(categories))}).to(self.device)

    def _log_sessions(self, values: dict[str, torch.Tensor] | None, stage: str) -> None:
        """Log ``{stage}/log_likelihood/{key}={session}``: the held-out log-likelihood of each session's examples
        (every session's metric is updated on every batch, with weight 0 where absent, so processes stay in step)."""
        if self.session_metrics is None or values is None or "log_likelihood" not in values:
            return
        spec = self.covariates.specs[self.covariates.session]
        column = self.given_codes()[:, self.covariates.session].round().long()  # [b]
        values = values["log_likelihood"].detach()
        for k, name in enumerate(spec["categories"]):
            weight = (column == k).to(values.dtype)
            metric = self.session_metrics[f"{stage}_{k}"]
            metric.update(torch.where(weight > 0, values, torch.zeros_like(values)), weight)
            self.log(f"{stage}/log_likelihood/{spec['key']}={name}", metric, on_step=False, on_epoch=True)

    def batch_covariates(self, batch) -> torch.Tensor | None:
        """The covariate codes ``[b, C]`` of a batch ``(x, label, codes)`` of a conditional model; ``None`` for an
        unconditional one."""
        if self.covariates is None:
            return None
        if not isinstance(batch, (list, tuple)) or len(batch) < 3:
            raise CovariateError(
                f"This model is conditioned on {self.covariates.keys}, but its batches carry no covariates: the "
                "datamodule adds them once attach_covariates(datamodule) has run (train.py does).")
        return batch[-1]

    def attach_covariates(self, datamodule) -> None:
        """Fit the covariates' encodings on the datamodule's training split (once; a fitted model keeps its own) and
        have its batches carry every example's codes. Raises :class:`lvm.covariates.CovariateError` naming the data
        for a missing key, NaN values or a category training never saw. No-op for an unconditional model."""
        if self.covariates is None or datamodule is None:
            return
        if not hasattr(datamodule, "covariate_columns"):
            if self.covariates.fitted:  # a datamodule of its own whose batches carry the codes themselves
                return
            raise CovariateError(f"model.covariates needs a datamodule with per-example metadata; "
                                 f"{type(datamodule).__name__} has none.")
        datamodule.setup("fit")
        columns = datamodule.covariate_columns(self.covariates.keys)  # {key: [N]} raw values, every example
        where = getattr(datamodule, "data_description", None) or type(datamodule).__name__
        if not self.covariates.fitted:
            self.covariates.check(columns, where)  # rows named in the data set's order, not the training split's
            train = datamodule.split_rows("train")
            blocks = None
            if self.covariates.has_sessions:
                if not hasattr(datamodule, "feature_blocks"):
                    raise CovariateError(f"A session covariate needs a datamodule that lays sessions out in blocks of "
                                         f"columns (lvm.datamodules.SessionsDataModule); {type(datamodule).__name__} "
                                         "does not.")
                blocks = datamodule.feature_blocks()
            self.covariates.fit({key: np.asarray(values)[train] for key, values in columns.items()},
                                f"{where} (training split)", blocks)
            self._build_session_metrics()
            self.hparams["covariates"] = [dict(spec) for spec in self.covariates.specs]  # the checkpoint keeps them
        datamodule.set_covariate_codes(self.covariates.encode(columns, where))

    def immersion(self) -> Immersion:
        """The decoder's immersion ``z -> (mu(z), sigma(z))`` (R-VAE paper, eq. 2.4), which the components defined
        through the decoder's geometry receive as an argument (likelihoods with a decoded standard deviation)."""
        return Immersion(lambda z: self.likelihood.immersion(self.decoder_params(z)),
                         (*self.decoder.parameters(), *self.decoder.buffers()))

    def prior_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """``log p(z)`` for ``z: [..., d]`` -> ``[...]``."""
        return self.prior.log_prob(z, self.immersion())

    def decoded_mean(self, z: torch.Tensor) -> torch.Tensor:
        """``f_theta(z) = E[x | z]`` flattened to ``[n, D]``."""
        return self.likelihood.mean(self.decoder_params(z))

    def log_prob(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``log p(x_b | z_kb)`` for data ``[b, *data_shape]`` and latents ``[k, b, d]`` -> ``[k, b]``, with one decoder
        pass over all ``k * b`` latents."""
        k, b, d = z.shape
        params = self.decoder_params(z.reshape(k * b, d)).view(k, b, -1)  # [k, b, D]
        with torch.autocast(params.device.type, enabled=False):  # in float32 at least, as pairwise_from_params
            dtype = torch.promote_types(params.dtype, torch.float32)
            x_flat, params = self.flatten(x).to(dtype), params.to(dtype)
            if self.covariates is not None and self.covariates.has_sessions:  # each example over its session's columns
                return self.covariates.log_prob(x_flat, params, self.given_codes(), self.likelihood.log_prob)
            return self.likelihood.log_prob(x_flat[None], params)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's output ``[b, posterior.output_size(d)]``: the parameters of q(z | x) that ``model.posterior``
        reads."""
        if self.encoder is None:
            raise ValueError("This model has no encoder; use embed(x) for the lattice posterior of a decoder-only model.")
        return self.encoder(x)

    def posterior_samples(self, x: torch.Tensor, num_samples: int = 1) -> torch.Tensor:
        """Reparameterised draws from q(z | x), ``[k, b, d]``."""
        return self.posterior.rsample(self.encode(x), num_samples, self.immersion())

    def latent_code(self, x: torch.Tensor) -> torch.Tensor:
        """The point code ``[b, d]``: ``f(x)`` for an autoencoder, the mean (centre) of q(z | x) for a variational one."""
        return self.posterior.code(self.encode(x))

    @torch.no_grad()
    def encode_dataset(self, dataset, batch_size: int = 1024) -> torch.Tensor:
        """:meth:`latent_code` of every example of a dataset of ``x`` or ``(x, ...)`` items, ``[n, d]``."""
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
        return torch.cat([self.latent_code(batch_data(batch).to(self.device)) for batch in loader])

    def decode(self, z: torch.Tensor, covariates=None) -> torch.Tensor:
        """The decoded mean ``f_theta(z) = E[x | z]`` (``E[x | z, c]``) with the data's shape ``[n, *data_shape]``, in
        float32 at least (under bf16 mixed precision the decoder's bfloat16 outputs are promoted: plots and exports
        read them).

        A conditional model decodes under ``covariates``: codes ``[n, C]`` or ``[C]`` (one row for every point), or raw
        values ``{key: value or [n]}`` (the counterfactual: the same latent point as another animal or duration);
        ``None``: the covariates of :meth:`given` (one per point), else :meth:`lvm.covariates.Covariates.reference` (each
        discrete covariate's first category, each continuous one's training mean)."""
        out = self._decoder(self.prior.features(z))  # [n, *data_shape] or [n, k, *data_shape]
        data_shape = out.shape[1:] if self.likelihood.params_per_dim == 1 else out.shape[2:]
        out = out.to(torch.promote_types(out.dtype, torch.float32)).flatten(start_dim=1)  # [n, P]
        if self.covariates is not None:
            out = self.covariates.modulate(out, self.decoding_codes(covariates, len(out)).to(out.device),
                                           self._covariates_warming())
        return self.likelihood.mean(out).view(-1, *data_shape)

    def decoding_codes(self, covariates, n: int) -> torch.Tensor | None:
        """Codes ``[n, C]`` for decoding ``n`` points under ``covariates`` (see :meth:`decode`: codes, raw values with
        the ones left out at their reference, or ``None``); ``None`` for an unconditional model, which refuses
        covariates (:class:`lvm.covariates.CovariateError`)."""
        if self.covariates is None:
            if covariates is not None and not (isinstance(covariates, dict) and not covariates):
                given = sorted(covariates) if isinstance(covariates, dict) else "codes"
                raise CovariateError(f"covariates {given} given, but this model is unconditional (no "
                                     "model.covariates).")
            return None
        size = len(self.covariates.specs)
        if covariates is None:
            if self._codes is not None and len(self._codes) == n:
                return self._codes
            covariates = self.covariates.reference()
        if isinstance(covariates, dict):  # the covariates left out take their reference values
            unknown = sorted(set(covariates) - set(self.covariates.keys))
            if unknown:
                raise CovariateError(f"covariate(s) {unknown} are not the model's; it is conditioned on "
                                     f"{self.covariates.keys}.")
            values = {**self.covariates.describe(self.covariates.reference())[0], **covariates}
            n_given = max(len(np.atleast_1d(value)) for value in values.values())
            covariates = self.covariates.encode({key: np.broadcast_to(np.atleast_1d(np.asarray(value)), (n_given,))
                                                 for key, value in values.items()}, "the covariates given to decode")
        codes = torch.as_tensor(covariates, dtype=torch.float32).reshape(-1, size)
        if len(codes) == 1:
            codes = codes.expand(n, size)
        if len(codes) != n:
            raise ValueError(f"decode got covariates for {len(codes)} points and {n} latent points; give one row or "
                             "one per point.")
        return codes

    @torch.no_grad()
    def sample(self, n: int, from_prior: bool = False) -> torch.Tensor:
        """Decoded means of ``n`` latent draws: from the fitted ``latent_sampler`` if there is one (unless
        ``from_prior``), else from the prior."""
        sampler = self.latent_sampler
        if sampler is not None and sampler.fitted and not from_prior:
            z = sampler.sample(n, dtype=next(self.decoder.parameters()).dtype).to(self.device)
        else:
            z = self.prior.sample(n, device=self.device, immersion=self.immersion())
        return self.decode(z)

    def lattice_latents(self, cube_points: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Latent values ``prior.from_unit_cube(c)`` ``[m, d]`` of unit-cube points, in ``like``'s dtype and device."""
        if not isinstance(self.prior, InvertiblePrior):
            raise ValueError(f"Lattice (QMC) estimates integrate against priors reached from the unit cube "
                             f"(lvm.priors.InvertiblePrior); {type(self.prior).__name__} is not one.")
        return self.prior.from_unit_cube(cube_points.to(device=like.device, dtype=like.dtype))

    def lattice_points(self, num_points: int | None = None) -> torch.Tensor:
        """The unshifted evaluation lattice in the unit cube ``[m, d]`` (float64); the latent values
        are ``prior.from_unit_cube`` of it (the points of :meth:`posterior_on_lattice`)."""
        return lattice_rule(num_points or self.eval_num_points or default_num_points(self.prior.dim), self.prior.dim)

    def shifted_lattice(self, num_points: int | None = None, shift_seed: int | None = None) -> torch.Tensor:
        """The evaluation lattice in the unit cube ``[m, d]`` shifted at random, or by the shift drawn from ``shift_seed``."""
        generator = None if shift_seed is None else torch.Generator().manual_seed(shift_seed)
        return random_shift(self.lattice_points(num_points), generator)

    @torch.no_grad()
    def log_likelihood(self, x: torch.Tensor, num_points: int | None = None, shift_seed: int | None = None) -> torch.Tensor:
        """Randomized-QMC estimate of ``log p(x)`` in nats per example (eq. 5), ``[b]``.

        Works for any decoder whose prior is reached from the unit cube (QLVM, VAE, IWAE, MLAE): the lattice is
        mapped into the latent space by the inversion method, so VAE decoders are scored against their N(0, I)
        prior. The shift is random, or drawn from ``shift_seed`` (the same for every batch and process: held-out
        evaluation uses ``eval_shift_seed``, so its values are reproducible and identical under DDP).
        """
        return log_mean_exp(self.lattice_table(self.flatten(x), self.shifted_lattice(num_points, shift_seed)), dim=1)

    def parameter_state(self) -> TensorSnapshot:
        """An exact record of the parameters and buffers of the components that define p(x, z) and q(z | x) (the
        decoder, likelihood, prior, encoder, posterior) and of the train/eval mode: results computed under an equal
        state are still valid (:class:`lvm.numerics.snapshots.TensorSnapshot`; version counters are not enough, as
        fused optimiser steps do not bump them). The record is copied only when something has changed."""
        modules = [m for m in (self.decoder, self.likelihood, self.prior, self.encoder, self.posterior, self.covariates)
                   if isinstance(m, nn.Module)]
        tensors = [t for m in modules for t in (*m.parameters(), *m.buffers())
                   if not nn.parameter.is_lazy(t)]  # a lazy layer's weights count once they exist
        last = self.__dict__.get("_parameter_state")
        if last is None or not last.describes(tensors, self.training):
            last = TensorSnapshot(tensors, self.training)
            self.__dict__["_parameter_state"] = last
        return last

    def lattice_table(self, x_flat: torch.Tensor, cube_points: torch.Tensor) -> torch.Tensor:
        """``log p(x_i | z_j)`` ``[b, m]`` for flattened data ``[b, D]`` and the latent points ``z_j =
        prior.from_unit_cube(c_j)`` of unit-cube points ``[m, d]``, decoded in chunks of ``eval_chunk_size``.

        Without autograd, the decoder's outputs on the lattice are kept (up to ``eval_cache_bytes``; the last two
        lattices, e.g. the held-out estimate's shifted one and the posteriors' unshifted one) and reused while the
        parameters are unchanged (:meth:`parameter_state`): an evaluation decodes its fixed lattice once, and each
        batch only evaluates its likelihood against the kept outputs. The values are those of decoding afresh."""
        z = self.lattice_latents(cube_points, x_flat)  # [m, d]
        params = None if torch.is_grad_enabled() else self._decoded_lattice(z)
        if params is None:
            return pairwise_table(lambda z_: self.pairwise_log_likelihood(x_flat, z_), z, self.eval_chunk_size)
        return pairwise_table(lambda p: self.pairwise_from_params(x_flat, p), params, self.eval_chunk_size)

    def _decoded_lattice(self, z: torch.Tensor) -> torch.Tensor | None:
        """The decoder's outputs ``[m, P]`` on the latent points ``z`` ``[m, d]``, kept (see :meth:`lattice_table`), or
        ``None`` where they would not fit in ``eval_cache_bytes``."""
        state = self.parameter_state()
        for key, points, params in self._decoded_lattices:
            if key == state and points.shape == z.shape and points.device == z.device and points.dtype == z.dtype \
                    and torch.equal(points, z):
                return params
        per_point = self.data_size * self.likelihood.params_per_dim * z.element_size()
        if len(z) * per_point > self.eval_cache_bytes:
            return None
        params = torch.cat([self.decoder_outputs(chunk) for chunk in z.split(self.eval_chunk_size)])  # [m, P]
        kept = [entry for entry in self._decoded_lattices if entry[0] == state]  # older states are stale
        self._decoded_lattices = [*kept[-1:], (state, z.clone(), params)]
        return params

    @torch.no_grad()
    def posterior_on_lattice(self, x: torch.Tensor, num_points: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The discrete posterior over the (unshifted) lattice: points ``[m, d]`` and normalised weights ``[b, m]``
        proportional to ``p(x | z_j)`` (Fig. 1C)."""
        x_flat, cube = self.flatten(x), self.lattice_points(num_points)
        z = self.lattice_latents(cube, x_flat)  # [m, d]
        return z, torch.softmax(self.lattice_table(x_flat, cube), dim=1)

    @torch.no_grad()
    def posterior_summary(self, x: torch.Tensor, num_points: int | None = None
                          ) -> tuple[dict[str, torch.Tensor], tuple[torch.Tensor, torch.Tensor] | None]:
        """The posterior of each example, ``{"mean", "mode", "spread": [b, d], "entropy": [b]}``, and the lattice
        posterior it came from (points ``[m, d]``, weights ``[b, m]``), or ``None`` for encoder posteriors.

        Lattice posteriors: :func:`lvm.estimators.summaries.lattice_posterior_summary` (circular mean and spread on
        the torus, entropy of the density ``w_j m p(z_j)``). Encoder posteriors (where :meth:`embed` uses the
        encoder's code): mean = mode = the code; spread and entropy from the family
        (:meth:`lvm.posteriors.Posterior.spread_and_entropy`: a diagonal Gaussian's standard deviations and
        ``sum_k 0.5 log(2 pi e sigma_k^2)``; NaN for point masses and other families without a closed form)."""
        with self.full_precision():
            if not self.uses_lattice_posterior:
                params = self.encode(x)
                code = self.posterior.code(params)
                spread, entropy = self.posterior.spread_and_entropy(params)
                return {"mean": code, "mode": code, "spread": spread, "entropy": entropy}, None
            z, weights = self.posterior_on_lattice(x, num_points)  # [m, d], [b, m]
            return lattice_posterior_summary(z, weights, self.prior), (z, weights)

    @property
    def uses_lattice_posterior(self) -> bool:
        """Whether embeddings come from the posterior on the evaluation lattice (decoder-only models, and any model
        whose held-out estimate is the defensive lattice one) rather than from the encoder's code."""
        return self.encoder is None or self.evaluation.estimator.lattice_posterior

    @torch.no_grad()
    def embed(self, x: torch.Tensor, reduce: str = "mean", num_points: int | None = None) -> torch.Tensor:
        """A point embedding ``[b, d]``: the posterior mean (circular on the torus) or mode on the lattice. Where
        lattices do not apply (above 3-D, or a prior not reached from the unit cube: R-VAE, lattice codes), the
        encoder's code (the mean and mode of q(z | x))."""
        if reduce not in ("mean", "mode"):
            raise ValueError(f"reduce must be 'mean' or 'mode'; got {reduce!r}.")
        with self.full_precision():
            if not self.uses_lattice_posterior:
                return self.latent_code(x)
            z, weights = self.posterior_on_lattice(x, num_points)
            if reduce == "mode":
                return z[weights.argmax(dim=1)]
            return self.prior.weighted_mean(z, weights)

    def full_precision(self):
        """A context without autocast: under mixed precision (``trainer.precision: bf16-mixed``) training runs the
        decoder in bfloat16, while held-out estimates, posteriors and embeddings are computed in float32, so that they
        compare across runs whatever precision trained them."""
        return torch.autocast(self.device.type, enabled=False)

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path, *args, **kwargs):
        """Lightning's ``load_from_checkpoint`` (a path or a file-like object), also for checkpoints written before
        the layered core (f407916 and earlier): their old class paths (``objectives.QMCObjective``, ...) are upgraded
        in memory (:func:`lvm.legacy.upgraded_source`), with a warning that names the command that rewrites the file."""
        weights_only = kwargs.get("weights_only", args[3] if len(args) > 3 else None)  # (map_location, hparams_file,
        source, changes = upgraded_source(checkpoint_path, weights_only)  # strict, weights_only) as Lightning's
        if changes:
            where = checkpoint_path if isinstance(checkpoint_path, (str, Path)) else "OLD.ckpt"
            warnings.warn(
                f"The checkpoint {where} names classes by their paths before lvm's layered core ("
                + ", ".join(f"{old} -> {new}" for old, new in changes) + "); they were upgraded in memory. Rewrite "
                f"the file once with: python -m lvm.tools.upgrade_checkpoint {where} NEW.ckpt", stacklevel=2)
        return super().load_from_checkpoint(source, *args, **kwargs)

    # ----- Lightning hooks ---------------------------------------------------------------

    def setup(self, stage: str) -> None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            atexit.unregister(_destroy_process_group_at_exit)  # at most once per process
            atexit.register(_destroy_process_group_at_exit)
        data_shape = getattr(self.trainer.datamodule, "data_shape", None)
        if data_shape is not None:
            self.check_data_shape(data_shape)
        self.attach_covariates(self.trainer.datamodule)

    @torch.no_grad()
    def check_data_shape(self, data_shape: tuple[int, ...]) -> None:
        """Raise a ``ValueError`` that says what to set if the decoder (and encoder) do not fit examples of
        ``data_shape``; fixes the input size of a lazy first encoder layer. The CLI calls it before anything of a run
        is written, the ``setup`` hook for every fit or test."""
        produced = self.decode(torch.zeros(1, self.prior.dim, device=self.device)).shape[1:]
        if math.prod(produced) != math.prod(data_shape):
            raise ValueError(
                f"The decoder produces outputs of shape {list(produced)} but the data have shape "
                f"{list(data_shape)}; set the decoder's output shape (e.g. decoder.init_args.data_shape)."
            )
        if self.encoder is not None:
            outputs = self.encoder(torch.zeros(1, *data_shape, device=self.device)).shape[-1]
            expected = self.posterior.output_size(self.prior.dim)
            if outputs != expected:
                raise ValueError(
                    f"{type(self.posterior).__name__} reads {expected} encoder outputs for a {self.prior.dim}-D "
                    f"latent; the encoder outputs {outputs}. Set encoder.init_args.out_features: {expected} "
                    "(the CLI links it from the prior and the posterior)."
                )

    def _log_objective(self, outputs: dict, stage: str, batch_size: int) -> None:
        self.log_dict(
            {f"{stage}/{key}": value for key, value in outputs.items()},
            batch_size=batch_size, prog_bar=False, sync_dist=stage != "train",
        )

    def training_step(self, batch, batch_idx):
        x = batch_data(batch)
        with self.given(self.batch_covariates(batch)):
            outputs = self.objective(self, x)
        if not torch.isfinite(outputs["loss"]):
            raise NonFiniteLossError(self._non_finite_advice(outputs["loss"].item(), batch_idx))
        # Each self.log call costs ~0.5 ms of Lightning bookkeeping, about a small network's step: log the training
        # terms when the loggers write them (every log_every_n_steps; never without a logger) and on the epoch's last
        # batch (callback_metrics: the metrics file and any monitor see the epoch's final values).
        last_batch = batch_idx + 1 >= self.trainer.num_training_batches
        if last_batch or (self.trainer.loggers and self.trainer._logger_connector.should_update_logs):
            self._log_objective(outputs, "train", len(x))
        return outputs["loss"]

    def heldout_due(self) -> bool:
        """Whether this validation epoch (or test) runs the held-out estimates (``eval_every_n_epochs``)."""
        trainer = self.trainer
        if trainer.testing or trainer.sanity_checking:
            return True
        epoch, last = trainer.current_epoch + 1, trainer.max_epochs
        n = self.eval_every_n_epochs
        return (last is not None and last > 0 and epoch >= last) or (n > 0 and epoch % n == 0)

    def _heldout_step(self, batch, stage: str) -> dict[str, torch.Tensor] | None:
        """The objective's terms, and when due the held-out estimates, of a batch (logged); returns the held-out
        estimates' per-example values, or ``None`` when they were not due."""
        x = batch_data(batch)
        with self.given(self.batch_covariates(batch)):
            self._log_objective(self.objective(self, x), stage, len(x))
            if self.heldout_due():
                with self.full_precision():
                    values = self.evaluation.update(self, x, stage)
                self._log_sessions(values, stage)
                return values
        return None

    def validation_step(self, batch, batch_idx):
        self._heldout_step(batch, "val")

    def _non_finite_advice(self, loss: float, batch_idx: int) -> str:
        """What happened and the exact command that continues with a tenth of the learning rate: a resume from
        ``last.ckpt`` if one has been written (the new rate takes effect, see :meth:`on_load_checkpoint`), else a
        fresh run."""
        run = Path(self.trainer.default_root_dir)
        lr = self.trainer.optimizers[0].param_groups[0]["lr"] if self.trainer.optimizers else None
        lower = f" --model.optimizer.init_args.lr {float(lr) / 10:g}" if lr is not None else ""
        last = run / "checkpoints" / "last.ckpt"
        config = f"python train.py --config {run / 'config.yaml'}"
        if last.is_file():
            advice = (f"The checkpoints written so far are intact; resume from the last one with a lower learning rate "
                      f"(the optimizer restarts with it):\n  {config} --ckpt_path {last}{lower}")
        else:
            advice = (f"No checkpoint had been written yet; start again with a lower learning rate:\n  {config} "
                      f"--trainer.default_root_dir {run.parent}{lower}")
        return (f"The training loss is {loss} at global step {self.global_step} (batch {batch_idx}). Training stopped "
                f"before the optimiser step. {advice}")

    def on_test_epoch_start(self) -> None:
        """Start keeping the test pass's per-example results (:attr:`test_results`) when one process sees the whole
        test set (under DDP each process sees a shard; the analyses then compute what they need themselves)."""
        loaders = self.trainer.test_dataloaders
        single = not isinstance(loaders, (list, tuple)) or len(loaders) == 1
        loader = loaders[0] if isinstance(loaders, (list, tuple)) and loaders else loaders
        dataset = getattr(loader, "dataset", None)
        keep = single and dataset is not None and hasattr(dataset, "__len__") and self.trainer.world_size == 1
        self.test_results = EvaluationResults(dataset, self.posterior_points()) if keep else None

    def test_step(self, batch, batch_idx):
        values = self._heldout_step(batch, "test")
        if self.test_results is not None:  # one pass: the posterior summaries beside the held-out estimate
            x = batch_data(batch)
            with self.given(self.batch_covariates(batch)):
                summary, lattice = self.posterior_summary(x)
            labels = batch[1] if isinstance(batch, (list, tuple)) and len(batch) > 1 else None
            per_example = {name: value for name, value in (values or {}).items()  # (not the scalar diagnostics)
                           if value.dim() > 0 and len(value) == len(x)}
            if self.test_results.count == 0:  # the state the pass runs under (lazy layers exist after a first batch)
                self.test_results.key = self.parameter_state()
            self.test_results.add({**per_example, **summary}, labels, *(lattice or (None, None)))

    def on_test_epoch_end(self) -> None:
        if self.test_results is not None:
            self.test_results.finish(self.parameter_state())

    def posterior_points(self, num_points: int | None = None) -> int | None:
        """The lattice size of the posterior summaries for ``num_points`` (``None``: the evaluation default); ``None``
        for models whose embeddings come from the encoder."""
        if not self.uses_lattice_posterior:
            return None
        return num_points or self.eval_num_points or default_num_points(self.prior.dim)

    def results_for(self, dataset, num_points: int | None = None) -> EvaluationResults | None:
        """The last test pass's per-example results (:class:`lvm.estimators.summaries.EvaluationResults`: the
        held-out estimate, posterior summaries, labels and aggregated posterior) if that pass covered exactly
        ``dataset`` with this lattice size and the model has not changed since; else ``None``."""
        results = self.test_results
        if results is None or not results.matches(dataset, self.posterior_points(num_points), self.parameter_state()):
            return None
        return results

    def _build_optimizer(self) -> torch.optim.Optimizer:
        """The configured optimizer over the model's parameters, with PyTorch's fused kernel when the optimizer has
        one and the config leaves the implementation (``fused``, ``foreach``) unset: one kernel per step in place of
        several per parameter tensor (Adam's step for the digits VAE: 0.20 -> 0.06 ms, a sixth of its training
        step). Same update up to float rounding."""
        optimizer = self.optimizer_factory(self.parameters())
        settings = optimizer.defaults
        if "fused" in settings and settings["fused"] is None and settings.get("foreach") is None:
            try:
                return self.optimizer_factory(self.parameters(), fused=True)
            except (RuntimeError, TypeError, ValueError):  # a device or dtype without the fused kernel
                pass
        return optimizer

    def configure_optimizers(self):
        optimizer = self._build_optimizer()
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val/loss"}}
