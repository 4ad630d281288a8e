"""Spectrograms back to sound (:mod:`lvm.numerics.spectrograms`): the preprocessing's own images of clean synthetic
calls (:func:`lvm.datamodules.miniatures.synthetic_call`: tones, chirps and harmonic stacks whose frequencies and
durations are known) are inverted, and the sound is checked against the truth: its fundamental frequency, its
duration, and its spectrogram when the preprocessing analyses it again. The thresholds are about twice the worst
values measured (``python tests/test_spectrogram_inversion.py`` prints them; README, "Hearing the spectrograms")."""

import dataclasses
import itertools
import re
import shutil

import h5py
import numpy as np
import pytest
import torch
from scipy.interpolate import RegularGridInterpolator
from scipy.optimize import lsq_linear, nnls as scipy_nnls
from scipy.signal import stft

from lvm.datamodules import VocalizationsDataModule
from lvm.datamodules.miniatures import synthetic_call, write_recordings
from lvm.datamodules.vocalizations.preprocess import SpectrogramParams, main as preprocess, syllable_spectrogram
from lvm.numerics.spectrograms import (audio_to_spectrogram, bin_frequencies, frequency_axis, griffin_lim,
                                       magnitude_from_scaled, nnls, row_interpolation, rows_to_bins,
                                       spectral_convergence, spectrogram_to_audio, stft_magnitude, time_window)

RATE = 32_000
AMPLITUDE = 0.05  # peak |Z| = 0.025 (log -3.7, pixel 0.88 on SCALE): no pixel saturates
SCALE = {"spec_min_val": -8.75, "spec_max_val": -3.0}  # what the default calibration gives the miniature recordings
CASES = [(kind, duration) for kind in ("tone", "chirp", "harmonic") for duration in (0.03, 0.08, 0.15)]
PAD = 0.25  # s of silence on either side of a call
CONFIGS = {"mel, time_stretch": {"mel": True, "time_stretch": True},  # the preprocessing's defaults
           "linear, no time_stretch": {"mel": False, "time_stretch": False}}
# thresholds: about twice the worst values measured over CASES (README, "Hearing the spectrograms")
PIXEL_ERROR_MAX, PIXEL_ERROR_MEAN = 0.05, 0.01  # mean |re-analysed image - image| per syllable; its mean over them
# spectral convergence of the re-analysed sound's magnitudes at the image's pixels, per syllable (worst measured 0.14
# and 1.49: linear rows 75 Hz apart, sparser than the 62.5 Hz bins, leave the bins between them to the inversion's
# guess, which a harmonic stack with vibrato exposes; its mean pixel error is still 0.024)
CONVERGENCE_MAX = {"mel, time_stretch": 0.3, "linear, no time_stretch": 3.0}
LINEAR_CONVERGENCE_MAX = 0.08  # Griffin-Lim of the calls' own STFT magnitudes (no image), 100 iterations: worst 0.04
# the real pipeline's images of calls in noise (64 x 64, calibrated scale: the median pixel, the noise, maps to 0):
# worst measured spectral convergence 0.24, pixel error 0.030
NOISY_CONVERGENCE_MAX, NOISY_PIXEL_ERROR_MAX = 0.5, 0.06


def drawn_frequencies(kind: str, seed: int) -> tuple[float, float]:
    """The start and end frequency (Hz) ``synthetic_call(kind, ..., np.random.default_rng(seed))`` draws: the same
    draws in the same order (checked against the calls' spectra in :func:`test_the_synthetic_truth`)."""
    rng = np.random.default_rng(seed)
    if kind == "tone":
        return (rng.uniform(1000, 5000),) * 2
    if kind == "harmonic":
        return (rng.uniform(600, 1500),) * 2
    low, high = rng.uniform(2000, 3500), rng.uniform(5000, 7000)
    start, end = rng.permutation([low, high])
    return float(start), float(end)


def clean_call(kind: str, duration: float, seed: int) -> tuple[np.ndarray, float, float]:
    """A call in silence: (samples, onset s, offset s)."""
    call = AMPLITUDE * synthetic_call(kind, duration, RATE, np.random.default_rng(seed))
    pad = np.zeros(int(PAD * RATE))
    return np.concatenate([pad, call, pad]), PAD, PAD + len(call) / RATE


