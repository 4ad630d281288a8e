"""Audio -> spectrogram preprocessing on generated recordings with known syllables, and the data module
reading its output (metadata, grouped splits)."""

import csv
import json
import shutil

import h5py
import numpy as np
import pytest
import soundfile
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import spearmanr

from lvm.datamodules import VocalizationsDataModule
from lvm.datamodules.miniatures import CALL_KINDS, write_recordings
from lvm.datamodules.vocalizations.preprocess import SpectrogramParams, main
from lvm.datamodules.base import grouped_split

RATE = 32_000
ONSETS = (0.2, 0.6, 1.0)
DURATION = 0.1
F0, F1 = 2000.0, 6000.0  # a rising linear chirp in every syllable


def _recording(path):
    t = np.arange(int(1.4 * RATE)) / RATE
    audio = np.zeros_like(t)
    for onset in ONSETS:
        inside = (t >= onset) & (t < onset + DURATION)
        tau = t[inside] - onset
        audio[inside] = 0.5 * np.sin(2 * np.pi * (F0 * tau + 0.5 * (F1 - F0) / DURATION * tau**2))
    soundfile.write(path, audio, RATE)


def test_chirp_spectrograms_follow_the_chirp_frequency(tmp_path):
    (tmp_path / "wav").mkdir()
    _recording(tmp_path / "wav" / "bird.wav")
    with open(tmp_path / "segments.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "onset", "offset"])
        writer.writerows([["bird.wav", onset, onset + DURATION] for onset in ONSETS])
    written = main(["--audio_dir", str(tmp_path / "wav"), "--segments", str(tmp_path / "segments.csv"),
                    "--out_dir", str(tmp_path / "out"), "--params.mel", "false", "--params.time_stretch", "false",
                    "--params.max_dur", "0.1", "--params.spec_min_val", "-6", "--params.spec_max_val", "4"])
    assert [p.name for p in written] == ["bird.h5"]
    params = SpectrogramParams(mel=False)
    frequencies = params.frequencies()
    with h5py.File(written[0], "r") as handle:
        specs = handle["specs"][:]
        assert specs.shape == (3, 128, 128) and specs.dtype == np.float32 and 0 <= specs.min() and specs.max() <= 1
        assert np.allclose(handle["onsets"][:], ONSETS)
        assert 3000 < handle["mean_freq"][0] < 5000
    for spec in specs:
        columns = slice(16, 112)  # away from the syllable edges, where the STFT window straddles silence
        peak = frequencies[spec[:, columns].argmax(axis=0)]
        expected = F0 + (F1 - F0) * np.linspace(0, 1, 128)[columns]
        assert spearmanr(peak, expected).correlation > 0.95
        assert np.median(np.abs(peak - expected)) < 300  # Hz
    dm = VocalizationsDataModule(str(tmp_path / "out"), label_key="mean_freq", test_fraction=0.34, val_fraction=0.0)
    dm.setup()
    assert len(dm.train_set) + len(dm.test_set) == 3


def test_segments_table_errors(tmp_path):
    (tmp_path / "segments.csv").write_text("name,start,end\nx.wav,0,1\n")
    with pytest.raises(ValueError, match="missing columns"):
        main(["--audio_dir", str(tmp_path), "--segments", str(tmp_path / "segments.csv"), "--out_dir", str(tmp_path)])
    (tmp_path / "segments.csv").write_text("file,onset,offset\nabsent.wav,0,0.1\n")
    with pytest.raises(FileNotFoundError, match="absent.wav"):
        main(["--audio_dir", str(tmp_path), "--segments", str(tmp_path / "segments.csv"), "--out_dir", str(tmp_path)])


# ----- recordings of synthetic calls (lvm.datamodules.miniatures.write_recordings) -----------------------------

def _preprocess(audio_dir, table, out_dir, *args):
    table.to_csv(audio_dir / "segments.csv", index=False)
    return main(["--audio_dir", str(audio_dir), "--segments", str(audio_dir / "segments.csv"), "--out_dir", str(out_dir),
                 *args])


def _specs(paths):
    out = {}
    for path in paths:
        with h5py.File(path, "r") as handle:
            out[path.name] = handle["specs"][:]
    return out


@pytest.fixture(scope="module")
def calls(tmp_path_factory):
    """The same calls saved as int16 (``pcm``) and as float (``float``) WAVs at 22.05, 32 and 48 kHz."""
    root = tmp_path_factory.mktemp("calls")
    tables = {kind: write_recordings(root / kind, subtypes=(subtype,), calls_per_file=6)
              for kind, subtype in (("pcm", "PCM_16"), ("float", "FLOAT"))}
    return root, tables


def test_int16_and_float_recordings_give_the_same_usable_spectrograms_by_default(calls, tmp_path):
    root, tables = calls
    written = {kind: _specs(_preprocess(root / kind, tables[kind].drop(columns="rate"), tmp_path / kind))
               for kind in tables}
    pcm, flt = (np.stack([specs[k] for k in sorted(specs)]) for specs in written.values())
    assert pcm.shape == flt.shape == (3, 6, 128, 128)
    # int16 rounding lies ~50 dB under the background noise: it shows only in the odd spectral null
    assert np.abs(pcm - flt).max() < 0.02 and np.abs(pcm - flt).mean() < 1e-4
    means = pcm.mean(axis=(2, 3))  # [recordings, syllables]
    assert 0.03 < means.min() and means.max() < 0.5 and pcm.max() == 1.0  # the defaults' percentile calibration
    for kind in tables:  # the calibrated scale is reported and reusable
        config = yaml.safe_load((tmp_path / kind / "preprocess_config.yaml").read_text())
        assert config["params"]["spec_min_val"] < config["params"]["spec_max_val"] < 0  # log-magnitudes of floats < 1
    again = _preprocess(root / "pcm", tables["pcm"].drop(columns="rate"), tmp_path / "reused",
                        "--config", str(tmp_path / "float" / "preprocess_config.yaml"),
                        "--audio_dir", str(root / "pcm"), "--segments", str(root / "pcm" / "segments.csv"))
    reused = np.stack([v for _, v in sorted(_specs(again).items())])
    assert np.abs(reused - pcm).max() < 0.02 and np.abs(reused - pcm).mean() < 1e-4


def test_metadata_columns_reach_the_datamodule_and_group_splits_keep_recordings_apart(calls, tmp_path):
    root, tables = calls
    table = tables["float"].assign(note=["naïve"] * len(tables["float"]))  # a non-ASCII string column
    _preprocess(root / "float", table, tmp_path / "out", "--params.num_freq_bins", "64", "--params.num_time_bins", "48")
    dm = VocalizationsDataModule(str(tmp_path / "out"), label_key="kind", group_key="audio_filenames",
                                 test_fraction=0.34, val_fraction=0.0, batch_size=4)
    assert dm.data_shape == (1, 64, 48)
    dm.setup()
    assert {"kind", "individual", "rate", "note", "duration", "mean_freq"} <= set(dm.metadata)
    assert dm.label_names == sorted(CALL_KINDS) and set(dm.metadata["note"]) == {"naïve"}
    assert dm.metadata["rate"].dtype == np.float64 and set(dm.metadata["rate"]) == {22050.0, 32000.0, 48000.0}
    order = np.argsort(dm.metadata["audio_filenames"], kind="stable")  # files in name order, syllables by onset
    expected = table.sort_values(["file", "onset"])
    assert list(dm.metadata["kind"][order]) == list(expected.kind)
    np.testing.assert_allclose(dm.metadata["duration"][order], expected.offset - expected.onset)
    files = [set(dm.metadata["audio_filenames"][s.indices]) for s in (dm.train_set, dm.test_set)]
    assert files[0].isdisjoint(files[1]) and len(files[0]) == 2 and len(files[1]) == 1
    x, label = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 1, 64, 48) and label.dtype == torch.int64
    assert dm.image_axes.row_label == "frequency (kHz)" and dm.image_axes.rows[-1] == pytest.approx(10.0)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=12, max_size=60), st.sampled_from([(0.1, 0.2), (0.0, 0.3), (0.2, 0.2)]),
       st.integers(0, 3))
