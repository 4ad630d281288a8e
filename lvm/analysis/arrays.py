"""The arrays in and out of the trust diagnostics (:mod:`lvm.analysis.consistency`,
:mod:`lvm.analysis.decodability`, :mod:`lvm.analysis.clusters`): an embedding checked to be a finite float array
``[n, d]``, and results made writable as strict JSON."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["embedding_array", "json_ready"]


def embedding_array(values, name: str) -> np.ndarray:
    """``values`` as a finite float64 array ``[n, d]`` (a 1-D array is one coordinate)."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 1:
        array = array[:, None]  # [n, 1]
    if array.ndim != 2:
        raise ValueError(f"{name} must be an array [n, d]; got shape {array.shape}.")
    bad = int((~np.isfinite(array)).sum())
    if bad:
        raise ValueError(f"{name}: {bad} of its {array.size} values are not finite (NaN or infinite).")
    return array


def json_ready(value):
    """``value`` (dicts, lists, numbers) with NumPy scalars as Python numbers and non-finite floats as ``None``
    (JSON has no NaN)."""
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value
