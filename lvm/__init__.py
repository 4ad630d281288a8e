"""lvm: deep latent variable models with swappable objective plugins.

Import the pieces from their modules (``lvm.model``, ``lvm.objective``, ``lvm.priors``, ``lvm.posteriors``,
``lvm.likelihoods``, ``lvm.networks``, ``lvm.numerics.lattices``, ``lvm.estimators.qmc``, ``lvm.estimators.variational``, ``lvm.estimators.heldout``).
"""