def test_grouped_splits_never_share_a_group_and_fill_every_wanted_split(groups, fractions, seed):
    val, test = fractions
    groups = np.array(groups)
    fractions = [1 - val - test, val, test]
    wanted = sum(f > 0 for f in fractions)
    if len(np.unique(groups)) < wanted:
        with pytest.raises(ValueError, match="fewer than"):
            grouped_split(range(len(groups)), groups, fractions, seed)
        return
    parts = grouped_split(range(len(groups)), groups, fractions, seed)
    assert sorted(i for part in parts for i in part.indices) == list(range(len(groups)))
    members = [set(groups[part.indices]) for part in parts]
    assert all(members[i].isdisjoint(members[j]) for i in range(3) for j in range(i + 1, 3))
    assert all(len(part) > 0 for part, f in zip(parts, fractions) if f > 0)


def test_overlong_syllables_are_skipped_and_reported(calls, tmp_path, capsys):
    root, tables = calls
    table = tables["float"].drop(columns="rate").copy()
    table.loc[3, "offset"] = table.loc[3, "onset"] + 0.5  # longer than max_dur = 0.2 s
    table.loc[5, "offset"] = table.loc[5, "onset"]  # empty
    written = _preprocess(root / "float", table, tmp_path / "out")
    assert sum(len(v) for v in _specs(written).values()) == len(table) - 2
    summary = json.loads((tmp_path / "out" / "preprocess_summary.json").read_text())
    assert summary["skipped"] == 2 and summary["written"] == len(table) - 2
    assert summary["skipped_by_reason"] == {"longer than max_dur=0.2 s": 1, "offset not after onset": 1}
    assert {(r["file"], r["reason"]) for r in summary["skipped_rows"]} >= {(table.file[3], "longer than max_dur=0.2 s")}
    assert "skipped 2" in capsys.readouterr().out


