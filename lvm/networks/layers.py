"""Layer helpers shared by the networks of several papers: activations by name, a lazy MLP stack and the data
shape a decoder produces."""

from __future__ import annotations

from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "silu": nn.SiLU}


def _activation(name: str) -> type[nn.Module]:
    if name not in ACTIVATIONS:
        raise ValueError(f"Unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}.")
    return ACTIVATIONS[name]


def _mlp(widths: list[int], activation: type[nn.Module]) -> list[nn.Module]:
    """``LazyLinear(widths[0]) act Linear(widths[1]) act ...`` (activation after every layer)."""
    layers: list[nn.Module] = []
    for i, width in enumerate(widths):
        layers += [nn.LazyLinear(width) if i == 0 else nn.Linear(widths[i - 1], width), activation()]
    return layers


def require_data_shape(data_shape, decoder: str) -> list[int]:
    """A decoder's output shape, or a ``ValueError`` saying where it comes from when it is not set."""
    if data_shape is None:
        raise ValueError(f"{decoder}: data_shape is not set; give decoder.init_args.data_shape, or train with a "
                         "datamodule that knows its data's shape (train.py fills it in from data.init_args).")
    return list(data_shape)
