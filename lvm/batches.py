"""The one way to get the data tensor out of a batch, and the one way to name a datamodule's labels: as columns
``label`` (and ``label_name``) or, for ground-truth factors, one column per factor."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["batch_data", "factor_names", "label_columns", "label_title"]


def batch_data(batch) -> torch.Tensor:
    """The data ``x: [b, *data_shape]`` of a batch that is ``x`` or ``(x, labels, ...)``."""
    return batch[0] if isinstance(batch, Sequence) else batch


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
