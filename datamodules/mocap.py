"""CMU motion capture (https://mocap.cs.cmu.edu/; QLVM paper, appendix B.1.3: subject 54).

Reads Acclaim ASF (skeleton) and AMC (motion) files in the layout of CMU's ``allasfamc.zip``:
``<root>/subjects/<subject>/<subject>.asf`` and ``<subject>_<trial>.amc``. Per frame the features are
the sine and cosine of every Euler angle of every non-torso joint (the bones other than ``root`` and
``torso_bones``), of the 3 global (root) rotation angles, and the root's translational velocity (its
displacement since the previous frame, in the ASF's length units). Each example stacks ``window``
contiguous frames, ``[window, F]``; trials are split 80/20 into train/test by ``seed`` (and
``val_fraction`` of the trials for validation), so no window straddles two splits. Batches are
``(x, trial index)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import ConcatDataset, TensorDataset

from .base import SplitDataModule

__all__ = ["Skeleton", "parse_asf", "parse_amc", "frame_features", "MocapDataModule"]


@dataclass
class Skeleton:
    """What the features need from an ASF file: the angle unit, the root's channel order and each
    bone's degrees of freedom (in the order the AMC lists their values)."""

    angles_in_degrees: bool = True
    root_order: list[str] = field(default_factory=lambda: ["TX", "TY", "TZ", "RX", "RY", "RZ"])
    dofs: dict[str, list[str]] = field(default_factory=dict)


def parse_asf(path: Path) -> Skeleton:
    """The angle unit, root order and bone DOFs of an Acclaim ASF file."""
    skeleton, section, bone = Skeleton(), None, None
    for raw in Path(path).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(":"):
            section = line.split()[0][1:]
            continue
        words = line.split()
        if section == "units" and words[0] == "angle":
            skeleton.angles_in_degrees = words[1].lower().startswith("deg")
        elif section == "root" and words[0] == "order":
            skeleton.root_order = [w.upper() for w in words[1:]]
        elif section == "bonedata":
            if words[0] == "name":
                bone = words[1]
                skeleton.dofs.setdefault(bone, [])
            elif words[0] == "dof" and bone is not None:
                skeleton.dofs[bone] = [w.lower() for w in words[1:]]
            elif words[0] == "end":
                bone = None
    if not skeleton.dofs:
        raise ValueError(f"{path}: no bones found; is this an Acclaim ASF skeleton file?")
    return skeleton


