"""Syllable segmentation (lvm.datamodules.vocalizations.segment) on synthetic recordings with known calls, and the import
of annotation files (lvm.datamodules.vocalizations.annotations)."""

import csv
import warnings

import h5py
import numpy as np
import pandas as pd
import pytest
import soundfile
from PIL import Image

from lvm.datamodules.vocalizations import preprocess as vocalization_preprocess
from lvm.datamodules.miniatures import write_recordings
from lvm.datamodules.vocalizations.annotations import read_annotations
from lvm.datamodules.vocalizations.segment import SegmentParams, main, segment_audio, segment_files

TOLERANCE = 0.01  # s, on onsets and offsets


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """Six WAV files (22.05, 32 and 48 kHz; int16 and float) of eight calls each, and their ground truth."""
    folder = tmp_path_factory.mktemp("wav")
    return folder, write_recordings(folder)


def _matches(found: pd.DataFrame, truth: pd.DataFrame) -> int:
    """The number of true calls matched, each to at most one found segment, with onset and offset within
    TOLERANCE."""
    hits = 0
    for name, calls in truth.groupby("file"):
        candidates = found[found["file"] == name][["onset", "offset"]].to_numpy().tolist()
        for onset, offset in zip(calls["onset"], calls["offset"]):
            close = [c for c in candidates if abs(c[0] - onset) <= TOLERANCE and abs(c[1] - offset) <= TOLERANCE]
            if close:
                candidates.remove(close[0])
                hits += 1
    return hits


@pytest.mark.parametrize("mode", ["amplitude", "contrast"])
def test_default_parameters_find_the_calls(recordings, mode):
    folder, truth = recordings
    found = segment_files(str(folder), SegmentParams(mode=mode))
    assert list(found.columns) == ["file", "onset", "offset"]
    assert set(truth["file"]) == set(found["file"])  # every rate and sample format
    hits = _matches(found, truth)
    assert hits / len(truth) >= 0.95 and hits / len(found) >= 0.95, (hits, len(truth), len(found))
    for name, calls in truth.groupby("file"):  # and in each file, not just overall
        assert _matches(found[found["file"] == name], calls) >= len(calls) - 1, name


def test_contrast_mode_follows_a_changing_noise_level(recordings, tmp_path):
    """Louder noise (+14 dB) over the middle third of each recording: the file-wide noise floor of amplitude
    mode then misses the calls there, the running background of contrast mode does not."""
    folder, truth = recordings
    rng = np.random.default_rng(1)
    for name in truth["file"].unique():
        audio, rate = soundfile.read(folder / name, dtype="float64")
        start, stop = len(audio) // 3, 2 * len(audio) // 3
        audio[start:stop] += rng.normal(0.0, 0.015, stop - start)
        soundfile.write(tmp_path / name, audio, rate, subtype="FLOAT")
    contrast = segment_files(str(tmp_path), SegmentParams(mode="contrast"))
    hits = _matches(contrast, truth)
    assert hits / len(truth) >= 0.95 and hits / len(contrast) >= 0.95, (hits, len(truth), len(contrast))
    amplitude = segment_files(str(tmp_path), SegmentParams(mode="amplitude"))
    assert _matches(amplitude, truth) / len(truth) < 0.8


def test_int16_and_float_files_give_the_same_segments(recordings, tmp_path):
    folder, truth = recordings
    name = truth["file"].iloc[0]
    audio, rate = soundfile.read(folder / name, dtype="float64")
    soundfile.write(tmp_path / "int16.wav", audio, rate, subtype="PCM_16")
    soundfile.write(tmp_path / "float.wav", audio, rate, subtype="FLOAT")
    found = segment_files(str(tmp_path))
    int16, float32 = (found[found["file"] == f][["onset", "offset"]].to_numpy() for f in ("int16.wav", "float.wav"))
    assert len(int16) == len(truth[truth["file"] == name]) and int16.shape == float32.shape
    np.testing.assert_allclose(int16, float32, atol=0.0011)  # one hop
    # thresholds are relative to the noise floor: the level of the recording does not matter
    assert segment_audio(audio * 0.05, rate) == segment_audio(audio, rate)
    stereo = segment_audio(np.stack([audio, audio], axis=1), rate)  # [samples, channels]
    assert stereo == segment_audio(audio, rate)


