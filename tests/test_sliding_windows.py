"""Sliding-window data (issue 29): the vocalization preprocessing's shotgun mode (windows over whole recordings or
over regions, as fixed-duration syllables, read in blocks), the mocap windows' sequence and time, an own-data table's
sequence and time columns, and the bad inputs refused in one line with nothing written."""

import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import soundfile

from lvm.datamodules import ArrayDataModule, MocapDataModule, VocalizationsDataModule
from lvm.datamodules.miniatures import write_cmu_subject
from lvm.datamodules.vocalizations import preprocess as preprocessing
from lvm.datamodules.vocalizations.audio import RecordingBlocks, read_recording
from lvm.datamodules.vocalizations.preprocess import SpectrogramParams, main, syllable_spectrogram
from lvm.datamodules.vocalizations.windows import overlap_labels
from lvm.runs.cli import cli_main
from lvm.runs.files import UsageError
from lvm.tools import embed

RATE = 16_000
LENGTH, HOP = 0.1, 0.03
SCALE = ["--params.spec_min_val", "-9", "--params.spec_max_val", "-1", "--params.max_dur", "0.1",
         "--params.nperseg", "256", "--params.noverlap", "128", "--params.max_freq", "7000"]
SMALL = ["--params.num_freq_bins", "16", "--params.num_time_bins", "16"]
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
FAST = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1",
        "--trainer.limit_test_batches", "1", "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--trainer.callbacks", "[]", "--model.eval_num_points", "55",
        "--model.eval_num_samples", "2", "--model.objective.init_args.num_points", "55"]


def _calls(duration: float, rate: int = RATE, seed: int = 0) -> np.ndarray:
    """Chirps of 60 ms every 0.25 s in faint noise, full scale 1."""
    t = np.arange(int(round(duration * rate))) / rate
    phase = t % 0.25
    audio = np.where(phase < 0.06, 0.4 * np.sin(2 * np.pi * (1500 + 20_000 * phase) * phase), 0.0)
    return audio + 0.005 * np.random.default_rng(seed).standard_normal(len(t))


def _write(folder: Path, name: str, duration: float, subtype: str, rate: int = RATE, seed: int = 0) -> Path:
    (folder / name).parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(folder / name, _calls(duration, rate, seed), rate, subtype=subtype)
    return folder / name


def _windows(audio_dir: Path, out: Path, *args) -> list[Path]:
    return main(["--audio_dir", str(audio_dir), "--out_dir", str(out), "--windows.length", str(LENGTH),
                 "--windows.hop", str(HOP), *SCALE, *args])


def _read(path: Path) -> dict:
    with h5py.File(path, "r") as handle:
        fields = {key: handle[key].asstr()[:] if h5py.check_string_dtype(handle[key].dtype) else handle[key][:]
                  for key in handle}
        return {**fields, "attrs": dict(handle.attrs)}


def _params() -> SpectrogramParams:
    return SpectrogramParams(spec_min_val=-9, spec_max_val=-1, max_dur=0.1, nperseg=256, noverlap=128, max_freq=7000,
                             num_freq_bins=16, num_time_bins=16)


# ----- the shotgun mode ------------------------------------------------------------------------------------------

def test_windows_over_int16_and_float_recordings_have_their_count_times_and_metadata(tmp_path):
    durations = {"int16.wav": (1.0, "PCM_16"), "sub/float.wav": (0.73, "FLOAT")}
    for name, (duration, subtype) in durations.items():
        _write(tmp_path / "wav", name, duration, subtype)
    written = _windows(tmp_path / "wav", tmp_path / "out", *SMALL)
    assert sorted(p.name for p in written) == ["int16.h5", "sub__float.h5"]
    for name, (duration, _) in durations.items():
        data = _read(tmp_path / "out" / (name.replace("/", "__")[:-4] + ".h5"))
        count = int(np.floor((duration - LENGTH) / HOP + 1e-9)) + 1
        assert data["specs"].shape == (count, 16, 16) and data["specs"].dtype == np.float32
        assert np.allclose(data["time"], HOP * np.arange(count)) and np.array_equal(data["onsets"], data["time"])
        assert np.allclose(data["offsets"], data["time"] + LENGTH) and np.allclose(data["duration"], LENGTH)
        assert set(data["audio_filenames"]) == {name} and set(data["sequence"]) == {name[:-4]}
        assert data["attrs"]["window_length"] == LENGTH and data["attrs"]["window_hop"] == HOP
        assert data["attrs"]["fs"] == RATE and data["attrs"]["num_time_bins"] == 16
    dm = VocalizationsDataModule(str(tmp_path / "out"), test_fraction=0.2, val_fraction=0.0)
    dm.setup()
    assert dm.time_unit == "s" and dm.window_length == LENGTH
    for sequence in ("int16", "sub/float"):
        times = dm.metadata["time"][dm.metadata["sequence"] == sequence]
        assert len(times) == int(np.floor((durations[sequence + ".wav"][0] - LENGTH) / HOP + 1e-9)) + 1
        assert np.all(np.diff(times) > 0)  # a sequence's windows in time order