def parse_amc(path: Path, skeleton: Skeleton) -> list[dict[str, np.ndarray]]:
    """Frames of an AMC file: per frame a dict bone -> values (root: the ASF root order)."""
    frames: list[dict[str, np.ndarray]] = []
    for number, raw in enumerate(Path(path).read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#") or line.startswith(":"):
            continue
        words = line.split()
        if len(words) == 1 and words[0].isdigit():
            frames.append({})
            continue
        if not frames:
            raise ValueError(f"{path}:{number}: values before the first frame number.")
        bone, values = words[0], np.array([float(w) for w in words[1:]])
        expected = len(skeleton.root_order) if bone == "root" else len(skeleton.dofs.get(bone, []))
        if bone != "root" and bone not in skeleton.dofs:
            raise ValueError(f"{path}:{number}: bone {bone!r} is not in the skeleton.")
        if len(values) != expected:
            raise ValueError(f"{path}:{number}: bone {bone!r} has {len(values)} values; the skeleton gives it {expected}.")
        frames[-1][bone] = values
    if len(frames) < 2:
        raise ValueError(f"{path}: fewer than two frames; velocities need at least two.")
    return frames


def frame_features(frames: list[dict[str, np.ndarray]], skeleton: Skeleton,
                   torso_bones: tuple[str, ...] = ("lowerback", "upperback", "thorax")) -> np.ndarray:
    """Per-frame features ``[T - 1, F]`` (the first frame has no velocity): sin and cos of the
    non-torso joint angles, sin and cos of the root rotation, root translational velocity."""
    joints = [bone for bone in skeleton.dofs if skeleton.dofs[bone] and bone not in torso_bones]
    to_radians = math.pi / 180 if skeleton.angles_in_degrees else 1.0
    order = skeleton.root_order
    translation = [order.index(axis) for axis in ("TX", "TY", "TZ")]
    rotation = [i for i, channel in enumerate(order) if channel.startswith("R")]
    rows = []
    for frame in frames:
        missing = [bone for bone in ["root", *joints] if bone not in frame]
        if missing:
            raise ValueError(f"A frame lacks the bones {missing}.")
        angles = np.concatenate([frame[bone] for bone in joints] + [frame["root"][rotation]]) * to_radians
        rows.append(np.concatenate([np.sin(angles), np.cos(angles), frame["root"][translation]]))
    table = np.stack(rows)  # [T, F + 3]: the last 3 columns are root positions
    velocity = np.diff(table[:, -3:], axis=0)
    return np.concatenate([table[1:, :-3], velocity], axis=1).astype(np.float32)


class MocapDataModule(SplitDataModule):
    """Args:
        root: the folder holding ``subjects/`` (CMU's ``allasfamc.zip`` extracted).
        subject: the subject number (54 in the paper).
        window: frames per example (10).
        stride: frames between the starts of consecutive windows.
        torso_bones: bones counted as torso (excluded from the joint angles).
        test_fraction, val_fraction: fractions of the trials.
        batch_size, seed, num_workers: as usual.
    """

    def __init__(self, root: str = "data/cmu_mocap", subject: int = 54, window: int = 10, stride: int = 1,
                 torso_bones: list[str] = ("lowerback", "upperback", "thorax"), test_fraction: float = 0.2,
                 val_fraction: float = 0.1, batch_size: int = 64, seed: int = 0, num_workers: int = 0):
        super().__init__(batch_size, num_workers, seed)
        self.save_hyperparameters()
        self.folder = Path(root) / "subjects" / str(subject)
        self.subject, self.window, self.stride, self.torso_bones = subject, window, stride, tuple(torso_bones)
        self.fractions = (test_fraction, val_fraction)
        self.data_shape = (window, self._feature_count()) if self._asf().is_file() else None

    def _asf(self) -> Path:
        return self.folder / f"{self.subject:02d}.asf"

    def _trials(self) -> list[Path]:
        trials = sorted(self.folder.glob(f"{self.subject:02d}_*.amc"))
        if not self._asf().is_file() or not trials:
            raise FileNotFoundError(
                f"CMU mocap subject {self.subject} not found: need {self._asf().resolve()} and "
                f"{self.folder.resolve()}/{self.subject:02d}_*.amc. Download allasfamc.zip from "
                "https://mocap.cs.cmu.edu/ (or the subject's ASF/AMC files) and extract it so that subjects/ "
                "is under data.init_args.root."
            )
        return trials

    def _feature_count(self) -> int:
        skeleton = parse_asf(self._asf())
        joints = sum(len(d) for bone, d in skeleton.dofs.items() if bone not in self.torso_bones)
        rotations = sum(channel.startswith("R") for channel in skeleton.root_order)
        return 2 * (joints + rotations) + 3

    def prepare_data(self) -> None:
        self._trials()

    def build_splits(self):
        trials, skeleton = self._trials(), parse_asf(self._asf())
        order = torch.randperm(len(trials), generator=torch.Generator().manual_seed(self.seed)).tolist()
        n_test = max(1, int(round(self.fractions[0] * len(trials)))) if len(trials) > 1 else 0
        n_val = int(round(self.fractions[1] * len(trials)))
        parts = {"test": order[:n_test], "val": order[n_test:n_test + n_val], "train": order[n_test + n_val:]}
        return tuple(self._windows([(trials[i], i) for i in sorted(parts[name])], skeleton)
                     for name in ("train", "val", "test"))

    def _windows(self, trials: list[tuple[Path, int]], skeleton: Skeleton) -> ConcatDataset | TensorDataset:
        """Windows ``[n, window, F]`` of the given (AMC file, trial index) pairs, labelled by trial."""
        sets = []
        for path, index in trials:
            features = frame_features(parse_amc(path, skeleton), skeleton, self.torso_bones)  # [T - 1, F]
            if not np.isfinite(features).all():
                raise ValueError(f"{path}: NaN or infinite values in the motion.")
            starts = range(0, len(features) - self.window + 1, self.stride)
            if len(starts) == 0:
                continue
            windows = np.stack([features[s:s + self.window] for s in starts])  # [n, window, F]
            sets.append(TensorDataset(torch.from_numpy(windows), torch.full((len(windows),), index)))
        return ConcatDataset(sets) if sets else TensorDataset(torch.zeros(0, *self.data_shape), torch.zeros(0))
