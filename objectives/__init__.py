"""Objective plugins. Each file holds one objective; :class:`Objective` is the extension point."""

from .base import Objective
from .dithered_lattice import DitheredLatticeObjective
from .elbo import ELBO
from .iwae import IWAE
from .mlae import MLAEObjective
from .qmc import QMCObjective
from .riemannian import RiemannianBrownianPrior
from .taylor import TaylorELBO

__all__ = ["Objective", "QMCObjective", "ELBO", "IWAE", "TaylorELBO", "MLAEObjective",
           "RiemannianBrownianPrior",
           "DitheredLatticeObjective"]
