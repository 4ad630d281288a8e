"""Importing lvm's plugins and tools leaves matplotlib's backend alone (a notebook's inline backend stays): the figures
are drawn on their own Agg canvases (lvm.plotting.figures.subplots), never through pyplot's backend.

(matplotlib.pyplot itself is imported anyway: Lightning imports torchmetrics, which imports pyplot; pyplot leaves the
backend unresolved until a figure is drawn, so a user's choice stands.)"""

import subprocess
import sys

CHECK = """
import sys

import matplotlib

matplotlib.use("svg")  # the user's choice, made before importing lvm
import lvm.datamodules  # the vocalization datamodule among them
import lvm.callbacks
import lvm.tools.compare
from lvm.plotting.figures import plot_embedding
import numpy as np

plot_embedding(np.random.rand(20, 2), np.arange(20) % 3).savefig(sys.argv[1])
backend = matplotlib.get_backend()
assert backend == "svg", f"importing or drawing with lvm switched the backend to {backend}"
import matplotlib.pyplot as plt
assert plt.get_fignums() == [], "a figure was left in pyplot's registry"
"""


def test_importing_and_drawing_keep_the_matplotlib_backend(tmp_path):
    out = tmp_path / "embedding.png"
    result = subprocess.run([sys.executable, "-c", CHECK, str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
