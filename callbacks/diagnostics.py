"""Trust diagnostics of the test-set embedding at the end of testing: label decodability and cluster structure
(:mod:`lvm.analysis.decodability`, :mod:`lvm.analysis.clusters`; seed-to-seed consistency needs several runs and is
computed across them)."""

from __future__ import annotations

import json
import math
from itertools import islice
from pathlib import Path
from typing import Callable, TypeVar

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_only

from lvm.analysis.arrays import json_ready
from lvm.analysis.clusters import cluster_structure, lattice_modes
from lvm.analysis.covariate_use import covariate_use
from lvm.analysis.decodability import knn_decodability
from lvm.analysis.embedding import dataset_indices, embed_loader
from lvm.batches import label_columns

from .figures import warn_skipped, write_metrics_first

__all__ = ["TrustDiagnostics"]

T = TypeVar("T")


class TrustDiagnostics(L.Callback):
    """On rank 0 at the end of testing, embeds the test set (``pl_module.embed``) and writes
    ``<run dir>/diagnostics.json``:

    * ``decodability``: :func:`lvm.analysis.decodability.knn_decodability` of the label (``batch[1]``; named by the
      datamodule's ``label_key``, else ``"label"``; 2-D labels such as 3dShapes factors give one entry per column,
      named by ``factor_names``, by default ``factor1..factorF``: :func:`lvm.batches.label_columns`) and of each
      metadata field in ``fields`` (datamodules with ``metadata``, a dict of arrays in dataset order, whose test set
      is a ``Subset`` of that dataset, e.g. the vocalizations);
    * ``clusters``: the mean-shift modes of the aggregated posterior (:func:`lvm.analysis.clusters.lattice_modes`; models
      whose prior is reached from the unit cube, up to 3-D) and :func:`lvm.analysis.clusters.cluster_structure` of the
      embedding around them;
    * ``covariate_use`` (conditional models only, ``model.covariates``): per covariate, whether the model uses it
      (:func:`lvm.analysis.covariate_use.covariate_use`: the output spread across the covariate relative to that across
      the latent space, the held-out log-likelihood with the covariate shuffled among the test examples and the flag
      ``ignored``, with an :class:`lvm.analysis.covariate_use.IgnoredCovariateWarning`, and the covariate's
      decodability from the embedding);
    * ``n``, ``latent_dim``, ``periodic``, and ``skipped``: each analysis left out, with the reason.

    Non-finite numbers are written as ``null``. The scalar results are added to the run's metrics (the loggers and
    ``metrics.json``): ``test/decodability/<name>/{balanced_accuracy, chance_balanced_accuracy, majority_accuracy}``
    (or ``.../r2`` for real-valued labels), ``test/clusters/{num_modes, silhouette}`` and, for conditional models,
    ``test/covariate_use/<key>/{spread_ratio, log_likelihood_shuffled, log_likelihood_drop, ignored}`` (ignored: 1 or
    0) with ``.../balanced_accuracy`` (discrete) or ``.../r2`` (continuous).

    ``metrics.json`` is written first; an analysis that fails is skipped with a warning
    ``"TrustDiagnostics: <analysis> skipped: <reason>"`` and the others still run.

    Args:
        fields: metadata fields to decode besides the label.
        k: neighbours of the k-NN decoder.
        folds: cross-validation folds.
        seed: the folds' shuffle and the silhouette's subsample.
        bandwidth: mean-shift bandwidth (latent units; the torus has side 1).
        num_points: lattice size for the embedding and the aggregated posterior (``None``: the model's default).
        max_batches: test batches used for the aggregated posterior (``None``: all).
        max_silhouette_points: examples (drawn by ``seed``) whose distances the silhouette uses.
        reduce: ``"mean"`` (circular on the torus) or ``"mode"`` of the posterior as the embedding.
    """

    filename = "diagnostics.json"

    def __init__(self, fields: list[str] | None = None, k: int = 10, folds: int = 5, seed: int = 0,
                 bandwidth: float = 0.1, num_points: int | None = None, max_batches: int | None = None,
                 max_silhouette_points: int = 5000, reduce: str = "mean"):
        self.fields, self.k, self.folds, self.seed = list(fields or []), k, folds, seed
        self.bandwidth, self.num_points, self.max_batches = bandwidth, num_points, max_batches
        self.max_silhouette_points, self.reduce = max_silhouette_points, reduce

    @rank_zero_only
    def on_test_end(self, trainer, pl_module):
        write_metrics_first(trainer)  # the test metrics are on disk before any analysis runs
        report = _Report(type(self).__name__)
        embedded = report.run("the test-set embedding", self._embed, trainer.datamodule, pl_module)
        if embedded is not None:
            report.run("trust diagnostics", self._diagnose, trainer, pl_module, *embedded, report)
        report.run(f"writing {self.filename}", report.write, Path(trainer.default_root_dir) / self.filename)
        report.run("logging the scalar results", _log_scalars, trainer, report.scalars())

    def _diagnose(self, trainer, pl_module, embedding: np.ndarray, labels: np.ndarray | None,
                  report: _Report) -> None:
        """Each analysis in its own guarded step; ``embedding`` ``[n, d]``, ``labels`` ``[n]``, ``[n, f]`` or None."""
        periodic = bool(pl_module.prior.periodic)
        report.update(n=len(embedding), latent_dim=embedding.shape[1], periodic=periodic)
        for name, values in self._label_columns(trainer.datamodule, labels, len(embedding), report).items():
            result = report.run(f"decodability of {name}", knn_decodability, embedding, values, periodic, self.k,
                                self.folds, self.seed)
            if result is not None:
                report.setdefault("decodability", {})[name] = result
        if pl_module.covariates is not None:
            report["covariate_use"] = covariate_use(pl_module, trainer.datamodule.test_dataloader(), embedding,
                                                    self.seed, k=self.k, folds=self.folds, guard=report.run)
        loader = trainer.datamodule.test_dataloader()
        batches = loader if self.max_batches is None else islice(loader, self.max_batches)  # the loader: the test pass's
        modes = report.run("the mean-shift modes", lattice_modes, pl_module, batches,
                           self.bandwidth, self.num_points)
        if modes is None:
            report.skip("cluster structure", "it needs the mean-shift modes, which were skipped")
            return
        clusters = report.run("cluster structure", cluster_structure, embedding, modes, periodic,
                              self.max_silhouette_points, self.seed)
        if clusters is not None:
            report["clusters"] = {"bandwidth": self.bandwidth, "modes": modes.tolist()} | clusters

    def _embed(self, datamodule, pl_module) -> tuple[np.ndarray, np.ndarray | None]:
        embedding, labels = embed_loader(pl_module, datamodule.test_dataloader(), self.reduce, self.num_points)
        return embedding.double().numpy(), None if labels is None else labels.numpy()  # [n, d], [n] or [n, f]

    def _label_columns(self, datamodule, labels: np.ndarray | None, n: int, report: _Report) -> dict[str, np.ndarray]:
        """The label (each column of 2-D labels) and the requested metadata fields, one value per test example."""
        columns: dict[str, np.ndarray] = {}
        if labels is not None and labels.ndim == 2:  # ground-truth factors (3dShapes)
            columns.update(label_columns(labels, datamodule))
        elif labels is not None and hasattr(datamodule, "label_key") and datamodule.label_key is None:
            report.skip("decodability of the label", "the labels are example indices (label_key is None); set "
                        "data.init_args.label_key or name metadata fields in fields")
        elif labels is not None:
            columns[getattr(datamodule, "label_key", None) or "label"] = labels
        for field in self.fields:
            values = report.run(f"decodability of {field}", _metadata_column, datamodule, field, n)
            if values is not None:
                columns[field] = values
        return columns


