"""CMU mocap: ASF/AMC parsing and the appendix B.1.3 features on hand-made files."""

import math

import numpy as np
import pytest
import torch

from datamodules import MocapDataModule
from datamodules.miniatures import MOCAP_ASF, write_amc, write_mocap_subject
from datamodules.mocap import frame_features, parse_amc, parse_asf

def test_features_of_a_two_frame_amc(tmp_path):
    (tmp_path / "s.asf").write_text(MOCAP_ASF)
    (tmp_path / "s.amc").write_text(write_amc([
        ((1.0, 2.0, 3.0, 10, 20, 30), (5, 5, 5), (0, 90, -30), 45),
        ((1.5, 2.0, 2.0, 0, 90, 180), (6, 6, 6), (30, 60, 90), 180),
    ]))
    skeleton = parse_asf(tmp_path / "s.asf")
    assert skeleton.dofs == {"lowerback": ["rx", "ry", "rz"], "rfemur": ["rx", "ry", "rz"], "rtibia": ["rx"]}
    frames = parse_amc(tmp_path / "s.amc", skeleton)
    features = frame_features(frames, skeleton)  # lowerback is torso: excluded
    assert features.shape == (1, 2 * (3 + 1 + 3) + 3)
    angles = np.radians([30, 60, 90, 180, 0, 90, 180])  # rfemur, rtibia, then the root rotation of frame 2
    expected = np.concatenate([np.sin(angles), np.cos(angles), [0.5, 0.0, -1.0]])  # velocity = frame 2 - frame 1
    assert np.allclose(features[0], expected, atol=1e-6)
    assert math.isclose(features[0, 3], 0.0, abs_tol=1e-6)  # sin(180 deg)


def test_amc_errors_say_where(tmp_path):
    (tmp_path / "s.asf").write_text(MOCAP_ASF)
    skeleton = parse_asf(tmp_path / "s.asf")
    (tmp_path / "bad.amc").write_text("1\nroot 0 0 0 0 0 0\nrtibia 1 2\n2\nroot 0 0 0 0 0 0\n")
    with pytest.raises(ValueError, match=r"bad.amc:3: bone 'rtibia' has 2 values"):
        parse_amc(tmp_path / "bad.amc", skeleton)


def test_mocap_datamodule_splits_by_trial_into_windows(tmp_path):
    write_mocap_subject(tmp_path)
    dm = MocapDataModule(str(tmp_path), window=10, stride=5, batch_size=4)
    dm.prepare_data()
    dm.setup()
    assert dm.data_shape == (10, 17)
    x, trial = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 10, 17) and x.dtype == torch.float32
    trials = [set(int(t) for _, t in split) for split in (dm.train_set, dm.val_set, dm.test_set)]
    assert trials[0].isdisjoint(trials[2]) and trials[1].isdisjoint(trials[2]) and len(trials[2]) == 1
    assert len(dm.train_set) + len(dm.val_set) + len(dm.test_set) == 5 * 4  # 29 frames -> 4 windows per trial
    again = MocapDataModule(str(tmp_path), window=10, stride=5)
    again.setup()
    assert [int(t) for _, t in again.test_set] == [int(t) for _, t in dm.test_set]


def test_missing_subject_says_where_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="allasfamc.zip"):
        MocapDataModule(str(tmp_path)).prepare_data()
