"""Sliding windows over recordings (the "shotgun" mode of :mod:`lvm.datamodules.vocalizations.preprocess`, after
the shotgun VAE of Goffinet, Brudner, Mooney & Pearson 2021, eLife 10:e67855): windows of a fixed ``length`` whose
starts are ``hop`` apart, over whole recordings or over given regions, no segmentation needed; each window is a
fixed-duration syllable to the spectrogram pipeline. A region ``[a, b)`` holds ``floor((b - a - length) / hop) + 1``
windows, starting at ``a + k * hop``.

Each window's ``sequence`` is its recording's name without the audio suffix (``day1/bird1.wav`` -> ``day1/bird1``; the
output file is named after it) and its ``time`` the window's start (s) from the recording's start; the label of an
annotated interval it overlaps is :func:`overlap_labels`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np

__all__ = ["SlidingWindows", "window_starts", "overlap_labels", "sequence_id"]

TOLERANCE = 1e-9  # s: a window ending this close past a region's end still fits (floating-point starts)


@dataclass
class SlidingWindows:
    """Args:
        length: each window's duration (s); at most the spectrogram's ``max_dur``.
        hop: the time between consecutive windows' starts (s).
    """

    length: float = 0.2
    hop: float = 0.05

    def __post_init__(self):
        if not (self.length > 0 and self.hop > 0):
            raise ValueError(f"windows.length and windows.hop must be positive seconds; got {self.length} and {self.hop}.")


def window_starts(start: float, stop: float, length: float, hop: float) -> np.ndarray:
    """The starts (s) of the windows of ``length`` every ``hop`` inside ``[start, stop)``: ``start + k * hop`` for
    ``k = 0 .. floor((stop - start - length) / hop)``; none when the region is shorter than a window."""
    if stop - start < length - TOLERANCE:
        return np.zeros(0)
    count = int(np.floor((stop - start - length) / hop + TOLERANCE)) + 1
    return start + hop * np.arange(count)


def overlap_labels(starts: np.ndarray, length: float, onsets: np.ndarray, offsets: np.ndarray,
                   labels: np.ndarray) -> np.ndarray:
    """Per window ``[start, start + length)`` (``starts`` increasing), the label of the annotated interval
    ``[onset, offset)`` it overlaps most (the earliest of equal overlaps), or ``""`` where it overlaps none. Each
    interval visits only the windows it can overlap (``searchsorted``), so long recordings with many annotations
    cost the sum of their overlaps, not windows x intervals."""
    best, choice = np.zeros(len(starts)), np.full(len(starts), -1)
    for index in np.argsort(onsets, kind="stable"):
        first, last = np.searchsorted(starts, [onsets[index] - length, offsets[index]], side="right")
        window = slice(int(first), int(last))  # windows with onset - length < start < offset
        overlap = np.minimum(starts[window] + length, offsets[index]) - np.maximum(starts[window], onsets[index])
        better = overlap > best[window] + TOLERANCE
        best[window] = np.where(better, overlap, best[window])
        choice[window] = np.where(better, index, choice[window])
    named = np.asarray(labels, dtype=str)
    return np.where(choice >= 0, named[np.maximum(choice, 0)] if len(named) else "", "")


def sequence_id(name: str) -> str:
    """A recording's sequence id: its path (relative to the audio folder, ``/``-separated) without the suffix."""
    path = PurePosixPath(str(name).replace("\\", "/"))
    return str(path.with_suffix("")) if path.suffix else str(path)