def _metadata_column(datamodule, field: str, n: int) -> np.ndarray:
    """Metadata ``field`` of each of the ``n`` test examples, in test-loader order."""
    metadata = getattr(datamodule, "metadata", None)
    if not metadata:
        raise ValueError(f"{type(datamodule).__name__} has no metadata to take {field!r} from; fields needs a "
                         "datamodule with metadata (e.g. lvm.datamodules.VocalizationsDataModule).")
    if field not in metadata:
        raise KeyError(f"{field!r} is not a metadata field; choose one of {sorted(metadata)}.")
    values = np.asarray(metadata[field])[dataset_indices(datamodule.test_set)]
    if len(values) != n:
        raise ValueError(f"the test set has {n} examples and {len(values)} rows of {field!r}.")
    return values


def _log_scalars(trainer, scalars: dict[str, float]) -> None:
    """Add ``scalars`` to the trainer's metrics, log them to every logger, and rewrite ``metrics.json``."""
    trainer.callback_metrics.update({key: torch.tensor(value, dtype=torch.float64) for key, value in scalars.items()})
    for logger in trainer.loggers:
        logger.log_metrics(scalars, step=trainer.global_step)
    write_metrics_first(trainer)


class _Report(dict):
    """The results written to ``diagnostics.json``, and the analyses skipped (with a warning) and why."""

    def __init__(self, owner: str):
        super().__init__(skipped={})
        self.owner = owner

    def run(self, analysis: str, compute: Callable[..., T], *args) -> T | None:
        """:func:`lvm.callbacks.figures.guarded`, the reason of a failure also kept under ``skipped``."""
        try:
            return compute(*args)
        except Exception as error:  # noqa: BLE001 (an analysis must never cost the run its metrics)
            self.skip(analysis, f"{type(error).__name__}: {error}")
            return None

    def skip(self, analysis: str, reason: str) -> None:
        warn_skipped(self.owner, analysis, reason)
        self["skipped"][analysis] = reason

    def scalars(self) -> dict[str, float]:
        """The finite scalar results as metrics: ``test/decodability/<name>/<score>``, ``test/clusters/<score>``."""
        scores = {f"decodability/{name}/{key}": result.get(key) for name, result in self.get("decodability", {}).items()
                  for key in ("balanced_accuracy", "chance_balanced_accuracy", "majority_accuracy", "r2")}
        clusters = self.get("clusters", {})
        scores |= {f"clusters/{key}": clusters.get(key) for key in ("num_modes", "silhouette")}
        for name, use in self.get("covariate_use", {}).items():
            shuffled, decodability = use.get("shuffled", {}), use.get("decodability", {})
            scores |= {f"covariate_use/{name}/spread_ratio": use.get("output_spread", {}).get("ratio"),
                       f"covariate_use/{name}/log_likelihood_shuffled": shuffled.get("log_likelihood_shuffled"),
                       f"covariate_use/{name}/log_likelihood_drop": shuffled.get("drop"),
                       f"covariate_use/{name}/ignored": None if "ignored" not in use else float(use["ignored"])}
            scores |= {f"covariate_use/{name}/{key}": decodability.get(key) for key in ("balanced_accuracy", "r2")}
        return {f"test/{key}": float(value) for key, value in scores.items()
                if value is not None and math.isfinite(value)}

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        results = {key: value for key, value in self.items() if key != "skipped"} | {"skipped": self["skipped"]}
        path.write_text(json.dumps(json_ready(results), indent=2, allow_nan=False) + "\n")
