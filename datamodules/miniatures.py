"""Tiny data sets written in the real on-disk formats, for the tests and the data benchmark (no real
data is needed anywhere): MNIST IDX files, Omniglot PNG folders, CMU ASF/AMC files, the 3dShapes HDF5
file and vocalization HDF5 files. Contents are random; only formats, shapes and dtypes are real."""

from __future__ import annotations

import struct
from pathlib import Path

import h5py
import numpy as np

__all__ = ["write_idx", "write_mnist", "write_omniglot", "MOCAP_ASF", "write_amc", "write_mocap_subject",
           "write_3dshapes", "write_vocalizations"]


def write_idx(path, array: np.ndarray):
    """The IDX format of LeCun's files: magic (0x0801 labels, 0x0803 images), big-endian sizes, uint8 data."""
    magic = {1: 0x0801, 3: 0x0803}[array.ndim]
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist(root, n_train=30, n_test=12, folder="MNIST"):
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, (n,)))


def write_omniglot(root, alphabets=2, characters=3, drawers=4, size=105):
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in ("images_background", "images_evaluation"):
        for a in range(alphabets):
            for c in range(characters):
                folder = root / "omniglot-py" / name / f"Alphabet_{a}" / f"character{c + 1:02d}"
                folder.mkdir(parents=True)
                for d in range(drawers):
                    pixels = np.full((size, size), 255, dtype=np.uint8)
                    pixels[rng.integers(0, size, 400), rng.integers(0, size, 400)] = 0  # black strokes
                    Image.fromarray(pixels).convert("1").save(folder / f"{c:04d}_{d:02d}.png")


MOCAP_ASF = """# a three-bone skeleton in the Acclaim format
:version 1.10
:name VICON
:units
  mass 1.0
  length 0.45
  angle deg
:root
   order TX TY TZ RX RY RZ
   axis XYZ
   position 0 0 0
   orientation 0 0 0
:bonedata
  begin
     id 1
     name lowerback
     direction 0 1 0
     length 2
     axis 0 0 0 XYZ
     dof rx ry rz
     limits (-180.0 180.0)
            (-180.0 180.0)
            (-180.0 180.0)
  end
  begin
     id 2
     name rfemur
     direction 0 -1 0
     length 7
     axis 0 0 20 XYZ
     dof rx ry rz
  end
  begin
     id 3
     name rtibia
     direction 0 -1 0
     length 7
     axis 0 0 20 XYZ
     dof rx
  end
:hierarchy
  begin
    root lowerback rfemur
    rfemur rtibia
  end
"""


def write_amc(frames):
    lines = [":FULLY-SPECIFIED", ":DEGREES"]
    for number, (root, back, femur, tibia) in enumerate(frames, start=1):
        lines += [str(number), "root " + " ".join(map(str, root)), "lowerback " + " ".join(map(str, back)),
                  "rfemur " + " ".join(map(str, femur)), f"rtibia {tibia}"]
    return "\n".join(lines) + "\n"


def write_mocap_subject(root, trials=5, frames=30):
    folder = root / "subjects" / "54"
    folder.mkdir(parents=True)
    (folder / "54.asf").write_text(MOCAP_ASF)
    rng = np.random.default_rng(0)
    for trial in range(1, trials + 1):
        motion = [(tuple(rng.normal(size=6)), tuple(rng.normal(size=3)), tuple(rng.normal(size=3)), rng.normal())
                  for _ in range(frames)]
        (folder / f"54_{trial:02d}.amc").write_text(write_amc(motion))


def write_3dshapes(path, n=40, image_shape=(64, 64, 3), nan=False, labels=True, chunks=None):
    """``images`` (n, 64, 64, 3) uint8 and ``labels`` (n, 6) float64, as DeepMind's 3dshapes.h5."""
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as handle:
        handle.create_dataset("images", data=rng.integers(0, 256, (n, *image_shape), dtype=np.uint8), chunks=chunks)
        if labels:
            factors = rng.random((n, 6))
            if nan:
                factors[min(3, n - 1), 2] = np.nan
            handle["labels"] = factors
    return Path(path)


def write_vocalizations(path, n, specs=None, key="specs"):
    """An AVA-style HDF5 file: ``specs`` (n, 128, 128) in [0, 1] and per-syllable metadata."""
    rng = np.random.default_rng(0)
    path = Path(path)
    with h5py.File(path, "w") as handle:
        handle[key] = rng.random((n, 128, 128)).astype(np.float32) if specs is None else specs
        handle["onsets"] = np.arange(n, dtype=float)
        handle["offsets"] = np.arange(n, dtype=float) + 0.1
        handle["audio_filenames"] = np.array([f"{path.stem}.wav".encode()] * n)
        handle["mean_freq"] = rng.uniform(1000, 8000, n)
    return path
