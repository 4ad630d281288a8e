"""Priors p(z), one module per family: :mod:`.base` (the interface, the unit cube, the torus, the standard normal),
:mod:`.brownian` (the R-VAE's Riemannian Brownian-motion prior), :mod:`.lattice` (dithered lattice codes)."""

from lvm.priors.base import InvertiblePrior, Prior, StandardNormalPrior, TorusPrior, UnitCubePrior
from lvm.priors.brownian import BrownianMotionPrior, log_heat_kernel
from lvm.priors.lattice import (GaussianProxyLatticePrior, LaplaceLatticePrior, LatticePMF, LatticePrior,
                                laplace_code_length, laplace_representation_cost)

__all__ = [
    "Prior", "InvertiblePrior", "UnitCubePrior", "TorusPrior", "StandardNormalPrior", "BrownianMotionPrior",
    "log_heat_kernel", "LatticePrior", "LaplaceLatticePrior", "GaussianProxyLatticePrior", "LatticePMF",
    "laplace_representation_cost", "laplace_code_length",
]

for _public in __all__:  # the path configs name (lvm.priors.TorusPrior), in messages, saved configs and pickles
    if isinstance(globals()[_public], type):
        globals()[_public].__module__ = __name__
