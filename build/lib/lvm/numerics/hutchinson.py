"""Single-pass surrogates for the gradient of the log-determinant of an autoencoder
("Maximum Likelihood Training of Autoencoders", Sorrenson, Rousselot, Zimmermann, Draxler, Hummerich
et al., 2023, section 4 and appendix D).

For an encoder f: R^D -> R^d and decoder g: R^d -> R^D that are (approximately) a pseudo-inverse
pair, f'(g(z)) g'(z) = I (eq. 10), so the encoder Jacobian stands in for the pseudo-inverse of the
decoder Jacobian in the gradient of 1/2 log det(g'(z)^T g'(z)) (eq. 9, eqs. 28-39). With Hutchinson
vectors eps_k (E[eps eps^T] = I) and the trace taken in the d-dimensional latent space (order
f'(x) g'(z), appendix D.1), the surrogate whose *gradient* estimates that of the log-determinant is

    encoder variant (eq. 18, the MLAE default):   -1/K sum_k  eps_k^T f'(x)  sg(g'(z) eps_k)
    decoder variant (eq. 11):                      1/K sum_k  sg(eps_k^T f'(x_hat))  g'(z) eps_k

Its *value* is not the log-determinant. The products are one vector-Jacobian product (reverse
mode) and one Jacobian-vector product (forward mode) each (the "mixed mode" of D.2); no Jacobian
is ever materialised.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.func import jvp, vjp, vmap
from torch.nn.parameter import is_lazy

__all__ = ["hutchinson_noise", "log_det_surrogate", "GRADIENT_TARGETS"]

GRADIENT_TARGETS = ("encoder", "decoder")


def hutchinson_noise(num_samples: int, batch: int, dim: int, orthogonal: bool = True,
                     dtype: torch.dtype | None = None, device=None) -> torch.Tensor:
    """Hutchinson vectors ``[K, b, d]`` with ``E[eps eps^T] = I``, independent across the batch.

    ``orthogonal=True`` (appendix D.3.5): the first K columns of a random orthogonal d x d matrix
    (the Q of a QR decomposition of a d x K standard normal matrix), each scaled to length sqrt(d).
    For K = 1 this is a standard normal vector rescaled to length sqrt(d) (D.3.3); for K = d the
    estimate of a trace is exact. ``orthogonal=False``: K independent rescaled normal vectors.
    """
    if not 1 <= num_samples <= dim:
        raise ValueError(
            f"The number of Hutchinson samples must lie between 1 and the latent dimension {dim} "
            f"(K = d already gives the exact trace); got {num_samples}."
        )
    gaussian = torch.randn(batch, dim, num_samples, dtype=dtype, device=device)  # [b, d, K]
    if orthogonal:
        directions = torch.linalg.qr(gaussian).Q  # orthonormal columns: [b, d, K]
    else:
        directions = gaussian / gaussian.norm(dim=1, keepdim=True)
    return math.sqrt(dim) * directions.permute(2, 0, 1)  # [K, b, d]


def log_det_surrogate(encode: Callable[[torch.Tensor], torch.Tensor],
                      decode: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, noise: torch.Tensor,
                      gradient_to: str = "encoder") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The code ``z = f(x): [b, d]``, the reconstruction ``x_hat = g(z): [b, D]`` and the
    log-determinant surrogate per example ``[b]`` (module docstring), for Hutchinson vectors
    ``noise: [K, b, d]``.

    ``encode`` maps ``x: [b, *data_shape]`` to ``[b, d]`` and ``decode`` maps ``[b, d]`` to ``[b, D]``;
    both must treat examples independently (no batch statistics), since the per-example products
    are taken through the whole batch at once.
    """
    if gradient_to not in GRADIENT_TARGETS:
        raise ValueError(f"gradient_to must be one of {GRADIENT_TARGETS}; got {gradient_to!r}.")
    if isinstance(encode, nn.Module) and any(is_lazy(p) for p in encode.parameters()):
        with torch.no_grad():  # lazy layers must not be initialised inside a torch.func transform
            encode(x[:1])

    def decode_with_jvp(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """g(z) once and g'(z) eps_k for every k: [b, D], [K, b, D] (no vmap for K = 1: it costs time)."""
        if len(noise) == 1:
            x_hat, column = jvp(decode, (z,), (noise[0],))
            return x_hat, column.unsqueeze(0)
        return vmap(lambda tangent: jvp(decode, (z,), (tangent,)), out_dims=(None, 0))(noise)

    def pull_back(pullback) -> torch.Tensor:
        """eps_k^T f'(.) for every k, reusing one forward pass of the encoder: [K, b, D]."""
        return torch.stack([pullback(eps)[0].flatten(1) for eps in noise])

    if gradient_to == "encoder":
        z, pullback = vjp(encode, x)
        encoder_rows = pull_back(pullback)  # eps_k^T f'(x)
        x_hat, decoder_columns = decode_with_jvp(z)
        products = (encoder_rows * decoder_columns.detach()).sum(-1)  # [K, b]
        return z, x_hat, -products.mean(0)
    z = encode(x)
    x_hat, decoder_columns = decode_with_jvp(z)
    _, pullback = vjp(encode, x_hat.detach().view_as(x))
    encoder_rows = pull_back(pullback).detach()  # eps_k^T f'(x_hat)
    return z, x_hat, (encoder_rows * decoder_columns).sum(-1).mean(0)