def test_a_window_is_the_syllable_pipelines_spectrogram_of_its_interval_read_in_blocks(tmp_path, monkeypatch):
    _write(tmp_path / "wav", "bird.wav", 1.2, "PCM_16")
    monkeypatch.setattr(preprocessing, "BLOCK_SECONDS", 0.17)  # blocks shorter than a window's STFT span
    monkeypatch.setattr(preprocessing, "BATCH", 7)
    windows = _read(_windows(tmp_path / "wav", tmp_path / "windows", *SMALL)[0])
    audio, rate = read_recording(tmp_path / "wav" / "bird.wav")
    whole = np.stack([syllable_spectrogram(audio, rate, t, t + LENGTH, _params()) for t in windows["time"]])
    assert np.array_equal(windows["specs"], whole.astype(np.float32))
    pd.DataFrame({"file": "bird.wav", "onset": windows["onsets"], "offset": windows["offsets"]}).to_csv(
        tmp_path / "segments.csv", index=False, float_format="%.17g")  # the same intervals, to the last bit
    syllables = _read(main(["--audio_dir", str(tmp_path / "wav"), "--segments", str(tmp_path / "segments.csv"),
                            "--out_dir", str(tmp_path / "syllables"), *SCALE, *SMALL])[0])
    assert np.array_equal(windows["specs"], syllables["specs"]) and np.array_equal(windows["mean_freq"],
                                                                                   syllables["mean_freq"])


def test_windows_slide_over_regions_and_take_the_label_they_overlap_most(tmp_path):
    _write(tmp_path / "wav", "bird.wav", 2.0, "FLOAT")
    pd.DataFrame({"file": ["bird.wav"] * 3, "onset": [0.2, 1.0, 1.5], "offset": [0.5, 1.05, 2.5]}).to_csv(
        tmp_path / "regions.csv", index=False)
    pd.DataFrame({"file": ["bird.wav"] * 3, "onset": [0.0, 0.31, 1.6], "offset": [0.3, 0.36, 1.9],
                  "label": ["a", "b", "c"]}).to_csv(tmp_path / "labels.csv", index=False)
    data = _read(_windows(tmp_path / "wav", tmp_path / "out", *SMALL, "--segments", str(tmp_path / "regions.csv"),
                          "--labels", str(tmp_path / "labels.csv"))[0])
    first = 0.2 + HOP * np.arange(int(np.floor((0.3 - LENGTH) / HOP + 1e-9)) + 1)  # 1.0-1.05: shorter than a window
    last = 1.5 + HOP * np.arange(int(np.floor((0.5 - LENGTH) / HOP + 1e-9)) + 1)  # cut at the recording's end (2 s)
    assert np.allclose(data["time"], np.concatenate([first, last]))
    for start, label in zip(data["time"], data["label"]):
        overlaps = {name: max(0.0, min(start + LENGTH, off) - max(start, on))
                    for name, on, off in [("a", 0.0, 0.3), ("b", 0.31, 0.36), ("c", 1.6, 1.9)]}
        best = max(overlaps, key=overlaps.get)
        assert label == (best if overlaps[best] > 0 else "")
    assert {"a", "b", "c", ""} <= set(data["label"])  # 0.26: mostly b (0.05 s) against a (0.04 s)
    summary = (tmp_path / "out" / "preprocess_summary.json").read_text()
    assert "shorter than the window of 0.1 s" in summary


def test_overlap_labels_match_brute_force():
    rng = np.random.default_rng(3)
    starts = np.sort(rng.uniform(0, 10, 200))
    onsets = rng.uniform(0, 10, 30)
    offsets = onsets + rng.uniform(0.01, 1.0, 30)
    names = np.array([f"s{k}" for k in range(30)])
    overlap = np.clip(np.minimum(starts[:, None] + 0.3, offsets) - np.maximum(starts[:, None], onsets), 0, None)
    order = np.argsort(onsets, kind="stable")  # [windows, intervals] in onset order: argmax takes the earliest tie
    expected = np.where(overlap.max(1) > 0, names[order][overlap[:, order].argmax(1)], "")
    assert np.array_equal(overlap_labels(starts, 0.3, onsets, offsets, names), expected)


