"""Audio -> spectrogram preprocessing on a generated chirp recording with known syllables."""

import csv

import h5py
import numpy as np
import pytest
import soundfile
from scipy.stats import spearmanr

from datamodules import VocalizationsDataModule
from datamodules.vocalization_preprocess import SpectrogramParams, main

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
