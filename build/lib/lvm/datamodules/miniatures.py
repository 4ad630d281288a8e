"""Tiny data sets written in the real on-disk formats, for the tests and the data benchmark (no real
data is needed anywhere): MNIST IDX files, Omniglot PNG folders, CMU ASF/AMC files, the 3dShapes HDF5
file and vocalization HDF5 files, whose contents are random (only formats, shapes and dtypes are real);
and WAV recordings of synthetic calls in noise whose onsets and offsets are known
(:func:`write_recordings`)."""

from __future__ import annotations

import struct
from pathlib import Path

import h5py
import numpy as np

__all__ = ["write_idx", "write_mnist", "write_omniglot", "MOCAP_ASF", "write_amc", "write_mocap_subject",
           "CMU_BONES", "CMU_HIERARCHY", "cmu_asf", "amc_text", "cmu_frame", "write_cmu_subject",
           "write_3dshapes", "write_vocalizations", "CALL_KINDS", "synthetic_call", "write_recordings"]


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


# The layout of CMU's skeletons (every subject's ASF, 54's included): the 30 bones besides the root, in the
# files' order, with their degrees of freedom (the order in which an AMC line lists the bone's values).
# 56 angles besides the root's 6 channels; the hipjoints have none (they appear in no AMC frame).
CMU_BONES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("lhipjoint", ()), ("lfemur", ("rx", "ry", "rz")), ("ltibia", ("rx",)), ("lfoot", ("rx", "rz")),
    ("ltoes", ("rx",)),
    ("rhipjoint", ()), ("rfemur", ("rx", "ry", "rz")), ("rtibia", ("rx",)), ("rfoot", ("rx", "rz")),
    ("rtoes", ("rx",)),
    ("lowerback", ("rx", "ry", "rz")), ("upperback", ("rx", "ry", "rz")), ("thorax", ("rx", "ry", "rz")),
    ("lowerneck", ("rx", "ry", "rz")), ("upperneck", ("rx", "ry", "rz")), ("head", ("rx", "ry", "rz")),
    ("lclavicle", ("ry", "rz")), ("lhumerus", ("rx", "ry", "rz")), ("lradius", ("rx",)), ("lwrist", ("ry",)),
    ("lhand", ("rx", "rz")), ("lfingers", ("rx",)), ("lthumb", ("rx", "rz")),
    ("rclavicle", ("ry", "rz")), ("rhumerus", ("rx", "ry", "rz")), ("rradius", ("rx",)), ("rwrist", ("ry",)),
    ("rhand", ("rx", "rz")), ("rfingers", ("rx",)), ("rthumb", ("rx", "rz")),
)
# parent -> children, as in the ASF's :hierarchy section
CMU_HIERARCHY: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("root", ("lhipjoint", "rhipjoint", "lowerback")),
    ("lhipjoint", ("lfemur",)), ("lfemur", ("ltibia",)), ("ltibia", ("lfoot",)), ("lfoot", ("ltoes",)),
    ("rhipjoint", ("rfemur",)), ("rfemur", ("rtibia",)), ("rtibia", ("rfoot",)), ("rfoot", ("rtoes",)),
    ("lowerback", ("upperback",)), ("upperback", ("thorax",)), ("thorax", ("lowerneck", "lclavicle", "rclavicle")),
    ("lowerneck", ("upperneck",)), ("upperneck", ("head",)),
    ("lclavicle", ("lhumerus",)), ("lhumerus", ("lradius",)), ("lradius", ("lwrist",)),
    ("lwrist", ("lhand", "lthumb")), ("lhand", ("lfingers",)),
    ("rclavicle", ("rhumerus",)), ("rhumerus", ("rradius",)), ("rradius", ("rwrist",)),
    ("rwrist", ("rhand", "rthumb")), ("rhand", ("rfingers",)),
)


def cmu_asf() -> str:
    """An Acclaim ASF skeleton with the bone names, order, degrees of freedom and hierarchy of CMU's
    skeletons (:data:`CMU_BONES`); directions, lengths, axes and limits are made up (the features do not
    use them)."""
    lines = ["# a skeleton in the layout of the CMU motion capture database's ASF files", ":version 1.10",
             ":name VICON", ":units", "  mass 1.0", "  length 0.45", "  angle deg", ":documentation",
             "   generated by lvm.datamodules.miniatures.cmu_asf", ":root", "   order TX TY TZ RX RY RZ",
             "   axis XYZ", "   position 0 0 0", "   orientation 0 0 0", ":bonedata"]
    for number, (name, dofs) in enumerate(CMU_BONES, start=1):
        lines += ["  begin", f"     id {number}", f"     name {name}", "     direction 0 1 0",
                  f"     length {1 + number % 7}",
                  "     axis 0 0 0  XYZ"]
        if dofs:
            lines.append("    dof " + " ".join(dofs))
            lines += [("    limits " if i == 0 else "           ") + "(-180.0 180.0)" for i in range(len(dofs))]
        lines.append("  end")
    lines += [":hierarchy", "  begin"] + [f"    {parent} {' '.join(children)}" for parent, children in CMU_HIERARCHY]
    lines.append("  end")
    return "\n".join(lines) + "\n"


