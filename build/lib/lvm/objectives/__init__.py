"""Objective plugins: one loss per file. The base class, :class:`lvm.objective.Objective`, is the core's contract."""

from .elbo import ELBO
from .iwae import IWAE
from .lattice_direct import DirectLatticeObjective
from .lattice_proxy import GaussianProxyLatticeObjective
from .mlae import MLAEObjective
from .qmc import QMCObjective
from .riemannian import RiemannianELBO
from .taylor import TaylorELBO

__all__ = ["QMCObjective", "ELBO", "IWAE", "TaylorELBO", "MLAEObjective", "RiemannianELBO", "DirectLatticeObjective",
           "GaussianProxyLatticeObjective"]
