"""Encoder and decoder networks, one module per paper:

- :mod:`lvm.networks.qlvm`: :class:`MLPDecoder`, :class:`ConvDecoder`, :class:`MLPEncoder`, :class:`ConvEncoder`
  (Quasi-Monte Carlo latent variable models, Fig. A2, appendix B.2);
- :mod:`lvm.networks.higgins`: :class:`HigginsEncoder`, :class:`HigginsDecoder` (beta-VAE's 64x64 networks, as
  the sampling-free Taylor VAE's CelebA experiment specifies them);
- :mod:`lvm.networks.mlae`: :class:`ResidualMLP`, :class:`ResidualMLPEncoder`, :class:`ResidualMLPDecoder`,
  :class:`PythaeConvEncoder`, :class:`PythaeConvDecoder` (Maximum Likelihood Training of Autoencoders, appendix E);
- :mod:`lvm.networks.rvae`: :class:`RBFPrecision`, :class:`MeanPrecisionDecoder` (Variational Autoencoders with
  Riemannian Brownian Motion Priors);
- :mod:`lvm.networks.lattice`: :class:`GatedEncoder`, :class:`GatedDecoder`, :class:`GatedLayer` (Lattice
  Representation Learning, section 4.1);
- :mod:`lvm.networks.layers`: activations by name and the lazy MLP stack they share.

Decoders map latent features ``[n, F]`` to likelihood parameters ``[n, *data_shape]``; encoders output
``out_features`` numbers per example, which the model's posterior family reads (the CLI sets ``out_features``).
Configs name the classes here (``lvm.networks.MLPDecoder``).
"""

from lvm.networks.higgins import HigginsDecoder, HigginsEncoder
from lvm.networks.lattice import GatedDecoder, GatedEncoder, GatedLayer
from lvm.networks.mlae import PythaeConvDecoder, PythaeConvEncoder, ResidualMLP, ResidualMLPDecoder, ResidualMLPEncoder
from lvm.networks.qlvm import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder
from lvm.networks.rvae import MeanPrecisionDecoder, RBFPrecision

__all__ = [
    "MLPDecoder", "ConvDecoder", "MLPEncoder", "ConvEncoder", "HigginsEncoder", "HigginsDecoder",
    "ResidualMLP", "ResidualMLPEncoder", "ResidualMLPDecoder", "PythaeConvEncoder", "PythaeConvDecoder",
    "RBFPrecision", "MeanPrecisionDecoder", "GatedEncoder", "GatedDecoder", "GatedLayer",
]