def fundamental_error(waveform: np.ndarray, start: float, duration: float, kind: str, seed: int) -> float:
    """The median |f0 - truth| (Hz) over the frames of the middle 60% of the call (so that no frame straddles its
    edges): per frame (1024-sample window, 64-sample hop, 8192-point FFT) the peak of the spectrum, or for a harmonic
    stack the peak of the harmonic product spectrum over its four harmonics (Schroeder 1968, "Period histogram and
    product spectrum: new methods for fundamental-frequency measurement", JASA 43(4)); the truth of a chirp is its
    instantaneous frequency at the frame's time (its ±20 Hz vibrato is the harmonic stack's)."""
    frequencies, times, spectrum = stft(waveform, fs=RATE, nperseg=1024, noverlap=1024 - 64, nfft=8192)
    magnitude = np.abs(spectrum)  # [frequencies, frames]
    if kind == "harmonic":
        usable = len(frequencies) // 4
        magnitude = np.prod([magnitude[::k][:usable] for k in range(1, 5)], axis=0)
        frequencies = frequencies[:usable]
    phase = (times - start) / duration
    middle = (phase > 0.2) & (phase < 0.8)
    f_start, f_end = drawn_frequencies(kind, seed)
    truth = f_start + (f_end - f_start) * phase[middle]
    return float(np.median(np.abs(frequencies[magnitude[:, middle].argmax(axis=0)] - truth)))


