"""The one way to get the data tensor out of a batch, and the one way to name a datamodule's labels: as columns
``label`` (and ``label_name``) or, for ground-truth factors, one column per factor."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["batch_data", "given_batch", "reference_covariates", "factor_names", "label_columns", "label_title"]


def batch_data(batch) -> torch.Tensor:
    """The data ``x: [b, *data_shape]`` of a batch that is ``x`` or ``(x, labels, ...)``."""
    return batch[0] if isinstance(batch, Sequence) else batch


def given_batch(model, batch):
    """A context in which ``model`` scores, embeds and decodes the examples of ``batch`` given their own covariates:
    a conditional model's batches are ``(x, label, codes)`` (:meth:`lvm.model.LatentVariableModel.given`); nothing
    for an unconditional model."""
    if getattr(model, "covariates", None) is None:
        return contextlib.nullcontext()
    return model.given(model.batch_covariates(batch))


def reference_covariates(model) -> torch.Tensor | None:
    """The codes ``[1, C]`` a conditional model decodes latent points under where no example gives them (decoded
    grids, samples, Jacobians over the latent space: :meth:`lvm.covariates.Covariates.reference`); ``None`` for an
    unconditional model."""
    covariates = getattr(model, "covariates", None)
    return None if covariates is None else covariates.reference()


def factor_names(datamodule, count: int) -> list[str]:
    """The names of ``count`` ground-truth factors (labels ``[n, count]``, e.g. 3dShapes'): the datamodule's
    ``factor_names``, by default ``factor1..factor{count}``."""
    names = getattr(datamodule, "factor_names", None)
    return [str(name) for name in names] if names else [f"factor{k + 1}" for k in range(count)]


def label_columns(labels: np.ndarray, datamodule) -> dict[str, np.ndarray]:
    """The labels of n examples of ``datamodule`` as named columns: labels ``[n]`` -> ``label`` and, where the
    datamodule names its categories (``label_names``, indexed by the label), ``label_name``; ground-truth factors
    ``[n, F]`` -> one column per factor, named by :func:`factor_names`."""
    labels = np.asarray(labels)
    if labels.ndim == 2:
        return dict(zip(factor_names(datamodule, labels.shape[1]), labels.T))  # F columns [n]
    columns = {"label": labels}
    names = getattr(datamodule, "label_names", None)
    if names:
        columns["label_name"] = np.asarray(names, dtype=object)[labels.astype(np.int64)]
    return columns


def label_title(datamodule) -> str:
    """What a datamodule's labels are, for legends and reports: its ``label_title`` (``"digit"``), else the metadata
    field they come from (``label_key``, e.g. ``"species"``), else ``"label"``."""
    return getattr(datamodule, "label_title", None) or getattr(datamodule, "label_key", None) or "label"
