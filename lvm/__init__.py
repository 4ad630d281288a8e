"""lvm: deep latent variable models with swappable objective plugins.

Import the pieces from their modules (``lvm.model``, ``lvm.objective``, ``lvm.priors``, ``lvm.posteriors``,
``lvm.likelihoods``, ``lvm.networks``, ``lvm.lattices``, ``lvm.qmc``, ``lvm.variational``, ``lvm.evaluation``).
"""