def test_recording_blocks_give_the_whole_recordings_samples_forward_and_backward(tmp_path):
    path = _write(tmp_path, "a.wav", 0.5, "PCM_16")
    audio, _ = read_recording(path)
    with RecordingBlocks(path, block_seconds=0.01) as blocks:
        for start, stop in [(0, 100), (50, 4000), (3000, 9000), (100, 200), (7900, 10**6), (-5, 10)]:
            samples, first = blocks.span(start, stop)
            assert first == max(start, 0) and np.array_equal(samples, audio[first:min(stop, len(audio))])


# ----- mocap and own data -----------------------------------------------------------------------------------------

def test_mocap_windows_carry_their_trial_as_sequence_and_their_first_frame_over_the_frame_rate_as_time(tmp_path):
    write_cmu_subject(tmp_path, subject=54, trials=3, frames=30)
    dm = MocapDataModule(str(tmp_path), window=10, stride=4)
    dm.setup()
    meta = dm.metadata
    assert dm.time_unit == "s" and np.array_equal(meta["sequence"], meta["trial"])
    assert np.allclose(meta["time"], meta["frame"] / 120.0)
    for trial in ("54_01", "54_02", "54_03"):
        times = meta["time"][meta["sequence"] == trial]
        assert np.allclose(times, (1 + 4 * np.arange(len(times))) / 120.0)  # features start at the 2nd frame
    slow = MocapDataModule(str(tmp_path), window=10, stride=4, fps=60)
    slow.setup()
    assert np.allclose(slow.metadata["time"], meta["time"] * 2)


def test_own_data_sequence_and_time_columns_become_the_sequence_and_time_fields(tmp_path):
    x = np.random.default_rng(0).poisson(3.0, (20, 4)).astype(float)
    np.save(tmp_path / "x.npy", x)
    table = pd.DataFrame({"session": np.repeat(["s1", "s2"], 10), "t_ms": np.tile(np.arange(10) * 40.0, 2),
                          "note": ["x"] * 19 + ["y"], "gap": [1.0] * 19 + [np.nan]})
    table.to_csv(tmp_path / "meta.csv", index=False)
    dm = ArrayDataModule(str(tmp_path / "x.npy"), metadata=str(tmp_path / "meta.csv"), sequence_key="session",
                         time_key="t_ms", time_unit="ms")
    dm.setup()
    assert dm.time_unit == "ms" and list(dm.metadata["sequence"]) == list(table.session)
    assert dm.metadata["time"].dtype == np.float64 and np.array_equal(dm.metadata["time"], table.t_ms)
    config = str(CONFIGS / "qlvm_counts.yaml")
    data = ["--data.init_args.path", str(tmp_path / "x.npy"), "--data.init_args.metadata", str(tmp_path / "meta.csv")]
    assert "sequence_key 'trial' is not a metadata field" in _run_error(
        tmp_path, config, *data, "--data.init_args.sequence_key", "trial")
    message = _run_error(tmp_path, config, *data, "--data.init_args.time_key", "note")
    assert f"time_key 'note' of {tmp_path / 'x.npy'} with metadata" in message and "is not numeric (e.g. 'x')" in message
    message = _run_error(tmp_path, config, *data, "--data.init_args.time_key", "gap")
    assert "time_key 'gap' of" in message and "1 missing value(s), the first at row 19" in message


def _run_error(tmp_path: Path, config: str, *args) -> str:
    """The one-line message of a training run that must stop before writing anything."""
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(UsageError) as error:
        cli_main(["--config", config, "--trainer.default_root_dir", str(tmp_path / "runs"), *FAST, *args])
    assert sorted(tmp_path.rglob("*")) == before
    assert "\n" not in str(error.value)
    return str(error.value)


# ----- bad input: one line, nothing written -----------------------------------------------------------------------

def _preprocess_error(tmp_path: Path, *args) -> str:
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(ValueError) as error:
        main(list(args))
    assert sorted(tmp_path.rglob("*")) == before
    assert "\n" not in str(error.value)
    return str(error.value)


def test_a_window_longer_than_a_recording_is_refused_naming_the_file_its_duration_and_the_window(tmp_path):
    _write(tmp_path / "wav", "long.wav", 1.0, "PCM_16")
    short = _write(tmp_path / "wav", "short.wav", 0.08, "FLOAT")
    message = _preprocess_error(tmp_path, "--audio_dir", str(tmp_path / "wav"), "--out_dir", str(tmp_path / "out"),
                                "--windows.length", str(LENGTH), "--windows.hop", str(HOP), *SCALE)
    assert f"{short}: the recording lasts 0.08 s, shorter than the window of 0.1 s" in message


