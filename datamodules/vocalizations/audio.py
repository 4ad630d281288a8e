"""Reading recordings: mono floats in [-1, 1] from any file libsndfile reads (WAV int16/int32/float, FLAC, ...), with
errors that name the file, and a warning for a WAV file shorter than its header says (a truncated copy or download)."""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

import numpy as np
import soundfile

__all__ = ["read_recording", "declared_frames"]


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
    declared = declared_frames(path)
    if declared is not None and declared > len(audio):
        warnings.warn(f"{path} is truncated: its header declares {declared / rate:.3f} s ({declared} frames), but only "
                      f"{len(audio) / rate:.3f} s ({len(audio)} frames) could be read; the rest of the recording is "
                      "missing (copy the file again), and only what could be read is used.", stacklevel=2)
    return audio.mean(axis=1), float(rate)  # [samples, channels] -> [samples]