def test_a_failure_mid_run_leaves_no_output(calls, tmp_path):
    root, tables = calls
    audio = tmp_path / "audio"
    shutil.copytree(root / "float", audio)
    table = tables["float"].drop(columns="rate")
    broken = sorted(table.file.unique())[-1]  # the last file: the others are processed before it fails
    (audio / broken).write_text("not audio")
    with pytest.raises(ValueError, match=f"{broken}: cannot be read as audio"):  # a given scale: no calibration pass
        _preprocess(audio, table, tmp_path / "out", "--params.spec_min_val", "-9", "--params.spec_max_val", "-3")
    assert list((tmp_path / "out").iterdir()) == []  # not the two files processed before, nor the hidden folder


def test_silent_recordings_blank_scales_and_nyquist_are_reported(calls, tmp_path):
    root, tables = calls
    audio = tmp_path / "audio"
    shutil.copytree(root / "float", audio)
    table = tables["float"].drop(columns="rate")
    silent = sorted(table.file.unique())[-1]  # the 48 kHz file
    soundfile.write(audio / silent, np.zeros(32_000), 32_000)
    with pytest.raises(ValueError, match=f"{silent} is silent"):
        _preprocess(audio, table, tmp_path / "out")
    table = table[table.file != silent]
    with pytest.raises(ValueError, match="blank"):  # AVA's int16-scale values on float samples: every image black
        _preprocess(audio, table, tmp_path / "out", "--params.spec_min_val", "2.0", "--params.spec_max_val", "6.5")
    assert not list((tmp_path / "out").glob("*.h5"))
    with pytest.warns(UserWarning, match=r"22050_float_0.wav: max_freq 12000 Hz exceeds the Nyquist frequency 11025 Hz"):
        _preprocess(audio, table, tmp_path / "out", "--params.max_freq", "12000")
    with pytest.raises(FileExistsError, match="--overwrite true"):
        _preprocess(audio, table, tmp_path / "out")
    assert len(_preprocess(audio, table, tmp_path / "out", "--overwrite", "true")) == 2


@pytest.mark.parametrize("command", ["preprocess", "segment"])
def test_the_commands_run_without_runpys_already_imported_warning(command):
    """Importing the package must not import the module ``python -m`` runs (runpy's RuntimeWarning on every run)."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-m",
                             f"lvm.datamodules.vocalizations.{command}", "--help"], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0 and "RuntimeWarning" not in result.stderr, result.stderr[-2000:]
