"""Lightning callbacks: they schedule analyses from :mod:`lvm` and log their results."""

from .latent_plots import LatentPlots
from .metrics_file import MetricsFile
from .rng_state import RNGStateCheckpoint

__all__ = ["LatentPlots", "MetricsFile", "RNGStateCheckpoint"]
