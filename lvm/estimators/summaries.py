"""What one evaluation pass knows about each example, kept so that every analysis reads it instead of recomputing it.

:func:`lattice_posterior_summary` reduces a discrete posterior on lattice points to the per-example summaries that
the embedding table, the plots and the trust diagnostics use. :class:`EvaluationResults` collects, batch by batch,
those summaries, the held-out estimate of ``log p(x)`` with its diagnostics, the labels and the aggregated posterior
on the lattice (the sum of the examples' posterior weights), in the order of the loader; :meth:`matches` says
whether a result still describes a data set under the model's current parameters.
"""

from __future__ import annotations

import math

import torch

__all__ = ["lattice_posterior_summary", "EvaluationResults", "SUMMARIES"]

SUMMARIES = ("mean", "mode", "spread", "entropy")


def lattice_posterior_summary(z: torch.Tensor, weights: torch.Tensor, prior) -> dict[str, torch.Tensor]:
    """The posterior with weights ``w_j`` ``[b, m]`` on the lattice points ``z_j = T(c_j)`` ``[m, d]``: ``mean``,
    ``mode`` and ``spread`` ``[b, d]`` and the differential ``entropy`` ``[b]`` (nats).

    Each point stands for a cell of volume ``1/m`` in the unit cube, ``1 / (m p(z_j))`` in the latent space, so the
    posterior density there is ``w_j m p(z_j)`` and ``h = -sum_j w_j log(w_j m p(z_j))`` (0 for the uniform posterior
    on the unit torus). The mean is circular on the torus (``prior.weighted_mean``); the spread is the circular
    standard deviation ``sqrt(-2 ln R_k) / 2 pi`` per coordinate there (``R_k = |sum_j w_j exp(2 pi i z_jk)|``), the
    weighted standard deviation otherwise."""
    mean = prior.weighted_mean(z, weights)  # [b, d]
    if prior.periodic:
        angle = 2 * math.pi * z
        resultant = torch.hypot(weights @ torch.cos(angle), weights @ torch.sin(angle))  # [b, d]
        spread = torch.sqrt(-2 * torch.log(resultant.clamp(1e-12, 1.0))) / (2 * math.pi)
    else:
        spread = torch.sqrt((weights @ z.pow(2) - mean.pow(2)).clamp_min(0))
    log_cell_density = math.log(len(z)) + prior.log_prob(z)  # [m]: log(m p(z_j))
    entropy = -(torch.xlogy(weights, weights) + weights * log_cell_density).sum(1)
    return {"mean": mean, "mode": z[weights.argmax(dim=1)], "spread": spread, "entropy": entropy}


class EvaluationResults:
    """Per-example results of one pass over a data set, in the loader's order, on the CPU.

    Args:
        dataset: the data set the pass runs over (its identity is what :meth:`matches` checks).
        num_points: the lattice size of the posterior summaries and of the aggregated posterior (``None``: no lattice).
        key: the model state the results belong to (``LatentVariableModel.parameter_state()``); the model sets it at
            the pass's first batch, when layers built lazily by that batch exist.
    """

    def __init__(self, dataset, num_points: int | None, key=None):
        self.dataset, self.num_points, self.key = dataset, num_points, key
        self.parts: dict[str, list[torch.Tensor]] = {}
        self.labels: list[torch.Tensor] = []
        self.points: torch.Tensor | None = None  # the lattice's latent values [m, d]
        self.weight_sum: torch.Tensor | None = None  # sum over examples of the posterior weights [m]
        self.count = 0
        self.complete = False

    def add(self, values: dict[str, torch.Tensor], labels: torch.Tensor | None = None,
            points: torch.Tensor | None = None, weights: torch.Tensor | None = None) -> None:
        """One batch: ``values`` ``{name: [b, ...]}``, its labels ``[b]`` or ``[b, f]``, and the posterior ``weights``
        ``[b, m]`` on the lattice ``points`` ``[m, d]`` (summed into the aggregated posterior)."""
        sizes = {len(value) for value in values.values()}
        if len(sizes) != 1:
            raise ValueError(f"EvaluationResults.add: the values have different batch sizes {sorted(sizes)}.")
        for name, value in values.items():
            self.parts.setdefault(name, []).append(value.detach().cpu())
        if labels is not None:
            self.labels.append(torch.as_tensor(labels).cpu())
        if weights is not None:
            total = weights.detach().double().sum(0).cpu()  # [m]
            self.weight_sum = total if self.weight_sum is None else self.weight_sum + total
            self.points = points.detach().cpu()
        self.count += sizes.pop()

    def finish(self, key: tuple) -> None:
        """Mark the pass complete if it saw every example of the data set once and the model did not change."""
        self.complete = self.count == len(self.dataset) and key == self.key and all(
            sum(len(part) for part in parts) == self.count for parts in self.parts.values())

    def matches(self, dataset, num_points: int | None, key: tuple) -> bool:
        """Whether these results are a complete pass over ``dataset`` with this lattice size and model state (a view
        of a data set that names it as its ``source``, like the datamodules' batched views, is that data set)."""
        return (self.complete and _source(dataset) is _source(self.dataset) and num_points == self.num_points
                and key == self.key)

    def __getitem__(self, name: str) -> torch.Tensor:
        """All examples' ``name`` ``[n, ...]``."""
        return torch.cat(self.parts[name])

    def __contains__(self, name: str) -> bool:
        return name in self.parts

    def label_tensor(self) -> torch.Tensor | None:
        """The labels ``[n]`` or ``[n, f]``, or ``None`` for unlabelled batches."""
        return torch.cat(self.labels) if self.labels else None

    def aggregated_posterior(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The lattice points ``[m, d]`` and E_x[p(z_j | x)] ``[m]`` (sums to 1) over the data set."""
        if self.weight_sum is None or self.count == 0:
            raise ValueError("These evaluation results hold no lattice posterior.")
        return self.points, self.weight_sum / self.count


def _source(dataset):
    """The data set that ``dataset`` views (its ``source``), or itself."""
    return getattr(dataset, "source", dataset)
