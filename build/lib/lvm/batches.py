"""The one way to get the data tensor out of a batch."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["batch_data"]


def batch_data(batch) -> torch.Tensor:
    """The data ``x: [b, *data_shape]`` of a batch that is ``x`` or ``(x, labels, ...)``."""
    return batch[0] if isinstance(batch, Sequence) else batch
