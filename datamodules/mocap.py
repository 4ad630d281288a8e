"""CMU motion capture (https://mocap.cs.cmu.edu/; QLVM paper, appendix B.1.3: subject 54).

Reads Acclaim ASF (skeleton) and AMC (motion) files in the layout of CMU's ``allasfamc.zip``:
``<root>/subjects/<subject>/<subject>.asf`` and ``<subject>_<trial>.amc``. Per frame the features are the
sine and cosine of every Euler angle of the kept joints, the sine and cosine of the 3 global pose angles
(the root's RX RY RZ) and the root's translational velocity (its TX TY TZ displacement since the previous
frame, in the ASF's length units): ``[sin(angles), cos(angles), velocity]`` with the angles in ASF bone
order, the root's last.

Which joints are kept. Martinez & Williams (2025, "Quasi Monte Carlo methods enable extremely
low-dimensional deep generative models", appendix B.1.3) use "the 44 non-torso joints", the 3 global
(torso) pose angles and the global translational velocities; their preprocessing follows Wang, Fleet &
Hertzmann (2008, "Gaussian process dynamical models for human motion", IEEE TPAMI 30(2)), where "torso"
is the root. CMU's skeleton (:data:`lvm.datamodules.miniatures.CMU_BONES`) has 30 bones besides the root and
56 joint angles; dropping the bones whose names contain ``toes``, ``hand``, ``fingers``, ``thumb`` or
``hipjoint`` (:data:`PAPER_EXCLUDE`, the default ``exclude``) removes 2 (toes) + 4 (hands) + 2 (fingers)
+ 4 (thumbs) angles and leaves exactly 44: lfemur, ltibia, lfoot, rfemur, rtibia, rfoot (12 = 2 × 6);
lowerback, upperback, thorax (9); lowerneck, upperneck, head (9); lclavicle, lhumerus, lradius, lwrist,
rclavicle, rhumerus, rradius, rwrist (14 = 2 × 7). With the root's RX RY RZ and TX TY TZ velocities a
frame has 2 × (44 + 3) + 3 = 97 features. ``exclude`` (name substrings) and ``torso_bones`` (exact
names) choose other sets: ``exclude=[]`` with ``torso_bones=TORSO_BONES`` is this module's former
reading (drop only lowerback, upperback and thorax: 47 angles, 2 × (47 + 3) + 3 = 103 features).

Each example stacks ``window`` contiguous frames, ``[window, F]``; trials are split 80/20 into train/test
by ``seed`` (and ``val_fraction`` of the trials for validation), so no window straddles two splits. With several
``subjects`` (one skeleton layout), each subject's trials are split so, so every subject is in every split it has
trials enough for, and a model conditioned on the subject has seen each one in training.
Batches are ``(x, trial index)``; per window, ``metadata`` holds ``subject`` (its number), ``trial`` (the AMC file's
name, e.g. ``54_01``) and ``frame`` (the window's first frame, counted from 0 in the AMC file), which a conditional
model names as covariates (``model.covariates: [{key: subject, kind: discrete}]``), and, as every datamodule of
windows of sequences has them, ``sequence`` (the trial) and ``time`` (``frame / fps``, s; ``time_unit`` is ``"s"``):
CMU captured at 120 frames per second (``fps``) and every frame is kept (``stride`` spaces the windows' starts, not
the frames), so a trial's windows are ``stride / fps`` seconds apart, in time order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Subset, TensorDataset

from .base import SplitDataModule

__all__ = ["PAPER_EXCLUDE", "TORSO_BONES", "Skeleton", "parse_asf", "parse_amc", "joint_bones", "frame_features",
           "MocapDataModule"]

PAPER_EXCLUDE = ("toes", "hand", "fingers", "thumb", "hipjoint")
"""Bones whose names contain one of these are left out of the joint angles (Wang, Fleet & Hertzmann 2008;
QLVM B.1.3): 44 of the CMU skeleton's 56 angles remain."""
TORSO_BONES = ("lowerback", "upperback", "thorax")
"""The CMU skeleton's spine bones (kept by default; pass them as ``torso_bones`` to drop them too)."""


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


def joint_bones(skeleton: Skeleton, exclude=PAPER_EXCLUDE, torso_bones=()) -> list[str]:
    """The bones whose angles are features, in ASF order: those with degrees of freedom, whose name
    contains none of the ``exclude`` substrings (case-insensitive) and is none of ``torso_bones``."""
    exclude = [word.lower() for word in exclude]
    return [bone for bone, dofs in skeleton.dofs.items()
            if dofs and bone not in torso_bones and not any(word in bone.lower() for word in exclude)]


