"""lvm: deep latent variable models with swappable objective plugins.

Import the pieces from their modules (``lvm.model``, ``lvm.lattices``, ``lvm.likelihoods``,
``lvm.latent_spaces``, ``lvm.networks``, ``lvm.qmc``, ``lvm.variational``).
"""