def extent(waveform: np.ndarray, threshold_db: float = -20.0, frame: float = 0.001) -> tuple[float, float]:
    """(start, duration) in s of the sound: the first to the last 1 ms frame whose energy is within 20 dB of the
    loudest frame's."""
    n = int(frame * RATE)
    energy = (waveform[: len(waveform) // n * n].reshape(-1, n) ** 2).mean(axis=1)
    loud = np.flatnonzero(energy > energy.max() * 10 ** (threshold_db / 10))
    return loud[0] * n / RATE, (loud[-1] - loud[0] + 1) * n / RATE


def invert_cases(config: dict, **options):
    """The preprocessing's images of the clean CASES (seed = position), their durations, parameters (the HDF5
    attributes) and inversion."""
    params = SpectrogramParams(**config, **SCALE)
    images, durations = [], []
    for seed, (kind, duration) in enumerate(CASES):
        audio, onset, offset = clean_call(kind, duration, seed)
        images.append(syllable_spectrogram(audio, RATE, onset, offset, params))
        durations.append(offset - onset)
    attributes = {**dataclasses.asdict(params), "fs": RATE}
    images = torch.tensor(np.stack(images), dtype=torch.float32)  # [b, F, T]
    return params, images, np.array(durations), spectrogram_to_audio(images, attributes, durations, **options)


def measure(config: dict) -> dict:
    """Every figure the tests check, per syllable, for one preprocessing configuration."""
    params, images, durations, inverted = invert_cases(config)
    attributes = {**dataclasses.asdict(params), "fs": RATE}
    _, starts = time_window(durations, params.max_dur, params.time_stretch)
    hop_seconds = (params.nperseg - params.noverlap) / RATE
    rows = {"f0_error_hz": [], "f0_tolerance_hz": [], "onset_error_s": [], "offset_error_s": [], "pixel_error": [],
            "reanalysis_mismatch": []}
    for seed, (kind, duration) in enumerate(CASES):
        waveform = inverted.waveforms[seed, : inverted.lengths[seed]].double().numpy()
        rows["f0_error_hz"].append(fundamental_error(waveform, starts[seed], durations[seed], kind, seed))
        f_start, f_end = drawn_frequencies(kind, seed)
        # one STFT bin, plus for a chirp its sweep in half a hop: the image has a column of frames every hop
        rows["f0_tolerance_hz"].append(RATE / params.nperseg + abs(f_end - f_start) / durations[seed] * hop_seconds / 2)
        start, length = extent(waveform)
        rows["onset_error_s"].append(start - starts[seed])
        rows["offset_error_s"].append(start + length - starts[seed] - durations[seed])
        recording = np.pad(waveform, int(PAD * RATE))  # analysed as a recording with silence around the window
        again = syllable_spectrogram(recording, RATE, PAD + starts[seed], PAD + starts[seed] + durations[seed], params)
        rows["pixel_error"].append(float(np.abs(again - images[seed].numpy()).mean()))
        ours = audio_to_spectrogram(torch.tensor(waveform)[None], attributes, durations[seed], again.shape)[0]
        rows["reanalysis_mismatch"].append(float(np.abs(ours.numpy() - again).max()))
    rows["spectral_convergence"] = inverted.spectral_convergence.tolist()
    rows["pixel_error_torch"] = inverted.pixel_error.tolist()
    return {key: np.array(value) for key, value in rows.items()} | {"hop_s": hop_seconds}


@pytest.fixture(scope="module", params=list(CONFIGS))
def measured(request):
    return {**measure(CONFIGS[request.param]), "config": request.param}


def test_the_synthetic_truth():
    """The replicated draws are the calls' frequencies, and the error measures read 0 on the calls themselves."""
    for seed, (kind, duration) in enumerate(CASES):
        audio, onset, offset = clean_call(kind, duration, seed)
        assert fundamental_error(audio, onset, offset - onset, kind, seed) < 15.0  # Hz: the vibrato, the FFT grid
        start, length = extent(audio)
        assert abs(start - onset) <= 0.002 and abs(length - (offset - onset)) <= 0.003  # the 5 ms ramps


def test_the_fundamental_frequency_is_recovered(measured):
    """(a) Within one STFT bin (fs / nperseg = 62.5 Hz; a chirp also the distance it sweeps in half a hop)."""
    assert np.all(measured["f0_error_hz"] <= measured["f0_tolerance_hz"]), measured["f0_error_hz"]


def test_the_duration_is_recovered(measured):
    """(b) Onset and offset of the sound (energy within 20 dB of the peak) each within one STFT hop (8 ms; worst
    measured 5 and 6 ms), so the duration within two."""
    assert np.all(np.abs(measured["onset_error_s"]) <= measured["hop_s"]), measured["onset_error_s"]
    assert np.all(np.abs(measured["offset_error_s"]) <= measured["hop_s"]), measured["offset_error_s"]


def test_the_sound_reanalyses_to_the_image(measured):
    """(c) The preprocessing's spectrogram of the inverted sound is the image it came from: a mean absolute pixel
    difference under ``PIXEL_ERROR_MAX`` per syllable (0.05 of the scale's 5.75 nats: 0.29 nats, 2.5 dB; worst
    measured 0.010 and 0.024) and ``PIXEL_ERROR_MEAN`` over them (measured 0.004 and 0.005), the same figure as
    :func:`spectrogram_to_audio` reports (its batched re-analysis is the preprocessing's), and the spectral
    convergence at the pixels under ``CONVERGENCE_MAX``."""
    assert np.all(measured["pixel_error"] < PIXEL_ERROR_MAX), measured["pixel_error"]
    assert measured["pixel_error"].mean() < PIXEL_ERROR_MEAN
    np.testing.assert_allclose(measured["pixel_error_torch"], measured["pixel_error"], atol=1e-5)
    assert np.all(measured["reanalysis_mismatch"] < 1e-5)  # audio_to_spectrogram is syllable_spectrogram, batched
    convergence = measured["spectral_convergence"]
    assert np.all(convergence < CONVERGENCE_MAX[measured["config"]]), convergence


def linear_magnitudes(params: SpectrogramParams):
    """The STFT magnitudes of the clean CASES with the preprocessing's STFT, ``[b, K, N]``, and the samples."""
    calls = [clean_call(kind, duration, seed)[0] for seed, (kind, duration) in enumerate(CASES)]
    samples = max(map(len, calls))
    waveforms = torch.tensor(np.stack([np.pad(c, (0, samples - len(c))) for c in calls]), dtype=torch.float32)
    return stft_magnitude(waveforms, params.nperseg, params.nperseg - params.noverlap), samples


def test_stft_magnitude_is_scipys():
    """The magnitudes Griffin-Lim matches are the preprocessing's: scipy.signal.stft's (Hann, padded, 1/sum(w))."""
    x = np.random.default_rng(0).normal(size=3000)
    for nperseg, noverlap in ((512, 256), (256, 192)):
        _, _, reference = stft(x, fs=RATE, nperseg=nperseg, noverlap=noverlap)
        ours = stft_magnitude(torch.tensor(x)[None], nperseg, nperseg - noverlap)[0].numpy()
        np.testing.assert_allclose(ours, np.abs(reference)[:, : ours.shape[1]], rtol=1e-9, atol=1e-12)


def test_griffin_lim_recovers_linear_stft_magnitudes_and_momentum_converges_faster():
    """(c) Without the rows and the scale, Griffin-Lim alone: the spectral convergence of the calls' own magnitudes
    after 100 iterations; (d) fast Griffin-Lim (momentum 0.99) is ahead of Griffin-Lim (momentum 0) after 32
    iterations for every call."""
    params = SpectrogramParams()
    hop = params.nperseg - params.noverlap
    magnitudes, samples = linear_magnitudes(params)

    def convergence(iterations, momentum):
        waveforms = griffin_lim(magnitudes, params.nperseg, hop, samples, iterations, momentum)
        return spectral_convergence(stft_magnitude(waveforms, params.nperseg, hop), magnitudes)

    assert torch.all(convergence(100, 0.99) < LINEAR_CONVERGENCE_MAX)
    fast, plain = convergence(32, 0.99), convergence(32, 0.0)
    assert torch.all(fast < plain) and fast.mean() < 0.75 * plain.mean(), (fast, plain)


def test_row_interpolation_is_the_preprocessings():
    """The matrix from STFT bins to rows is what RegularGridInterpolator computes on the preprocessing's grid, for
    mel and linear rows, with rows above the Nyquist frequency (0 in the images) as rows of zeros."""
    rng = np.random.default_rng(0)
    for fs, nperseg, mel in ((32_000, 512, True), (32_000, 512, False), (22_050, 256, True)):
        bins = bin_frequencies(fs, nperseg)
        times = np.arange(5) * 0.008
        log_magnitude = rng.normal(size=(len(bins), len(times)))  # [K, frames]
        rows = frequency_axis(400.0, 12_000.0, 64, mel)
        interpolate = RegularGridInterpolator((bins, times), log_magnitude, bounds_error=False, fill_value=np.nan)
        grid = np.stack(np.meshgrid(rows, times, indexing="ij"), axis=-1)
        expected = np.nan_to_num(interpolate(grid), nan=0.0)  # [F, frames]
        np.testing.assert_allclose(row_interpolation(rows, fs, nperseg) @ log_magnitude, expected, atol=1e-12)


def brute_force_nnls(matrix: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The NNLS fit ``A x*`` by enumeration: the optimum lies on a set of linearly independent columns whose
    unconstrained least-squares solution is non-negative (Carathéodory), so try every such set."""
    best, fitted = np.linalg.norm(target), np.zeros_like(target)
    for chosen in itertools.product((False, True), repeat=matrix.shape[1]):
        columns = matrix[:, np.array(chosen)]
        if columns.shape[1] == 0 or np.linalg.matrix_rank(columns) < columns.shape[1]:
            continue
        solution = np.linalg.lstsq(columns, target, rcond=None)[0]
        if solution.min() >= 0 and np.linalg.norm(columns @ solution - target) < best:
            best, fitted = np.linalg.norm(columns @ solution - target), columns @ solution
    return fitted


def test_nnls_reaches_the_optimum_and_the_rows_are_reproduced():
    """(e) The batched projected-gradient NNLS of the rows -> bins mapping reaches the optimum: on a small case (9
    bins) the fitted rows of brute-force enumeration, for rows denser and sparser than the bins; on a larger one the
    Karush-Kuhn-Tucker conditions, scipy.optimize.lsq_linear's bounded solution, and never a worse residual than
    scipy.optimize.nnls (whose reimplementation since SciPy 1.12 sometimes returns a suboptimal point with a wrong
    residual: scipy/scipy#25389; here too). The minimiser itself is not unique where rows are sparser than bins,
    the fitted rows are. Rows made from non-negative bins are reproduced; bins next to no row outside the band are 0."""
    rng = np.random.default_rng(1)
    for rows in (12, 5):  # 8 bins in the band: rows denser, then sparser
        matrix = row_interpolation(frequency_axis(300.0, 3_600.0, rows, True), 8_000, 16)  # [rows, 9]
        targets = rng.uniform(0, 1, (rows, 6)) * (rng.uniform(size=(rows, 6)) > 0.3)  # [F, T] with floor pixels
        ours = nnls(torch.tensor(matrix), torch.tensor(targets)[None], torch.zeros(1, 9, 6, dtype=torch.float64),
                    2000)[0].numpy()
        expected = np.stack([brute_force_nnls(matrix, column) for column in targets.T], axis=1)
        np.testing.assert_allclose(matrix @ ours, expected, atol=1e-6)

    fs, nperseg, rows_hz = 8_000, 64, frequency_axis(300.0, 3_600.0, 24, True)
    matrix = row_interpolation(rows_hz, fs, nperseg)  # [24, 33]
    arbitrary = rng.uniform(0, 1, (24, 20)) * (rng.uniform(size=(24, 20)) > 0.3)
    representable = matrix @ (rng.uniform(0, 1, (33, 20)) * (rng.uniform(size=(33, 20)) > 0.5))
    for targets in (arbitrary, representable):
        ours = nnls(torch.tensor(matrix), torch.tensor(targets)[None], torch.zeros(1, 33, 20, dtype=torch.float64),
                    3000)[0].numpy()
        gradient = matrix.T @ (matrix @ ours - targets)
        assert ours.min() >= 0 and np.abs(gradient[ours > 0]).max() < 1e-9 and gradient[ours == 0].min() > -1e-9
        for column, target in zip(ours.T, targets.T):
            residual = np.linalg.norm(matrix @ column - target)
            bounded = lsq_linear(matrix, target, bounds=(0, np.inf), method="bvls").x
            assert residual == pytest.approx(np.linalg.norm(matrix @ bounded - target), abs=1e-9)
            assert residual <= np.linalg.norm(matrix @ scipy_nnls(matrix, target)[0] - target) + 1e-9
    bins = rows_to_bins(torch.tensor(representable)[None], fs, nperseg, 300.0, 3_600.0, True, 300)[0].numpy()
    np.testing.assert_allclose(matrix @ bins, representable, atol=1e-3)
    touched = np.flatnonzero(matrix.any(axis=0))
    assert np.all(bins[: touched[0]] == 0) and np.all(bins[touched[-1] + 1:] == 0)


def test_the_floor_is_silence():
    """A pixel at 0 (at or below spec_min_val) is magnitude 0; just above it, exp(spec_min_val); an image that is
    all floor inverts to silence."""
    magnitude = magnitude_from_scaled(torch.tensor([0.0, 1e-6, 1.0]), -8.0, -2.0)
    np.testing.assert_allclose(magnitude.numpy(), [0.0, np.exp(-8.0), np.exp(-2.0)], rtol=1e-4)
    attributes = {**dataclasses.asdict(SpectrogramParams(**SCALE)), "fs": RATE}
    inverted = spectrogram_to_audio(torch.zeros(2, 1, 32, 32), attributes, [0.05, 0.1], iterations=4)
    assert inverted.waveforms.shape == (2, int(inverted.lengths.max())) and not inverted.waveforms.any()


def test_params_missing_a_key_is_a_one_line_error():
    attributes = dataclasses.asdict(SpectrogramParams(**SCALE))  # no fs: a file from before it was written
    with pytest.raises(ValueError, match=r"^params: no 'fs', needed to invert spectrograms to audio[^\n]*$"):
        spectrogram_to_audio(torch.zeros(1, 32, 32), attributes, 0.05)


def test_the_datamodules_files_invert_and_old_files_say_what_they_lack(tmp_path):
    """The real pipeline's output (preprocess -> data module), recordings at two sample rates: each example inverts
    with its file's parameters and its duration; a decoded image needs the rate said; a file written before ``fs``
    was recorded still loads, and inverting it names the file and what is missing, until the value is given."""
    table = write_recordings(tmp_path / "wav", rates=(32_000, 22_050), subtypes=("FLOAT",), calls_per_file=4)
    table.drop(columns="rate").to_csv(tmp_path / "segments.csv", index=False)
    preprocess(["--audio_dir", str(tmp_path / "wav"), "--segments", str(tmp_path / "segments.csv"),
                "--out_dir", str(tmp_path / "specs"), "--params.num_freq_bins", "64", "--params.num_time_bins", "64"])
    dm = VocalizationsDataModule(str(tmp_path / "specs"), test_fraction=0.34, val_fraction=0.0)
    dm.setup()
    assert "fs" not in dm.spectrogram_params and dm.spectrogram_params["num_freq_bins"] == 64
    with pytest.raises(ValueError, match=r"differ in 'fs' \(22050.0, 32000.0\); give the value .*fs=\.\.\.\)\.$"):
        dm.inversion_params()
    assert dm.inversion_params(fs=16_000)["fs"] == 16_000  # e.g. for a decoded image
    np.testing.assert_allclose(np.sort(dm.durations), np.sort(table.offset - table.onset))
    rates = np.array([dm.inversion_params(i)["fs"] for i in range(len(dm.durations))])
    assert sorted(set(rates)) == [22_050, 32_000]
    for rate in (22_050, 32_000):
        indices = np.flatnonzero(rates == rate)
        images = torch.stack([dm.train_set.dataset[i][0] for i in indices])  # [b, 1, F, T], the dataset's order
        inverted = spectrogram_to_audio(images, dm.inversion_params(indices[0]), dm.durations[indices])
        assert inverted.sample_rate == rate and inverted.waveforms.dtype == torch.float32
        assert torch.all(inverted.spectral_convergence < NOISY_CONVERGENCE_MAX), inverted
        assert torch.all(inverted.pixel_error < NOISY_PIXEL_ERROR_MAX), inverted.pixel_error
        spans, _ = time_window(dm.durations[indices], 0.2, True)
        assert inverted.lengths.tolist() == np.ceil(spans * rate - 1e-9).astype(int).tolist()

    shutil.copytree(tmp_path / "specs", tmp_path / "old")  # as an earlier version wrote it, without fs
    path = sorted((tmp_path / "old").glob("*.h5"))[0]
    with h5py.File(path, "r+") as handle:
        del handle.attrs["fs"]
    old = VocalizationsDataModule(str(tmp_path / "old"), test_fraction=0.34, val_fraction=0.0)
    old.setup()  # trains and plots as before
    first = 0  # the first file's first syllable
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))} has no attribute 'fs' \(the recording's sample "
                                         r"rate[^\n]*lvm.datamodules.vocalizations.preprocess[^\n]*fs=\.\.\.\)\.$"):
        old.inversion_params(first)
    assert old.inversion_params(first, fs=rates[first]) == dm.inversion_params(first)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_inversion_runs_on_the_images_device():
    params, images, durations, on_cpu = invert_cases(CONFIGS["mel, time_stretch"])
    on_gpu = spectrogram_to_audio(images.cuda(), {**dataclasses.asdict(params), "fs": RATE}, durations)
    assert on_gpu.waveforms.device.type == "cuda" and on_gpu.waveforms.dtype == torch.float32
    assert torch.allclose(on_gpu.spectral_convergence.cpu(), on_cpu.spectral_convergence, atol=0.02)


if __name__ == "__main__":  # the measured values behind the thresholds
    for name, config in CONFIGS.items():
        figures = measure(config)
        print(name)
        for key in ("f0_error_hz", "f0_tolerance_hz", "onset_error_s", "offset_error_s", "pixel_error",
                    "pixel_error_torch", "reanalysis_mismatch", "spectral_convergence"):
            values = figures[key]
            print(f"  {key:22s} max |.| {np.abs(values).max():.4g}  mean {values.mean():.4g}  "
                  + " ".join(f"{v:.3g}" for v in values))
    magnitudes, samples = linear_magnitudes(SpectrogramParams())
    for iterations, momentum in ((100, 0.99), (32, 0.99), (32, 0.0), (100, 0.0)):
        waveforms = griffin_lim(magnitudes, 512, 256, samples, iterations, momentum)
        sc = spectral_convergence(stft_magnitude(waveforms, 512, 256), magnitudes)
        print(f"linear magnitudes, {iterations} iterations, momentum {momentum}: spectral convergence max "
              f"{sc.max():.4f} mean {sc.mean():.4f}: " + " ".join(f"{v:.3f}" for v in sc.tolist()))
