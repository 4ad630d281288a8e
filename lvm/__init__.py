"""lvm: deep latent variable models with swappable objective plugins.

Layers, lowest first (each imports only itself and the layers below; the README's "Layout" section says where a new
piece goes): ``lvm.numerics``; the components ``lvm.priors``, ``lvm.networks``, ``lvm.posteriors``,
``lvm.likelihoods``, ``lvm.samplers``, ``lvm.divergences``, ``lvm.dispatch``, ``lvm.objective``, ``lvm.batches``;
``lvm.estimators``; ``lvm.model``; ``lvm.runs``; ``lvm.analysis``; ``lvm.plotting``; ``lvm.tools``; and the plugins
``lvm.objectives``, ``lvm.callbacks``, ``lvm.datamodules``.
"""
