"""CMU mocap: ASF/AMC parsing and the appendix B.1.3 features on hand-made files."""

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from lvm.datamodules import MocapDataModule
from lvm.datamodules.miniatures import (CMU_BONES, MOCAP_ASF, amc_text, cmu_asf, write_amc, write_cmu_subject,
                                    write_mocap_subject)
from lvm.datamodules.mocap import PAPER_EXCLUDE, TORSO_BONES, frame_features, joint_bones, parse_amc, parse_asf

REPO = Path(__file__).resolve().parents[1]
# The bones of CMU's skeleton left after dropping toes, hands, fingers, thumbs and hipjoints, with their angles.
PAPER_JOINTS = {"lfemur": 3, "ltibia": 1, "lfoot": 2, "rfemur": 3, "rtibia": 1, "rfoot": 2,
                "lowerback": 3, "upperback": 3, "thorax": 3, "lowerneck": 3, "upperneck": 3, "head": 3,
                "lclavicle": 2, "lhumerus": 3, "lradius": 1, "lwrist": 1,
                "rclavicle": 2, "rhumerus": 3, "rradius": 1, "rwrist": 1}

def test_features_of_a_two_frame_amc(tmp_path):
    (tmp_path / "s.asf").write_text(MOCAP_ASF)
    (tmp_path / "s.amc").write_text(write_amc([
        ((1.0, 2.0, 3.0, 10, 20, 30), (5, 5, 5), (0, 90, -30), 45),
        ((1.5, 2.0, 2.0, 0, 90, 180), (6, 6, 6), (30, 60, 90), 180),
    ]))
    skeleton = parse_asf(tmp_path / "s.asf")
    assert skeleton.dofs == {"lowerback": ["rx", "ry", "rz"], "rfemur": ["rx", "ry", "rz"], "rtibia": ["rx"]}
    frames = parse_amc(tmp_path / "s.amc", skeleton)
    features = frame_features(frames, skeleton)  # the paper's exclusions drop none of these bones
    assert features.shape == (1, 2 * (3 + 3 + 1 + 3) + 3)
    angles = np.radians([6, 6, 6, 30, 60, 90, 180, 0, 90, 180])  # lowerback, rfemur, rtibia, root rotation
    expected = np.concatenate([np.sin(angles), np.cos(angles), [0.5, 0.0, -1.0]])  # velocity = frame 2 - frame 1
    assert np.allclose(features[0], expected, atol=1e-6)
    assert math.isclose(features[0, 6], 0.0, abs_tol=1e-6)  # sin(180 deg)
    old = frame_features(frames, skeleton, exclude=(), torso_bones=TORSO_BONES)  # lowerback as torso: dropped
    assert old.shape == (1, 2 * (3 + 1 + 3) + 3)
    angles = np.radians([30, 60, 90, 180, 0, 90, 180])
    assert np.allclose(old[0], np.concatenate([np.sin(angles), np.cos(angles), [0.5, 0.0, -1.0]]), atol=1e-6)


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
    assert dm.data_shape == (10, 2 * (3 + 3 + 1 + 3) + 3)
    x, trial = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 10, 23) and x.dtype == torch.float32
    trials = [set(int(t) for _, t in split) for split in (dm.train_set, dm.val_set, dm.test_set)]
    assert trials[0].isdisjoint(trials[2]) and trials[1].isdisjoint(trials[2]) and len(trials[2]) == 1
    assert len(dm.train_set) + len(dm.val_set) + len(dm.test_set) == 5 * 4  # 29 frames -> 4 windows per trial
    again = MocapDataModule(str(tmp_path), window=10, stride=5)
    again.setup()
    assert [int(t) for _, t in again.test_set] == [int(t) for _, t in dm.test_set]


def test_missing_subject_says_where_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="allasfamc.zip"):
        MocapDataModule(str(tmp_path)).prepare_data()


def test_cmu_skeleton_keeps_the_papers_44_joint_angles(tmp_path):
    (tmp_path / "54.asf").write_text(cmu_asf())
    skeleton = parse_asf(tmp_path / "54.asf")
    assert skeleton.dofs == {name: list(dofs) for name, dofs in CMU_BONES}
    assert len(skeleton.dofs) == 30 and sum(map(len, skeleton.dofs.values())) == 56  # + the root's 6 = 62
    assert skeleton.root_order == ["TX", "TY", "TZ", "RX", "RY", "RZ"] and skeleton.angles_in_degrees
    joints = joint_bones(skeleton)
    assert joints == list(PAPER_JOINTS)  # ASF order
    assert [len(skeleton.dofs[bone]) for bone in joints] == list(PAPER_JOINTS.values())
    assert sum(PAPER_JOINTS.values()) == 56 - 2 - 4 - 2 - 4 == 44  # toes, hands, fingers, thumbs (hipjoints: none)


