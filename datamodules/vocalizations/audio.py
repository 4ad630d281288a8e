"""Reading recordings: mono floats in [-1, 1] from any file libsndfile reads (WAV int16/int32/float, FLAC, ...), with
errors that name the file, and a warning for a WAV file shorter than its header says (a truncated copy or download);
whole (:func:`read_recording`) or a stretch at a time (:class:`RecordingBlocks`, for hours-long recordings)."""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

import numpy as np
import soundfile

__all__ = ["read_recording", "declared_frames", "RecordingBlocks"]


def declared_frames(path: str | Path) -> int | None:
    """The frames a WAV file's header declares (its ``data`` chunk's size over the frame size), or ``None`` for other
    formats and for headers that do not say (streamed files)."""
    with open(path, "rb") as handle:
        riff = handle.read(12)
        if len(riff) < 12 or riff[:4] != b"RIFF" or riff[8:12] != b"WAVE":
            return None
        block_align = None
        while True:
            header = handle.read(8)
            if len(header) < 8:
                return None
            chunk, size = header[:4], struct.unpack("<I", header[4:])[0]
            if chunk == b"fmt ":
                fmt = handle.read(size + size % 2)
                block_align = struct.unpack("<H", fmt[12:14])[0] if len(fmt) >= 14 else None
            elif chunk == b"data":
                if not block_align or size == 0xFFFFFFFF:
                    return None
                return size // block_align
            else:
                handle.seek(size + size % 2, 1)  # chunks are padded to an even size


def read_recording(path: str | Path) -> tuple[np.ndarray, float]:
    """``(samples [n] float64 mono in [-1, 1], rate)``; a ``ValueError`` naming the file if it is not audio, and a
    warning with the header's length against what could be read if a WAV file is truncated."""
    try:
        audio, rate = soundfile.read(path, dtype="float64", always_2d=True)  # [samples, channels]
    except (soundfile.SoundFileError, RuntimeError) as error:
        raise ValueError(f"{path}: cannot be read as audio ({error}); convert it to WAV or FLAC or move it out of the "
                         "audio folder.") from error
    _warn_if_truncated(path, len(audio), rate)
    return audio.mean(axis=1), float(rate)  # [samples, channels] -> [samples]


def _warn_if_truncated(path: str | Path, frames: int, rate: float) -> None:
    declared = declared_frames(path)
    if declared is not None and declared > frames:
        warnings.warn(f"{path} is truncated: its header declares {declared / rate:.3f} s ({declared} frames), but only "
                      f"{frames / rate:.3f} s ({frames} frames) could be read; the rest of the recording is "
                      "missing (copy the file again), and only what could be read is used.", stacklevel=3)


def _open(path: str | Path) -> soundfile.SoundFile:
    try:
        return soundfile.SoundFile(path)
    except (soundfile.SoundFileError, RuntimeError) as error:
        raise ValueError(f"{path}: cannot be read as audio ({error}); convert it to WAV or FLAC or move it out of the "
                         "audio folder.") from error


class RecordingBlocks:
    """A recording read forward a block at a time, as :func:`read_recording` reads it whole (mono float64 in
    [-1, 1]): :meth:`span` gives the samples of a stretch, keeping in memory only the stretch asked for and the rest
    of the block last read, so spans asked for in increasing order read the file once, in bounded memory.

    Args:
        path: the audio file.
        block_seconds: the least audio read at once (s).
    """

    def __init__(self, path: str | Path, block_seconds: float = 10.0):
        self.path = Path(path)
        with _open(path) as handle:
            self.rate, self.frames = float(handle.samplerate), int(handle.frames)
        _warn_if_truncated(path, self.frames, self.rate)
        self.block = max(1, int(block_seconds * self.rate))
        self._handle: soundfile.SoundFile | None = None
        self._buffer, self._first = np.zeros(0), 0  # samples [first, first + len(buffer)) of the recording

    def span(self, start: int, stop: int) -> tuple[np.ndarray, int]:
        """``(samples, first)``: the samples ``[first, stop)`` of the recording (``stop`` clipped to its end), with
        ``first = max(start, 0)``."""
        start, stop = max(0, start), min(stop, self.frames)
        end = self._first + len(self._buffer)
        if start < self._first or start > end:  # backwards, or past what was read: start a fresh buffer there
            self._buffer, self._first, end = np.zeros(0), start, start
        self._buffer, self._first = self._buffer[start - self._first:], start
        if stop > end:
            if self._handle is None:
                self._handle = _open(self.path)
            self._handle.seek(end)
            block = self._handle.read(max(stop - end, self.block), dtype="float64", always_2d=True)  # [samples, channels]
            self._buffer = np.concatenate([self._buffer, block.mean(axis=1)])
        return self._buffer[:stop - start], start

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> "RecordingBlocks":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
