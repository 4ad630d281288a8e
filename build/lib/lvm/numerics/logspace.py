"""Averages and importance-sampling diagnostics of values given by their logarithms."""

from __future__ import annotations

import math

import torch

__all__ = ["log_mean_exp", "effective_sample_size"]


def log_mean_exp(log_values: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """``log (1/n) sum exp(v)`` along ``dim``, stable."""
    return torch.logsumexp(log_values, dim=dim) - math.log(log_values.shape[dim])


def effective_sample_size(log_weights: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """(sum w)^2 / sum w^2 of importance weights given as log-weights, along ``dim``."""
    return torch.exp(2 * torch.logsumexp(log_weights, dim=dim) - torch.logsumexp(2 * log_weights, dim=dim))