def _two_cmu_frames():
    """Frame 1 at rest; in frame 2 the k-th angle of the skeleton (in ASF order) is 7k - 150 degrees."""
    rest = {"root": np.zeros(6), **{name: np.zeros(len(dofs)) for name, dofs in CMU_BONES if dofs}}
    moved, k = {"root": np.array([1.5, -2.0, 0.25, 30.0, -45.0, 90.0])}, 0
    for name, dofs in CMU_BONES:
        if dofs:
            moved[name] = 7.0 * np.arange(k, k + len(dofs)) - 150
            k += len(dofs)
    return [rest, moved]


def test_cmu_frame_features_by_hand(tmp_path):
    (tmp_path / "54.asf").write_text(cmu_asf())
    (tmp_path / "54_01.amc").write_text(amc_text(_two_cmu_frames()))
    skeleton = parse_asf(tmp_path / "54.asf")
    frames = parse_amc(tmp_path / "54_01.amc", skeleton)
    features = frame_features(frames, skeleton)
    assert features.shape == (1, 44 * 2 + 3 * 2 + 3) == (1, 97)
    # the angles of frame 2, by hand: lfemur holds angles 0-2, ltibia 3, lfoot 4-5, (ltoes 6), rfemur 7-9,
    # rtibia 10, rfoot 11-12, (rtoes 13), lowerback..head 14-31, lclavicle 32-33, lhumerus 34-36, lradius 37,
    # lwrist 38, (lhand 39-40, lfingers 41, lthumb 42-43), rclavicle 44-45, rhumerus 46-48, rradius 49,
    # rwrist 50, (rhand 51-52, rfingers 53, rthumb 54-55)
    k = [*range(0, 6), *range(7, 13), *range(14, 39), *range(44, 51)]
    assert len(k) == 44
    degrees = np.concatenate([7.0 * np.array(k) - 150, [30.0, -45.0, 90.0]])  # then the root's RX RY RZ
    expected = np.concatenate([np.sin(np.radians(degrees)), np.cos(np.radians(degrees)),
                               [1.5, -2.0, 0.25]])  # velocity = displacement since frame 1
    assert np.allclose(features[0], expected, atol=1e-6)
    assert math.isclose(features[0, 0], math.sin(math.radians(-150)), abs_tol=1e-6)  # lfemur rx
    assert math.isclose(features[0, 47 + 46], 0.0, abs_tol=1e-6)  # cos(root RZ = 90 deg)
    lhand = np.sin(np.radians(7.0 * 39 - 150))
    assert not np.isclose(features[0], lhand, atol=1e-6).any()  # lhand's angles are not features


@pytest.mark.parametrize("exclude, torso_bones, angles", [
    (PAPER_EXCLUDE, (), 44),
    ((), (), 56),  # every joint angle
    ((), TORSO_BONES, 56 - 9),  # lvm's former reading: only the spine dropped
    (PAPER_EXCLUDE, TORSO_BONES, 44 - 9),
    (["HAND"], (), 56 - 4),  # substrings, case-insensitive: lhand and rhand only
    (["femur", "tibia"], (), 56 - 8),
])
def test_exclusions_change_the_feature_count(tmp_path, exclude, torso_bones, angles):
    (tmp_path / "54.asf").write_text(cmu_asf())
    (tmp_path / "54_01.amc").write_text(amc_text(_two_cmu_frames()))
    skeleton = parse_asf(tmp_path / "54.asf")
    frames = parse_amc(tmp_path / "54_01.amc", skeleton)
    features = frame_features(frames, skeleton, exclude=exclude, torso_bones=torso_bones)
    assert features.shape == (1, 2 * (angles + 3) + 3)


def test_mocap_datamodule_on_a_cmu_skeleton(tmp_path):
    write_cmu_subject(tmp_path, trials=3, frames=15)
    dm = MocapDataModule(str(tmp_path), window=10, stride=2, batch_size=2)
    assert dm.data_shape == (10, 2 * (44 + 3) + 3)
    dm.setup()
    x, _ = next(iter(dm.train_dataloader()))
    assert x.shape == (2, 10, 97) and torch.isfinite(x).all()
    old = MocapDataModule(str(tmp_path), window=10, exclude=[], torso_bones=list(TORSO_BONES))
    assert old.data_shape == (10, 2 * (47 + 3) + 3)


def test_config_and_readme_state_the_cmu_feature_count():
    config = yaml.safe_load((REPO / "configs" / "qlvm_mocap.yaml").read_text())
    assert config["model"]["decoder"]["init_args"]["data_shape"] == [10, 2 * (44 + 3) + 3]
    readme = (REPO / "README.md").read_text()
    bullet = readme[readme.index("**CMU motion capture**"):]
    bullet = bullet[:bullet.index("\n- ")]
    assert re.search(r"\b44\b", bullet) and re.search(r"\b97\b", bullet), bullet
