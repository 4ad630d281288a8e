"""The frequency axis of the vocalization spectrograms: the frequency (Hz) of each row, linearly or mel-spaced.

Its own module, imported by the datamodule and the preprocessing alike, so that importing the package does not import
the ``python -m lvm.datamodules.vocalizations.preprocess`` command (runpy warns when the module it runs is already
imported).
"""

from __future__ import annotations

import numpy as np

__all__ = ["frequency_axis"]


def _mel(hz: np.ndarray) -> np.ndarray:
    return 1127.0 * np.log(1 + hz / 700.0)


def _inverse_mel(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (np.exp(mel / 1127.0) - 1)


def frequency_axis(min_freq: float, max_freq: float, bins: int, mel: bool) -> np.ndarray:
    """The frequency (Hz) of each spectrogram row, ``[bins]``, increasing: mel- or linearly spaced."""
    if mel:
        return _inverse_mel(np.linspace(_mel(min_freq), _mel(max_freq), bins))
    return np.linspace(min_freq, max_freq, bins)
