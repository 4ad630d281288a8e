"""Weights derived from parameters (e.g. a softplus of unconstrained weights), computed once per loss evaluation."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

__all__ = ["reusing_derived_weights", "derived_weight"]


_derived_weights: dict | None = None  # (parameter id, version, grad mode, transform) -> (parameter, weight)


@contextmanager
def reusing_derived_weights() -> Iterator[None]:
    """Within the block, each weight that a network derives from a parameter (:func:`derived_weight`, e.g. the
    softplus of :class:`RBFPrecision`'s unconstrained weights) is computed once per parameter version and grad mode,
    then reused: one loss evaluation may call a decoder several times (the R-VAE: at the posterior centres, at the
    draws, along the prior curves, at the prior centre). :class:`lvm.objective.Objective` enters it around every loss
    evaluation, so a reused weight never outlives the autograd graph it belongs to. Nests."""
    global _derived_weights
    outermost = _derived_weights is None
    if outermost:
        _derived_weights = {}
    try:
        yield
    finally:
        if outermost:
            _derived_weights = None


def derived_weight(parameter: torch.Tensor, transform: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``transform(parameter)``, computed once per :func:`reusing_derived_weights` block (recomputed after an in-place
    change of the parameter or a switch of grad mode)."""
    if _derived_weights is None:
        return transform(parameter)
    key = (id(parameter), parameter._version, torch.is_grad_enabled(), transform)
    hit = _derived_weights.get(key)
    if hit is None or hit[0] is not parameter:
        hit = _derived_weights[key] = (parameter, transform(parameter))
    return hit[1]
