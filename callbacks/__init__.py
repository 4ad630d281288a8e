"""Lightning callbacks: they schedule analyses from :mod:`lvm` and log their results."""

from .latent_plots import LatentPlots
from .metrics_file import MetricsFile

__all__ = ["LatentPlots", "MetricsFile"]
