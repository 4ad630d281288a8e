"""Grouped splits stratified by a categorical label (issue 31): a real set of 23 recordings of three species (2, 20
and 1 recordings) split by recording once put every syllable of one species into validation and test. Now each
species is spread as evenly as its recordings allow, a species that cannot reach every split is named, and the
examples per species and split are reported."""

import warnings

import numpy as np
import pandas as pd
import pytest

from lvm.datamodules import ArrayDataModule
from lvm.datamodules.base import grouped_split

FRACTIONS = [0.7, 0.1, 0.2]


def _recordings(seed=0):
    """409 syllables in 23 recordings: species A in 2, B in 20, C in 1 (as the newcomer's set)."""
    rng = np.random.default_rng(seed)
    species = ["A"] * 2 + ["B"] * 20 + ["C"]
    sizes = rng.integers(5, 30, size=23)
    sizes = np.round(sizes / sizes.sum() * 409).astype(int)
    groups = np.repeat([f"rec{i:02d}.wav" for i in range(23)], sizes)
    labels = np.repeat(species, sizes)
    return groups, labels


def test_every_species_trains_and_each_is_spread_as_its_recordings_allow():
    groups, labels = _recordings()
    unstratified_misses = 0
    for seed in range(20):
        plain = grouped_split(range(len(groups)), groups, FRACTIONS, seed)
        unstratified_misses += len(set(labels) - set(labels[plain[0].indices]))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            parts = grouped_split(range(len(groups)), groups, FRACTIONS, seed, labels, "species")
        indices = [np.asarray(part.indices, dtype=int) for part in parts]
        assert sum(map(len, indices)) == len(groups)
        assert set(labels[indices[0]]) == {"A", "B", "C"}  # every species is trained on
        for a in range(3):  # no recording straddles two splits
            for b in range(a + 1, 3):
                assert not set(groups[indices[a]]) & set(groups[indices[b]])
        b_share = [np.mean(labels[i] == "B") * len(i) / np.sum(labels == "B") for i in indices]
        assert abs(b_share[0] - 0.7) < 0.15 and b_share[1] > 0 and b_share[2] > 0  # B has groups enough for all
        messages = [str(w.message) for w in caught]
        assert any("species ['A', 'C'] occur(s) in fewer groups than the 3 splits" in m for m in messages), messages
    assert unstratified_misses > 0  # the bug, reproduced without the labels


def test_the_datamodule_reports_examples_per_label_and_split(tmp_path, monkeypatch):
    groups, labels = _recordings()
    np.save(tmp_path / "x.npy", np.zeros((len(groups), 3), dtype=np.float32))
    pd.DataFrame({"recording": groups, "species": labels}).to_csv(tmp_path / "meta.csv", index=False)
    datamodule = ArrayDataModule(str(tmp_path / "x.npy"), metadata=str(tmp_path / "meta.csv"), group_key="recording",
                                 label_key="species", test_fraction=0.2, val_fraction=0.1)
    import lightning.pytorch.utilities as utilities
    said = []
    monkeypatch.setattr(utilities, "rank_zero_info", said.append)  # Lightning's console report on rank zero
    with pytest.warns(UserWarning, match="fewer groups"):
        datamodule.setup("fit")
    report = [message for message in said if "Examples per species and split" in message]
    assert report and "train: A " in report[0] and "; val: " in report[0] and "; test: " in report[0]
    train = datamodule.train_set.indices
    assert f"C {int(np.sum(labels == 'C'))}" in report[0].split(";")[0]  # C's one recording trains
    assert set(labels[train]) == {"A", "B", "C"}