def amc_text(frames) -> str:
    """An AMC file of the given frames: each a dict bone -> values (``root``: TX TY TZ RX RY RZ), written in
    the dict's order, angles in degrees."""
    lines = [":FULLY-SPECIFIED", ":DEGREES"]
    for number, frame in enumerate(frames, start=1):
        lines.append(str(number))
        lines += [f"{bone} " + " ".join(repr(float(v)) for v in np.atleast_1d(values))
                  for bone, values in frame.items()]
    return "\n".join(lines) + "\n"


def cmu_frame(rng) -> dict:
    """One random frame of every CMU bone that has degrees of freedom (root first)."""
    frame = {"root": np.concatenate([rng.normal(size=3), rng.uniform(-180, 180, 3)])}
    frame.update({name: rng.uniform(-90, 90, len(dofs)) for name, dofs in CMU_BONES if dofs})
    return frame


def write_cmu_subject(root, subject=54, trials=3, frames=15):
    """``<root>/subjects/<subject>/<subject>.asf`` (:func:`cmu_asf`) and ``trials`` random AMC trials."""
    folder = root / "subjects" / str(subject)
    folder.mkdir(parents=True)
    (folder / f"{subject:02d}.asf").write_text(cmu_asf())
    rng = np.random.default_rng(0)
    for trial in range(1, trials + 1):
        (folder / f"{subject:02d}_{trial:02d}.amc").write_text(amc_text([cmu_frame(rng) for _ in range(frames)]))
    return folder


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


CALL_KINDS = ("tone", "chirp", "harmonic", "pulses")
RAMP = 0.005  # s, raised-cosine onset and offset ramps of every call


def synthetic_call(kind: str, duration: float, rate: float, rng: np.random.Generator) -> np.ndarray:
    """One call of unit peak amplitude: a ``tone`` (1-5 kHz), a rising or falling ``chirp`` (2-7 kHz), a
    ``harmonic`` stack (f0 0.6-1.5 kHz, four harmonics, 1/k amplitudes, slight vibrato) or ``pulses``
    (5 ms tone pulses every 20 ms; the call ends with its last pulse)."""
    t = np.arange(int(round(duration * rate))) / rate
    if kind == "tone":
        wave = np.sin(2 * np.pi * rng.uniform(1000, 5000) * t)
    elif kind == "chirp":
        f0, f1 = rng.permutation([rng.uniform(2000, 3500), rng.uniform(5000, 7000)])
        wave = np.sin(2 * np.pi * (f0 * t + 0.5 * (f1 - f0) / duration * t**2))
    elif kind == "harmonic":
        f0 = rng.uniform(600, 1500)
        phase = 2 * np.pi * (f0 * t + 20 / (2 * np.pi * 8) * np.sin(2 * np.pi * 8 * t))  # 8 Hz vibrato, +-20 Hz
        wave = sum(np.sin(k * phase) / k for k in range(1, 5))
    elif kind == "pulses":
        pulse = 0.005
        t = t[: int(round((np.floor((duration - pulse) / 0.02) * 0.02 + pulse) * rate))]
        wave = np.sin(2 * np.pi * rng.uniform(2000, 4000) * t) * ((t % 0.02) < pulse)
    else:
        raise ValueError(f"Unknown call kind {kind!r}; choose one of {CALL_KINDS}.")
    ramp = min(int(RAMP * rate), len(t) // 2)
    envelope = np.ones(len(t))
    envelope[:ramp] = envelope[len(t) - ramp:][::-1] = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
    wave = wave * envelope
    return wave / np.abs(wave).max()


def write_recordings(folder, rates=(22_050, 32_000, 48_000), subtypes=("PCM_16", "FLOAT"), calls_per_file: int = 8,
                     files_per_format: int = 1, duration_range=(0.03, 0.15), gap_range=(0.1, 0.3),
                     amplitude: float = 0.3, noise: float = 0.003, seed: int = 0):
    """WAV files of synthetic calls (:func:`synthetic_call`, kinds in turn) separated by silent gaps, in
    white noise of standard deviation ``noise`` (full scale 1), one file per (rate, subtype, repeat),
    named ``{individual}_{rate}_{subtype}_{repeat}.wav``. Returns the ground truth as a pandas
    DataFrame with columns ``file, onset, offset`` (seconds; the calls' first and last non-zero
    samples), ``kind``, ``individual`` (``bird0``..``bird2``, one per file) and ``rate``."""
    import pandas as pd
    import soundfile

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows, index = [], 0
    for rate in rates:
        for subtype in subtypes:
            for repeat in range(files_per_format):
                individual = f"bird{index % 3}"
                name = f"{individual}_{rate}_{subtype.lower()}_{repeat}.wav"
                pieces, time = [np.zeros(int(rng.uniform(*gap_range) * rate))], 0.0
                time = len(pieces[0]) / rate
                for call in range(calls_per_file):
                    kind = CALL_KINDS[(call + index) % len(CALL_KINDS)]
                    wave = amplitude * rng.uniform(0.5, 1.0) * synthetic_call(kind, rng.uniform(*duration_range), rate, rng)
                    rows.append((name, time, time + len(wave) / rate, kind, individual, rate))
                    gap = np.zeros(int(rng.uniform(*gap_range) * rate))
                    pieces += [wave, gap]
                    time += (len(wave) + len(gap)) / rate
                audio = np.concatenate(pieces)
                audio = np.clip(audio + rng.normal(0.0, noise, len(audio)), -1.0, 1.0)
                soundfile.write(folder / name, audio, rate, subtype=subtype)
                index += 1
    return pd.DataFrame(rows, columns=["file", "onset", "offset", "kind", "individual", "rate"])