def test_two_recordings_of_one_sequence_id_with_different_rates_are_refused_naming_both(tmp_path):
    _write(tmp_path / "wav", "bird.flac", 0.5, "PCM_16", rate=22_050)
    _write(tmp_path / "wav", "bird.wav", 0.5, "PCM_16", rate=RATE)
    message = _preprocess_error(tmp_path, "--audio_dir", str(tmp_path / "wav"), "--out_dir", str(tmp_path / "out"),
                                "--windows.length", str(LENGTH), "--windows.hop", str(HOP), *SCALE)
    assert message == ("bird.flac and bird.wav map to one sequence id 'bird' with different sample rates (22050 Hz "
                       "and 16000 Hz); rename or move one of them.")


def test_a_checkpoint_meets_windows_of_another_length_or_syllables_in_one_line_and_nothing_is_written(tmp_path, capsys):
    for k in range(3):
        _write(tmp_path / "wav", f"bird{k}.wav", 1.0, "PCM_16", seed=k)
    size = ["--params.num_freq_bins", "16", "--params.num_time_bins", "16"]
    _windows(tmp_path / "wav", tmp_path / "long", *size)
    main(["--audio_dir", str(tmp_path / "wav"), "--out_dir", str(tmp_path / "short"), "--windows.length", "0.05",
          "--windows.hop", str(HOP), *SCALE, *size])
    pd.DataFrame({"file": ["bird0.wav", "bird1.wav"], "onset": [0.0, 0.25], "offset": [0.06, 0.31]}).to_csv(
        tmp_path / "segments.csv", index=False)
    main(["--audio_dir", str(tmp_path / "wav"), "--segments", str(tmp_path / "segments.csv"), "--out_dir",
          str(tmp_path / "syllables"), *SCALE, *size])
    run = cli_main(["--config", str(CONFIGS / "qlvm_vocalizations_cpu.yaml"), "--trainer.default_root_dir",
                    str(tmp_path / "runs"), *FAST, "--data.init_args.root", str(tmp_path / "long"),
                    "--model.decoder.init_args.channels", "[4, 4]", "--model.decoder.init_args.hidden", "8"])
    ckpt = str(next(Path(run.trainer.default_root_dir).glob("checkpoints/last*.ckpt")))
    embed.main(["--ckpt", ckpt, "--out", str(tmp_path / "same.csv"), "--log_likelihood", "false"])
    assert (tmp_path / "same.csv").is_file()  # the data it was trained on
    for root, data in (("short", "0.05 s windows"), ("syllables", "syllables")):
        with pytest.raises(SystemExit) as status:
            embed.main(["--ckpt", ckpt, "--out", str(tmp_path / f"{root}.csv"), "--data.init_args.root",
                        str(tmp_path / root)])
        error = capsys.readouterr().err.strip()
        assert status.value.code == 2 and "\n" not in error and not (tmp_path / f"{root}.csv").exists()
        assert f"The checkpoint was trained on 0.1 s windows, but {tmp_path / root} holds {data}" in error
    # resuming the run on windows of another length: the same line, before the run directory gains a file
    before = sorted(Path(run.trainer.default_root_dir).rglob("*"))
    with pytest.raises(UsageError, match=r"^The checkpoint was trained on 0.1 s windows, but .* holds 0.05 s windows"):
        cli_main(["--config", str(CONFIGS / "qlvm_vocalizations_cpu.yaml"), "--ckpt_path", ckpt, *FAST,
                  "--trainer.max_epochs", "3", "--data.init_args.root", str(tmp_path / "short"),
                  "--model.decoder.init_args.channels", "[4, 4]", "--model.decoder.init_args.hidden", "8"])
    assert sorted(Path(run.trainer.default_root_dir).rglob("*")) == before


# ----- a long recording in bounded memory ---------------------------------------------------------------------------

@pytest.mark.slow
def test_an_hour_at_44_1_khz_is_processed_in_bounded_memory(tmp_path):
    """One hour of 44.1 kHz int16 audio (318 MB on disk, 1270 MB as float64; written a minute at a time): the windows'
    preprocessing allocates far less than the recording (tracemalloc's peak, NumPy's buffers included; 18 MB)."""
    rate, minutes = 44_100, 60
    with soundfile.SoundFile(tmp_path / "hour.wav", "w", samplerate=rate, channels=1, subtype="PCM_16") as handle:
        for minute in range(minutes):
            handle.write(_calls(60.0, rate, seed=minute))
    tracemalloc.start()
    written = main(["--audio_dir", str(tmp_path), "--out_dir", str(tmp_path / "out"), "--windows.length", "0.2",
                    "--windows.hop", "1.0", "--params.num_freq_bins", "32", "--params.num_time_bins", "32",
                    "--params.spec_min_val", "-9", "--params.spec_max_val", "-1"])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    with h5py.File(written[0], "r") as handle:
        assert len(handle["specs"]) == 3600
    assert peak < 60e6, f"peak {peak / 1e6:.1f} MB"  # the recording read whole: 1270 MB as float64
