"""Layer 0, numerics: lattice rules, quantizers, latent geometry, Jacobian products, low-rank Gaussians, Hutchinson
estimators and log-space helpers. Pure functions of tensors and callables; imports nothing else from lvm."""
