"""Save the random number generators' states in checkpoints so a resumed run is exact."""

from __future__ import annotations

import random

import lightning as L
import numpy as np
import torch

__all__ = ["RNGStateCheckpoint"]


class RNGStateCheckpoint(L.Callback):
    """Stores the torch (CPU and CUDA), NumPy and Python RNG states in every checkpoint and
    restores them when training resumes, *after* the sanity-check validation (which draws
    random lattice shifts), so the resumed run draws the same data order, lattice shifts and
    reparameterisation noise as an uninterrupted one. Under DDP the states of rank 0 are saved."""

    def __init__(self):
        self._pending: dict | None = None

    def state_dict(self) -> dict:
        """Tensors and plain Python values only, so checkpoints load with ``weights_only=True``."""
        _, numpy_keys, numpy_pos, numpy_has_gauss, numpy_gauss = np.random.get_state()
        python_version, python_state, python_gauss = random.getstate()
        return {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": [torch.from_numpy(numpy_keys.astype(np.int64)), numpy_pos, numpy_has_gauss, numpy_gauss],
            "python": [python_version, list(python_state), python_gauss],
        }

    def load_state_dict(self, state_dict: dict) -> None:
        self._pending = state_dict

    def on_train_start(self, trainer, pl_module) -> None:
        if self._pending is None:
            return
        torch.set_rng_state(self._pending["torch"])
        if self._pending["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(self._pending["cuda"])
        numpy_keys, numpy_pos, numpy_has_gauss, numpy_gauss = self._pending["numpy"]
        np.random.set_state(("MT19937", numpy_keys.numpy().astype(np.uint32), numpy_pos, numpy_has_gauss, numpy_gauss))
        python_version, python_state, python_gauss = self._pending["python"]
        random.setstate((python_version, tuple(python_state), python_gauss))
        self._pending = None
