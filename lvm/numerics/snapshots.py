"""Exact records of tensors' values, to tell whether something derived from them is still valid.

Version counters (``tensor._version``) would be cheaper, but are not enough: fused optimiser kernels
(``torch.optim.Adam(fused=True)``, the model's default where PyTorch has it) update parameters in place without
bumping them, so a result keyed on the counters outlives the step that changed the parameters."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["TensorSnapshot"]


class TensorSnapshot:
    """Copies of ``tensors`` (and an optional hashable ``tag``, e.g. a train/eval flag), compared exactly: it
    :meth:`describes` tensors with the same tag, count, shapes, dtypes, devices and values; two snapshots are equal
    when one describes the other's tensors. Comparing costs one pass over the values, with no copy."""

    def __init__(self, tensors: Sequence[torch.Tensor], tag=None):
        self.tag = tag
        self.tensors = [t.detach().clone() for t in tensors]

    def describes(self, tensors: Sequence[torch.Tensor], tag=None) -> bool:
        return tag == self.tag and len(tensors) == len(self.tensors) and all(
            a.shape == b.shape and a.dtype == b.dtype and a.device == b.device and torch.equal(a.detach(), b)
            for a, b in zip(tensors, self.tensors))

    def __eq__(self, other) -> bool:
        return other is self or (isinstance(other, TensorSnapshot) and self.describes(other.tensors, other.tag))

    __hash__ = None
