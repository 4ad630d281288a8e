"""QMC lattice objective: quasi-Monte Carlo latent variable models (QLVM).

Paper: "Quasi Monte Carlo methods enable extremely low-dimensional deep generative models", Martinez and
Williams, 2024 (QLVM), section 2.2.
The loss is the negative of eq. 5,

    L(x) = log (1/m) sum_j p_theta(x | z_j),

computed with a log-sum-exp over one randomly shifted lattice per batch (appendix A.1) that is
shared by every example of the batch (section 2.3): the decoder runs once on ``m`` points and
the ``[b, m]`` table of log-likelihoods is one matrix product (:mod:`lvm.likelihoods`).
No encoder is trained.

Memory: the decoder runs on all m points, so its activations grow with m. ``chunk_size`` decodes at most that
many points at a time and recomputes each chunk's activations in the backward pass (:func:`lvm.estimators.qmc.pairwise_table`),
so a step's memory is that of one chunk plus the ``[b, m]`` table, with the same loss and gradient; the default,
``"auto"``, measures the bytes autograd keeps per decoded point once per latent dimension and data size and picks
the largest chunk within ``memory_budget_mb``, or the single pass (faster) where all m points fit.
"""

from __future__ import annotations

from typing import Literal

from lvm.numerics.lattices import PointSet
from lvm.objective import Objective
from lvm.priors import InvertiblePrior
from lvm.estimators.qmc import activation_bytes_per_point, qmc_log_likelihood

__all__ = ["QMCObjective"]


class QMCObjective(Objective):
    """Args:
        num_points: lattice size m (a Fibonacci number for 2-D latents: 144, 610, 2584, ...).
        points: ``"rqmc"`` (randomly shifted lattice, default), ``"qmc"`` (fixed lattice) or
            ``"mc"`` (independent uniform points): the three conditions of Fig. A7.
        chunk_size: decode at most this many points at once (checkpointed), ``None`` for one pass, or ``"auto"``.
        memory_budget_mb: the activation memory ``"auto"`` aims for.
    """

    def __init__(self, num_points: int = 2584, points: str = "rqmc", chunk_size: int | Literal["auto"] | None = "auto",
                 memory_budget_mb: float = 1024.0):
        super().__init__()
        if isinstance(chunk_size, int) and chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive number of points, 'auto' or None; got {chunk_size}.")
        self.num_points, self.points = num_points, points
        self.chunk_size, self.memory_budget_mb = chunk_size, memory_budget_mb
        self._bytes_per_point: dict[tuple[int, int], float] = {}  # a measurement cache, not state

    def points_per_chunk(self, model, x_flat) -> int | None:
        """The chunk size used for a batch ``[b, D]`` (``None``: a single pass)."""
        if self.chunk_size != "auto":
            return self.chunk_size
        # The decoder's activations per point do not depend on the batch; a conditional model's modulated outputs
        # grow with its distinct covariate rows: one example of each is measured.
        codes = None if model.covariates is None else model.given_codes()
        keep = slice(0, 1) if codes is None else model.covariates.representatives(codes)
        examples, kept_codes = x_flat[keep], None if codes is None else codes[keep]
        key = (model.prior.dim, x_flat.shape[1], len(examples))
        if key not in self._bytes_per_point:
            def pairwise(z):
                with model.given(kept_codes):
                    return model.pairwise_log_likelihood(examples, z)
            self._bytes_per_point[key] = activation_bytes_per_point(pairwise, model.prior.dim, x_flat.dtype,
                                                                    x_flat.device)
        chunk = int(self.memory_budget_mb * 2**20 // self._bytes_per_point[key])
        return None if chunk >= self.num_points else max(1, chunk)

    def validate(self, model):
        self.require(model, prior=InvertiblePrior)

    def forward(self, model, x):
        points = PointSet(self.num_points, model.prior.dim, self.points).draw()  # [m, d] in the unit cube
        x_flat = model.flatten(x)
        z = model.lattice_latents(points, x_flat)  # [m, d]
        log_likelihood = qmc_log_likelihood(lambda z_: model.pairwise_log_likelihood(x_flat, z_), z,
                                            self.points_per_chunk(model, x_flat))  # [b]
        return {"loss": -log_likelihood.mean(), "lattice_log_likelihood": log_likelihood.mean()}