def test_pulse_trains_are_one_call_each(recordings):
    folder, truth = recordings
    pulses = truth[truth["kind"] == "pulses"]
    found = segment_files(str(folder))
    assert _matches(found, pulses) == len(pulses)
    split = segment_files(str(folder), SegmentParams(min_gap=0.0, min_dur=0.0))  # each pulse on its own
    assert _matches(split, pulses) < len(pulses) and len(split) > len(found) + len(pulses)


def test_silence_and_noise_give_no_segment_and_an_empty_folder_an_error(tmp_path, capsys):
    rate = 32_000
    assert segment_audio(np.zeros(rate), rate) == []
    noise = np.random.default_rng(0).normal(0, 0.003, 2 * rate)
    assert segment_audio(noise, rate) == []
    assert segment_audio(noise, rate, SegmentParams(mode="contrast")) == []
    soundfile.write(tmp_path / "silent.wav", np.zeros(rate), rate, subtype="PCM_16")
    soundfile.write(tmp_path / "noise.wav", noise, rate, subtype="FLOAT")
    with pytest.raises(ValueError, match="No segment found in any of the 2 recordings.*onset_threshold"):
        main(["--audio_dir", str(tmp_path), "--out", str(tmp_path / "segments.csv")])
    assert not (tmp_path / "segments.csv").exists()
    # a file without calls beside one with calls: segments of the latter, the former named in the summary
    calls = write_recordings(tmp_path, rates=(rate,), subtypes=("FLOAT",))
    table = main(["--audio_dir", str(tmp_path), "--out", str(tmp_path / "segments.csv")])
    assert set(table["file"]) == set(calls["file"])
    assert "no segment in 2 files (noise.wav, silent.wav)" in capsys.readouterr().out


