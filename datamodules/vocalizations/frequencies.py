"""The frequency axis of the vocalization spectrograms: the frequency (Hz) of each row, linearly or mel-spaced.

Defined once in :mod:`lvm.numerics.spectrograms` (which also inverts the spectrograms to audio) and re-exported here
for the datamodule and the preprocessing. Its own module, so that importing the package does not import the
``python -m lvm.datamodules.vocalizations.preprocess`` command (runpy warns when the module it runs is already
imported).
"""

from __future__ import annotations

from lvm.numerics.spectrograms import frequency_axis, hz_to_mel, mel_to_hz

__all__ = ["frequency_axis", "hz_to_mel", "mel_to_hz"]
