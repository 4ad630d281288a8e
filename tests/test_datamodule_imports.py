"""Importing the datamodules leaves matplotlib's backend alone: the vocalization datamodule takes its spectrogram axes
from lvm.plotting.axes (no matplotlib), not from lvm.plotting.figures, which selects the Agg backend when imported.

(matplotlib.pyplot itself is imported anyway: Lightning imports torchmetrics, which imports pyplot; pyplot leaves the
backend unresolved until a figure is drawn, so a user's choice stands.)"""

import subprocess
import sys

CHECK = """
import sys

import matplotlib

matplotlib.use("svg")  # the user's choice, made before importing lvm
import lvm.datamodules  # the vocalization datamodule among them

backend = matplotlib.get_backend()
assert "lvm.plotting.figures" not in sys.modules, "importing lvm.datamodules imported lvm.plotting.figures"
assert backend == "svg", f"importing lvm.datamodules switched the backend to {backend}"
"""


def test_importing_the_datamodules_keeps_the_matplotlib_backend():
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