def test_errors_name_the_file(recordings, tmp_path):
    (tmp_path / "notes.wav").write_text("not audio")
    soundfile.write(tmp_path / "good.wav", np.zeros(1000), 22_050)
    with pytest.raises(ValueError, match="notes.wav: cannot be read as audio"):
        segment_files(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="absent does not exist"):
        segment_files(str(tmp_path / "absent"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="No .wav or .flac file under"):
        segment_files(str(tmp_path / "empty"))
    folder, truth = recordings
    audio, _ = soundfile.read(folder / truth["file"].iloc[0])
    (tmp_path / "notes.wav").unlink()
    soundfile.write(tmp_path / "slow.wav", audio[::2], 16_000)  # Nyquist 8 kHz, below max_freq
    with pytest.warns(UserWarning, match="slow.wav: max_freq=10000 Hz is above the Nyquist frequency 8000 Hz"):
        found = segment_files(str(tmp_path))
    assert (found["file"] == "slow.wav").sum() >= 6
    with pytest.raises(ValueError, match="slow.wav: min_freq=9000"), pytest.warns(UserWarning, match="good.wav"):
        segment_files(str(tmp_path), SegmentParams(min_freq=9000, max_freq=12000))


@pytest.mark.parametrize("bad, message", [
    (dict(mode="loud"), "mode must be"), (dict(hop_ms=10, window_ms=5), "hop_ms <= window_ms"),
    (dict(min_freq=5000, max_freq=1000), "min_freq < max_freq"),
    (dict(onset_threshold=20), "offset_threshold <= onset_threshold <= peak_threshold"),
    (dict(min_dur=0.3), "min_dur < max_dur"), (dict(min_gap=-1), "min_gap"),
    (dict(noise_percentile=120), "noise_percentile"), (dict(background_window=0), "background_window"),
])
def test_parameter_validation(bad, message):
    with pytest.raises(ValueError, match=message):
        SegmentParams(**bad)


def test_cli_writes_a_sorted_csv_that_preprocessing_reads(recordings, tmp_path, capsys):
    folder, truth = recordings
    out = tmp_path / "csv" / "segments.csv"
    (tmp_path / "segment.yaml").write_text("params:\n  mode: contrast\n  peak_threshold: 16\n")
    table = main(["--audio_dir", str(folder), "--out", str(out), "--config", str(tmp_path / "segment.yaml")])
    summary = capsys.readouterr().out
    assert f"Segmented 6 files (16.1 s of audio): {len(truth)} segments, none dropped -> {out}" in summary
    written = pd.read_csv(out)
    assert list(written.columns) == ["file", "onset", "offset"] and len(written) == len(table) == len(truth)
    assert written.equals(written.sort_values(["file", "onset"], ignore_index=True))
    assert sorted(p.name for p in out.parent.iterdir()) == ["segments.csv"]  # no temporary file left
    h5 = vocalization_preprocess.main(["--audio_dir", str(folder), "--segments", str(out),
                                       "--out_dir", str(tmp_path / "h5")])
    assert len(h5) == 6
    with h5py.File(h5[0], "r") as handle:
        assert handle["specs"].shape == (8, 128, 128)


def test_plot_writes_one_png_per_recording(recordings, tmp_path):
    folder, truth = recordings
    (tmp_path / "wav" / "long").mkdir(parents=True)
    for name in truth["file"].unique():
        (tmp_path / "wav" / name).write_bytes((folder / name).read_bytes())
    rate = 22_050
    long = np.random.default_rng(0).normal(0, 0.003, 20 * rate)
    long[5 * rate:5 * rate + 2000] += 0.3 * np.sin(np.arange(2000) * 2 * np.pi * 3000 / rate)
    soundfile.write(tmp_path / "wav" / "long" / "day.flac", long, rate)
    main(["--audio_dir", str(tmp_path / "wav"), "--out", str(tmp_path / "segments.csv"),
          "--plot", str(tmp_path / "plots")])
    pngs = sorted(p.relative_to(tmp_path / "plots").as_posix() for p in (tmp_path / "plots").rglob("*.png"))
    assert pngs == sorted([f"{name}.png" for name in truth["file"].unique()] + ["long/day.flac.png"])
    widths = {}
    for png in pngs:
        with Image.open(tmp_path / "plots" / png) as image:
            widths[png] = image.size[0]
            assert image.size[1] == 500 and np.asarray(image.convert("L")).std() > 10  # not blank
    assert widths["long/day.flac.png"] == 3000  # capped
    assert all(800 <= width < 3000 for png, width in widths.items() if png != "long/day.flac.png")


# ---------------------------------------------------------------- annotations

SONIC_VISUALISER = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE sonic-visualiser>
<sv>
  <data>
    <model id="1" name="" sampleRate="32000" start="16000" end="44800" type="sparse" dimensions="3" resolution="1"
           notifyOnAdd="true" dataset="0" subtype="box" minimum="1000" maximum="8000" units="Hz" />
    <dataset id="0" dimensions="3">
      <point frame="40000" value="2000" duration="4800" extent="6000" label="" />
      <point frame="16000" value="1000" duration="3200" extent="4000" label="A" />
    </dataset>
  </data>
  <display>
    <layer id="2" type="boxes" name="Boxes" model="1" colourName="White" colour="#ffffff" darkBackground="true" />
  </display>
</sv>
"""

RAVEN = ("Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\tHigh Freq (Hz)\tAnnotation\n"
         "1\tWaveform 1\t1\t0.5\t0.62\t1000\t5000\tA\n"
         "1\tSpectrogram 1\t1\t0.5\t0.62\t1000\t5000\tA\n"
         "2\tWaveform 1\t1\t1.25\t1.4\t1500\t6000\tB\n"
         "2\tSpectrogram 1\t1\t1.25\t1.4\t1500\t6000\tB\n")

RAVEN_FILES = ("Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\tHigh Freq (Hz)\tBegin File\t"
               "File Offset (s)\tSpecies\n"
               "1\tSpectrogram 1\t1\t0.2\t0.3\t1000.0\t5000.0\ta.wav\t0.2\tzf\n"
               "2\tSpectrogram 1\t1\t10.5\t10.65\t1000.0\t5000.0\tb.wav\t0.5\tzf\n")

AUDACITY = "0.100000\t0.250000\ta\n\\\t1000.000000\t5000.000000\n0.500000\t0.600000\t\n"

CSV = "file,onset,offset,individual\nb.wav,0.3,0.4,bird1\na.wav,0.1,0.2,bird0\n"


def test_importers_read_each_format(tmp_path):
    (tmp_path / "bird3.svl").write_text(SONIC_VISUALISER)
    (tmp_path / "bird1.Table.1.selections.txt").write_text(RAVEN)
    (tmp_path / "files.txt").write_text(RAVEN_FILES)
    (tmp_path / "bird2.txt").write_text(AUDACITY)
    (tmp_path / "table.csv").write_text(CSV)
    expected = {
        "bird3.svl": pd.DataFrame({"file": ["bird3.wav"] * 2, "onset": [0.5, 1.25], "offset": [0.6, 1.4],
                                   "label": ["A", ""], "low_freq": [1000.0, 2000.0], "high_freq": [5000.0, 8000.0]}),
        "bird1.Table.1.selections.txt": pd.DataFrame({
            "file": ["bird1.wav"] * 2, "onset": [0.5, 1.25], "offset": [0.62, 1.4], "label": ["A", "B"],
            "low_freq": [1000.0, 1500.0], "high_freq": [5000.0, 6000.0]}),
        "files.txt": pd.DataFrame({"file": ["a.wav", "b.wav"], "onset": [0.2, 0.5], "offset": [0.3, 0.65],
                                   "low_freq": [1000.0] * 2, "high_freq": [5000.0] * 2, "Species": ["zf"] * 2}),
        "bird2.txt": pd.DataFrame({"file": ["bird2.wav"] * 2, "onset": [0.1, 0.5], "offset": [0.25, 0.6],
                                   "label": ["a", ""], "low_freq": [1000.0, np.nan], "high_freq": [5000.0, np.nan]}),
        "table.csv": pd.DataFrame({"file": ["a.wav", "b.wav"], "onset": [0.1, 0.3], "offset": [0.2, 0.4],
                                   "individual": ["bird0", "bird1"]}),
    }
    formats = {"bird3.svl": "sonic-visualiser", "bird1.Table.1.selections.txt": "raven", "files.txt": "raven",
               "bird2.txt": "audacity", "table.csv": "csv"}
    for name, table in expected.items():
        for form in (formats[name], None):  # named, and guessed from the file
            pd.testing.assert_frame_equal(read_annotations(str(tmp_path / name), form), table, check_dtype=False,
                                          check_exact=False, rtol=1e-9)
    everything = read_annotations(str(tmp_path))  # a folder: all its annotation files
    assert len(everything) == 10 and everything["file"].is_monotonic_increasing
    relabelled = read_annotations([str(tmp_path / "bird2.txt")], "audacity", audio_files=["x/y.flac"])
    assert (relabelled["file"] == "x/y.flac").all()


def test_importers_agree_with_crowsetta_on_its_examples():
    crowsetta = pytest.importorskip("crowsetta")
    raven_path = crowsetta.example("Recording1", return_path=True)
    ours = read_annotations(str(raven_path), "raven")
    theirs = crowsetta.formats.bbox.Raven.from_file(raven_path, annot_col="Species").df
    assert set(ours["file"]) == {"Recording_1_Segment_02.wav"}
    np.testing.assert_allclose(ours[["onset", "offset", "low_freq", "high_freq"]].to_numpy(),
                               theirs[["begin_time_s", "end_time_s", "low_freq_hz", "high_freq_hz"]].to_numpy())
    assert ours["Species"].tolist() == theirs["annotation"].tolist()
    audacity_path = crowsetta.example("marron1", return_path=True)
    ours = read_annotations(str(audacity_path), "audacity")
    theirs = crowsetta.formats.seq.AudSeq.from_file(audacity_path)
    order = np.argsort(theirs.start_times, kind="stable")
    np.testing.assert_allclose(ours["onset"], theirs.start_times[order])
    np.testing.assert_allclose(ours["offset"], theirs.end_times[order])
    assert ours["label"].tolist() == list(np.asarray(theirs.labels)[order])


def test_importer_errors(tmp_path):
    (tmp_path / "instants.svl").write_text(SONIC_VISUALISER.replace(' duration="4800"', "").replace(
        ' duration="3200"', ""))
    with pytest.raises(ValueError, match="instants.svl: holds only time instants"):
        read_annotations(str(tmp_path / "instants.svl"))
    (tmp_path / "reversed.csv").write_text("file,onset,offset\na.wav,0.5,0.4\n")
    with pytest.raises(ValueError, match=r"reversed.csv: 1 annotations without 0 <= onset < offset"):
        read_annotations(str(tmp_path / "reversed.csv"))
    (tmp_path / "words.csv").write_text("file,onset,offset\na.wav,start,0.4\n")
    with pytest.raises(ValueError, match="words.csv: cannot be read as csv annotations"):
        read_annotations(str(tmp_path / "words.csv"))
    (tmp_path / "broken.svl").write_text("<sv><data>")
    with pytest.raises(ValueError, match="broken.svl: cannot be read as sonic-visualiser"):
        read_annotations(str(tmp_path / "broken.svl"))
    with pytest.raises(ValueError, match="Unknown annotation format 'praat'"):
        read_annotations(str(tmp_path / "reversed.csv"), "praat")
    with pytest.raises(FileNotFoundError, match="absent.txt"):
        read_annotations(str(tmp_path / "absent.txt"))


def test_cli_imports_annotations_for_the_recordings(recordings, tmp_path, capsys):
    folder, truth = recordings
    (tmp_path / "labels").mkdir()
    for name, calls in truth.groupby("file"):  # Audacity label tracks of the true calls, named like the audio
        with open(tmp_path / "labels" / name.replace(".wav", ".txt"), "w", newline="") as handle:
            csv.writer(handle, delimiter="\t").writerows(zip(calls["onset"], calls["offset"], calls["kind"]))
    out = tmp_path / "segments.csv"
    table = main(["--annotations+", str(tmp_path / "labels"), "--annotation_format", "audacity",
                  "--audio_dir", str(folder), "--out", str(out)])
    assert "Imported 48 segments of 6 audio files from 6 annotation files" in capsys.readouterr().out
    written = pd.read_csv(out, keep_default_na=False)
    assert list(written.columns) == ["file", "onset", "offset", "label"] and len(written) == len(table) == 48
    expected = truth.sort_values(["file", "onset"], ignore_index=True)
    assert written["file"].tolist() == expected["file"].tolist()
    assert written["label"].tolist() == expected["kind"].tolist()
    np.testing.assert_allclose(written[["onset", "offset"]].to_numpy(), expected[["onset", "offset"]].to_numpy(),
                               atol=1e-6)
    (tmp_path / "labels" / "bird9.txt").write_text("0.1\t0.2\tx\n")  # annotations of a recording not there
    with pytest.raises(FileNotFoundError, match="Annotations for bird9.wav: no audio file"):
        main(["--annotations+", str(tmp_path / "labels"), "--audio_dir", str(folder), "--out", str(out)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and without audio_dir, names are taken as they are
        table = main(["--annotations", f"[{tmp_path / 'labels' / 'bird9.txt'}]", "--out", str(out)])
    assert table["file"].tolist() == ["bird9.wav"]


def test_a_truncated_wav_is_read_with_a_warning_naming_both_lengths(tmp_path):
    """A WAV file cut short (a partial copy) is segmented as what could be read, with a warning that names the file,
    the header's length and the length read; an intact file gives none."""
    import warnings

    import soundfile

    from lvm.datamodules.vocalizations.audio import declared_frames, read_recording

    rate = 22_050
    for subtype, frame_bytes in (("PCM_16", 2), ("FLOAT", 4)):
        whole = tmp_path / f"whole_{subtype}.wav"
        soundfile.write(whole, np.random.default_rng(0).uniform(-0.5, 0.5, 2 * rate), rate, subtype=subtype)
        assert declared_frames(whole) == 2 * rate
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert len(read_recording(whole)[0]) == 2 * rate
        cut = tmp_path / f"cut_{subtype}.wav"
        cut.write_bytes(whole.read_bytes()[:20_000])
        with pytest.warns(UserWarning, match=rf"cut_{subtype}.wav is truncated: its header declares 2.000 s .* only "):
            audio, _ = read_recording(cut)
        assert len(audio) < 20_000 // frame_bytes + 1
    flac = tmp_path / "call.flac"
    soundfile.write(flac, np.zeros(100), rate)
    assert declared_frames(flac) is None