def frame_features(frames: list[dict[str, np.ndarray]], skeleton: Skeleton, *, exclude=PAPER_EXCLUDE,
                   torso_bones=()) -> np.ndarray:
    """Per-frame features ``[T - 1, F]`` (the first frame has no velocity): sin and cos of the angles of
    :func:`joint_bones` and of the root rotation, then the root's translational velocity."""
    joints = joint_bones(skeleton, exclude, torso_bones)
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
        subjects: several subject numbers (e.g. ``[54, 55]``) instead of ``subject``; their skeletons must give the
            same features.
        window: frames per example (10).
        stride: frames between the starts of consecutive windows.
        exclude: name substrings of the bones left out of the joint angles (default :data:`PAPER_EXCLUDE`:
            toes, hand, fingers, thumb, hipjoint; 44 angles on CMU's skeleton, as in the paper).
        torso_bones: exact bone names also left out (default none; ``TORSO_BONES`` with ``exclude: []``
            gives the former 47-angle reading).
        fps: frames per second of the capture (CMU: 120), for the windows' ``time``.
        test_fraction, val_fraction: fractions of each subject's trials.
        batch_size, seed, num_workers: as usual.
    """

    time_unit = "s"

    def __init__(self, root: str = "data/cmu_mocap", subject: int = 54, subjects: list[int] | None = None,
                 window: int = 10, stride: int = 1, exclude: list[str] = PAPER_EXCLUDE, torso_bones: list[str] = (),
                 fps: float = 120.0, test_fraction: float = 0.2, val_fraction: float = 0.1, batch_size: int = 64,
                 seed: int = 0, num_workers: int = 0):
        super().__init__(batch_size, num_workers, seed)
        self.save_hyperparameters()
        self.root = Path(root)
        self.subjects = [int(number) for number in (subjects if subjects else [subject])]
        if len(set(self.subjects)) != len(self.subjects):
            raise ValueError(f"subjects {self.subjects} names a subject twice.")
        if fps <= 0:
            raise ValueError(f"fps must be positive frames per second; got {fps}.")
        self.window, self.stride, self.fps = window, stride, float(fps)
        self.exclude, self.torso_bones = tuple(exclude), tuple(torso_bones)
        self.fractions = (test_fraction, val_fraction)
        self.metadata: dict[str, np.ndarray] = {}  # subject, trial, frame, sequence, time: [N] each (after setup)
        present = all(self._asf(number).is_file() for number in self.subjects)
        self.data_shape = (window, self._feature_count()) if present else None

    @property
    def data_description(self) -> str:
        """The data, as errors about its metadata (covariates) name them."""
        return f"CMU mocap subject(s) {self.subjects} in {(self.root / 'subjects').resolve()}"

    def _folder(self, subject: int) -> Path:
        return self.root / "subjects" / str(subject)

    def _asf(self, subject: int) -> Path:
        return self._folder(subject) / f"{subject:02d}.asf"

    def _trials(self, subject: int) -> list[Path]:
        folder = self._folder(subject)
        trials = sorted(folder.glob(f"{subject:02d}_*.amc"))
        if not self._asf(subject).is_file() or not trials:
            raise FileNotFoundError(
                f"CMU mocap subject {subject} not found: need {self._asf(subject).resolve()} and "
                f"{folder.resolve()}/{subject:02d}_*.amc. Download allasfamc.zip from "
                "https://mocap.cs.cmu.edu/ (or the subject's ASF/AMC files) and extract it so that subjects/ "
                "is under data.init_args.root."
            )
        return trials

    def _feature_count(self) -> int:
        counts = {}
        for number in self.subjects:
            skeleton = parse_asf(self._asf(number))
            joints = sum(len(skeleton.dofs[bone]) for bone in joint_bones(skeleton, self.exclude, self.torso_bones))
            rotations = sum(channel.startswith("R") for channel in skeleton.root_order)
            counts[number] = 2 * (joints + rotations) + 3
        if len(set(counts.values())) > 1:
            raise ValueError(f"The skeletons of subjects {self.subjects} give different numbers of features per frame "
                             f"({counts}); train on subjects whose ASF files list the same bones.")
        return counts[self.subjects[0]]

    def prepare_data(self) -> None:
        for number in self.subjects:
            self._trials(number)

    def build_splits(self):
        """One data set of every window of every trial (in subject, then trial order), split by trial: per subject,
        ``test_fraction`` of its trials (at least one when it has two) and ``val_fraction`` for validation, drawn by
        ``seed``."""
        windows, labels, fields, split_of_trial = [], [], {"subject": [], "trial": [], "frame": []}, []
        for number in self.subjects:
            trials, skeleton = self._trials(number), parse_asf(self._asf(number))
            order = torch.randperm(len(trials), generator=torch.Generator().manual_seed(self.seed)).tolist()
            n_test = max(1, int(round(self.fractions[0] * len(trials)))) if len(trials) > 1 else 0
            n_val = int(round(self.fractions[1] * len(trials)))
            part = np.zeros(len(trials), dtype=np.int64)  # 0 train, 1 val, 2 test
            part[order[:n_test]], part[order[n_test:n_test + n_val]] = 2, 1
            for path, split in zip(trials, part):
                trial = self._windows(path, skeleton)  # [n, window, F]
                windows.append(trial)
                labels.append(np.full(len(trial), len(split_of_trial)))
                fields["subject"].append(np.full(len(trial), number))
                fields["trial"].append(np.full(len(trial), path.stem))
                fields["frame"].append(1 + self.stride * np.arange(len(trial)))  # features start at the 2nd frame
                split_of_trial.append(split)
        self.metadata = {key: np.concatenate(values) for key, values in fields.items()}
        self.metadata["sequence"] = self.metadata["trial"].copy()
        self.metadata["time"] = self.metadata["frame"] / self.fps
        label = np.concatenate(labels)
        dataset = TensorDataset(torch.from_numpy(np.concatenate(windows)), torch.from_numpy(label))
        split = np.asarray(split_of_trial)[label]  # [N]
        return tuple(Subset(dataset, np.flatnonzero(split == k).tolist()) for k in range(3))

    def _windows(self, path: Path, skeleton: Skeleton) -> np.ndarray:
        """The windows ``[n, window, F]`` of one AMC file (none when it is shorter than a window)."""
        features = frame_features(parse_amc(path, skeleton), skeleton, exclude=self.exclude,
                                  torso_bones=self.torso_bones)  # [T - 1, F]
        if not np.isfinite(features).all():
            raise ValueError(f"{path}: NaN or infinite values in the motion.")
        starts = range(0, len(features) - self.window + 1, self.stride)
        if len(starts) == 0:
            return np.zeros((0, self.window, features.shape[1]), dtype=np.float32)
        return np.stack([features[s:s + self.window] for s in starts])  # [n, window, F]
