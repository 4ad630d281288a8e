"""Lightning callbacks: they schedule analyses from :mod:`lvm` and log their results."""

from .diagnostics import TrustDiagnostics
from .explorer import Explorer
from .fid import FID
from .frechet import GaussianFrechetScore
from .kl_warmup import KLWarmup
from .latent_classification import LatentClassification
from .latent_plots import LatentPlots
from .latent_sampler import FitLatentSampler
from .posterior_plots import PosteriorPlots
from .two_phase import TwoPhaseTraining

__all__ = ["Explorer", "FID", "FitLatentSampler", "GaussianFrechetScore", "KLWarmup", "LatentClassification", "LatentPlots", "PosteriorPlots", "TrustDiagnostics", "TwoPhaseTraining"]
