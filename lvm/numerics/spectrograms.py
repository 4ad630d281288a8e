"""Spectrograms of vocalizations and their inversion to sound.

The preprocessing (``lvm.datamodules.vocalizations.preprocess``, the recipe of Autoencoded Vocal Analysis: Goffinet,
Brudner, Mooney & Pearson 2021, "Inferring low-dimensional latent descriptions of animal vocalizations", eLife
10:e67855) turns a syllable of duration ``d`` seconds, sampled at ``fs``, into an ``[F, T]`` image ``v`` in [0, 1]:

1. the STFT ``Z[k, n]`` of the recording (``scipy.signal.stft`` defaults: periodic Hann window ``w`` of ``nperseg``
   samples, hop ``nperseg - noverlap``, ``nperseg // 2`` zeros padded at both ends so frame ``n`` is centred at
   ``n * hop / fs``, ``scaling="spectrum"``: ``Z = sum_m x[m] w[m - n hop] e^{-2 pi i k m / nperseg} / sum_m w[m]``);
2. ``L = log(|Z| + 1e-12)``, linearly interpolated (``RegularGridInterpolator``) from the bins ``k fs / nperseg``
   onto ``F`` rows between ``min_freq`` and ``max_freq`` (linearly or mel spaced, :func:`frequency_axis`) and ``T``
   columns: with ``time_stretch`` the columns span ``sqrt(d * max_dur)`` seconds (so a short syllable is stretched),
   without it ``max_dur`` seconds, the syllable centred;
3. ``v = clip((L - spec_min_val) / (spec_max_val - spec_min_val), 0, 1)``; pixels outside the recording or above its
   Nyquist frequency are 0.

:func:`spectrogram_to_audio` undoes each step — (3) :func:`magnitude_from_scaled`, (2) :func:`rows_to_bins` (the
frequency interpolation, by non-negative least squares) and :func:`columns_to_frames` (the time axis), then finds a
phase for the magnitudes (1) by fast Griffin-Lim (:func:`griffin_lim`). :func:`audio_to_spectrogram` is steps 1-3
again, batched in torch (equal to the preprocessing's own to 1e-14), with which :func:`spectral_convergence` and the
pixel difference measure the result. Everything is batched over syllables and runs on the images' device.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
import torch

__all__ = ["hz_to_mel", "mel_to_hz", "frequency_axis", "INVERSION_KEYS", "inversion_params", "bin_frequencies",
           "row_interpolation", "magnitude_from_scaled", "nnls", "rows_to_bins", "time_window", "columns_to_frames",
           "stft_magnitude", "griffin_lim", "spectral_convergence", "audio_to_spectrogram", "InvertedAudio",
           "spectrogram_to_audio"]

# the HDF5 attributes (preprocessing parameters) that inversion reads; the image gives F and T
INVERSION_KEYS = ("fs", "nperseg", "noverlap", "min_freq", "max_freq", "mel", "max_dur", "time_stretch",
                  "spec_min_val", "spec_max_val")


# ----- the frequency axis ---------------------------------------------------------------------------------------

def hz_to_mel(hz):
    """The mel scale ``m = 1127 ln(1 + f / 700)`` (O'Shaughnessy 1987, "Speech communication: human and machine", in
    the natural-log form of HTK and AVA), of a number or array of frequencies in Hz."""
    return 1127.0 * np.log(1 + np.asarray(hz, dtype=float) / 700.0)


def mel_to_hz(mel):
    """The inverse of :func:`hz_to_mel`: ``f = 700 (exp(m / 1127) - 1)``."""
    return 700.0 * (np.exp(np.asarray(mel, dtype=float) / 1127.0) - 1)


def frequency_axis(min_freq: float, max_freq: float, bins: int, mel: bool) -> np.ndarray:
    """The frequency (Hz) of each spectrogram row, ``[bins]``, increasing: mel- or linearly spaced."""
    if mel:
        return mel_to_hz(np.linspace(hz_to_mel(min_freq), hz_to_mel(max_freq), bins))
    return np.linspace(min_freq, max_freq, bins)


def bin_frequencies(fs: float, nperseg: int) -> np.ndarray:
    """The frequencies (Hz) of the one-sided STFT's bins, ``[nperseg // 2 + 1]``: ``k fs / nperseg``."""
    return np.arange(nperseg // 2 + 1) * fs / nperseg


def row_interpolation(rows_hz: np.ndarray, fs: float, nperseg: int) -> np.ndarray:
    """The matrix ``A [F, K]`` of the preprocessing's frequency interpolation, ``rows = A @ bins`` for each column:
    a row at ``f`` between the bins ``k`` and ``k + 1`` (``f = (k + w) fs / nperseg``, ``0 <= w <= 1``) is
    ``(1 - w) bin_k + w bin_{k+1}``, as ``scipy.interpolate.RegularGridInterpolator(method="linear")`` computes it; a
    row above the Nyquist frequency (0 in the image) is a row of zeros."""
    bins = bin_frequencies(fs, nperseg)
    position = np.asarray(rows_hz, dtype=float) / (bins[1] - bins[0])  # [F] in units of bins
    inside = (position >= 0) & (position <= len(bins) - 1)
    low = np.clip(np.floor(position), 0, len(bins) - 2).astype(np.int64)
    weight = position - low
    matrix = np.zeros((len(position), len(bins)))
    rows = np.flatnonzero(inside)
    matrix[rows, low[rows]] = 1 - weight[rows]
    matrix[rows, low[rows] + 1] += weight[rows]
    return matrix


# ----- parameters -----------------------------------------------------------------------------------------------

def inversion_params(params: Mapping, source: str = "params") -> dict:
    """The :data:`INVERSION_KEYS` of ``params`` (e.g. the HDF5 attributes the preprocessing writes) as plain Python
    numbers and booleans. A missing key is a one-line ``ValueError`` naming it and ``source``."""
    missing = [key for key in INVERSION_KEYS if key not in params or params[key] is None]
    if missing:
        raise ValueError(f"{source}: no {', '.join(map(repr, missing))}, needed to invert spectrograms to audio (all "
                         f"of: {', '.join(INVERSION_KEYS)}).")
    out = {key: float(params[key]) for key in ("fs", "min_freq", "max_freq", "max_dur", "spec_min_val", "spec_max_val")}
    out.update(nperseg=int(params["nperseg"]), noverlap=int(params["noverlap"]), mel=bool(params["mel"]),
               time_stretch=bool(params["time_stretch"]))
    if not 0 <= out["noverlap"] < out["nperseg"] or out["spec_max_val"] <= out["spec_min_val"] or out["fs"] <= 0:
        raise ValueError(f"{source}: need 0 <= noverlap < nperseg, spec_min_val < spec_max_val and fs > 0; got "
                         f"nperseg {out['nperseg']}, noverlap {out['noverlap']}, spec_min_val {out['spec_min_val']}, "
                         f"spec_max_val {out['spec_max_val']}, fs {out['fs']}.")
    return out


# ----- (3) the intensity scale ----------------------------------------------------------------------------------

def magnitude_from_scaled(scaled: torch.Tensor, spec_min_val: float, spec_max_val: float) -> torch.Tensor:
    """STFT magnitudes (scipy's ``"spectrum"`` scaling, of samples in [-1, 1]) from values on the image's scale:
    ``|Z| = exp(spec_min_val + v (spec_max_val - spec_min_val))`` for ``v > 0``, and ``|Z| = 0`` for ``v <= 0``.

    The floor: a pixel at 0 says only that the log-magnitude was at or below ``spec_min_val``, i.e. that ``|Z|`` lay
    anywhere in ``[0, exp(spec_min_val)]``. It becomes 0 (silence), not ``exp(spec_min_val)``: the image shows no
    energy there, and with the calibrated scale (``spec_min_val`` = the median pixel) about half of all pixels,
    including the margins around a syllable and the columns outside the recording, sit at the floor — filling them
    with ``exp(spec_min_val)`` would add a broadband hiss at the data set's median level to every syllable that the
    image does not show. The step from ``exp(spec_min_val)`` to 0 at the floor is the image's own. Pixels at 1
    (at or above ``spec_max_val``) are taken at ``spec_max_val``; the ``1e-12`` inside the preprocessing's logarithm
    is negligible at any scale a calibration gives."""
    log_magnitude = spec_min_val + scaled * (spec_max_val - spec_min_val)
    return torch.where(scaled > 0, torch.exp(log_magnitude), torch.zeros_like(scaled))


# ----- (2) frequency rows -> STFT bins ----------------------------------------------------------------------------

def nnls(matrix: torch.Tensor, targets: torch.Tensor, initial: torch.Tensor, iterations: int = 50) -> torch.Tensor:
    """Batched non-negative least squares ``argmin_{X >= 0} ||A X - Y||_F^2`` (each column of ``X`` its own problem)
    by accelerated projected gradient (FISTA: Beck & Teboulle 2009, "A fast iterative shrinkage-thresholding
    algorithm for linear inverse problems", SIAM J. Imaging Sciences 2(1)), from ``initial``:

        X_k = max(0, P_k - (G P_k - B) / L),   G = A^T A, B = A^T Y, L = the largest eigenvalue of G,
        t_{k+1} = (1 + sqrt(1 + 4 t_k^2)) / 2,  P_{k+1} = X_k + (t_k - 1) / t_{k+1} (X_k - X_{k-1}),

    with an adaptive restart (O'Donoghue & Candès 2015, "Adaptive restart for accelerated gradient schemes",
    Foundations of Computational Mathematics 15: ``t`` back to 1) of each problem whose momentum points uphill. The
    gradient lies in the row space of ``A``, so a component of ``initial`` in ``A``'s null space (e.g. a column of
    ``A`` that is all zeros) keeps its initial value: among several minimisers, the one nearest the initial guess in
    that sense. Unlike ``scipy.optimize.nnls`` (an active-set method, one problem at a time, which since SciPy 1.12
    sometimes stops at a suboptimal point: scipy/scipy#25389) it runs all columns at once on any device.

    Shapes: ``matrix [F, K]``, ``targets [..., F, T]``, ``initial [..., K, T]`` -> ``[..., K, T]``."""
    (rows, bins), batch, columns = matrix.shape, targets.shape[:-2], targets.shape[-1]
    targets = targets.reshape(-1, rows, columns).transpose(0, 1).reshape(rows, -1)  # [F, M]: every column a problem
    x = initial.reshape(-1, bins, columns).transpose(0, 1).reshape(bins, -1).clamp_min(0)  # [K, M]
    gram, rhs = matrix.T @ matrix, matrix.T @ targets  # [K, K], [K, M]
    step = 1.0 / torch.linalg.eigvalsh(gram.double())[-1].clamp_min(1e-12).item()
    previous, point, t = x, x, torch.ones_like(x[0])  # t: [M], one momentum sequence per problem
    for _ in range(iterations):
        x = (point - step * (gram @ point - rhs)).clamp_min(0)
        uphill = ((point - x) * (x - previous)).sum(dim=0) > 0  # [M]: restart these problems' momentum
        t = torch.where(uphill, torch.ones_like(t), t)
        t_next = (1 + torch.sqrt(1 + 4 * t * t)) / 2
        point = x + (t - 1) / t_next * (x - previous)
        previous, t = x, t_next
    return x.reshape(bins, -1, columns).transpose(0, 1).reshape(*batch, bins, columns)


def rows_to_bins(images: torch.Tensor, fs: float, nperseg: int, min_freq: float, max_freq: float, mel: bool,
                 iterations: int = 50) -> torch.Tensor:
    """The STFT bins ``[b, K, T]`` (``K = nperseg // 2 + 1``) on the image's scale whose interpolation onto the
    image's rows (:func:`row_interpolation`, exactly as the preprocessing interpolates) is nearest the image
    ``[b, F, T]`` in least squares, with every bin ``>= 0`` (at or above the floor): :func:`nnls` column by column.

    The scale's logarithm makes the interpolation linear here (the preprocessing interpolates log-magnitudes), and
    the floor makes non-negativity the natural constraint. Bins below ``min_freq`` or above ``max_freq`` (beyond the
    two next to the outermost rows) get 0; bins inside the band that no row touches (mel rows wider apart than the
    bins at high frequencies) keep the initial guess, the image's rows interpolated linearly onto the bins'
    frequencies, rather than becoming holes. From that guess 50 ``iterations`` bring the fitted rows within 2e-4
    (RMS; 0.02 at the worst pixel) of the converged fit on the tests' synthetic calls."""
    rows_hz = frequency_axis(min_freq, max_freq, images.shape[-2], mel)
    bins_hz = bin_frequencies(fs, nperseg)
    matrix = row_interpolation(rows_hz, fs, nperseg)  # [F, K]
    bins = images.new_zeros(*images.shape[:-2], len(bins_hz), images.shape[-1])  # [b, K, T]
    touched = np.flatnonzero(matrix.any(axis=0))
    if len(touched) == 0:  # the whole band above the Nyquist frequency: the image is all 0
        return bins
    band = slice(touched[0], touched[-1] + 1)  # the bins next to a row; the others stay 0
    guess = np.stack([np.interp(bins_hz[band], rows_hz, row, left=0.0, right=0.0) for row in np.eye(len(rows_hz))],
                     axis=1)  # [K_band, F]: the rows interpolated linearly onto the bins
    as_tensor = lambda a: torch.as_tensor(a, dtype=images.dtype, device=images.device)  # noqa: E731
    bins[..., band, :] = nnls(as_tensor(matrix[:, band]), images, as_tensor(guess) @ images, iterations)
    return bins


# ----- the time axis ----------------------------------------------------------------------------------------------

def _per_example(durations, count: int) -> np.ndarray:
    """Durations (a number, sequence, array or tensor) as ``[count]`` float seconds."""
    durations = durations.detach().cpu().numpy() if isinstance(durations, torch.Tensor) else durations
    return np.broadcast_to(np.asarray(durations, dtype=float), (count,))


def time_window(durations, max_dur: float, time_stretch: bool) -> tuple[np.ndarray, np.ndarray]:
    """The seconds the image's columns span and where the syllable starts in them, ``([b], [b])``, for syllables of
    ``durations`` seconds (longer ones count as ``max_dur``, as in the preprocessing).

    The preprocessing shows a duration ``d`` over ``s = sqrt(d max_dur)`` (``time_stretch``) or ``s = d`` of the
    ``max_dur`` window, the syllable centred, so the columns span ``d max_dur / s`` seconds of the recording:
    ``sqrt(d max_dur)`` with ``time_stretch``, else ``max_dur``; the syllable starts ``(span - d) / 2`` in."""
    d = np.minimum(np.atleast_1d(np.asarray(durations, dtype=float)), max_dur)
    if not np.all(d > 0):
        raise ValueError(f"Durations must be positive seconds; got {d[~(d > 0)][:3].tolist()}.")
    span = np.sqrt(d * max_dur) if time_stretch else np.full_like(d, max_dur)
    return span, (span - d) / 2


def columns_to_frames(scaled: torch.Tensor, spans: np.ndarray, fs: float, hop: int) -> tuple[torch.Tensor, np.ndarray]:
    """The image's columns ``[b, K, T]`` (evenly spaced over ``spans [b]`` seconds, first and last at the ends)
    interpolated linearly onto the STFT frames of a waveform of ``ceil(span fs)`` samples (frame ``n`` centred at
    ``n hop / fs``; ``n_samples // hop + 1`` frames). Returns ``([b, K, N] with N the most frames, zeros past an
    example's own, the samples [b])``."""
    samples = np.ceil(spans * fs - 1e-9).astype(np.int64)
    frames = samples // hop + 1
    columns = scaled.shape[-1]
    times = np.arange(frames.max())[None, :] * hop / fs  # [1, N]
    position = np.clip(times / spans[:, None] * (columns - 1), 0, columns - 1)  # [b, N] in units of columns
    low = np.minimum(np.floor(position), columns - 2).astype(np.int64)
    as_tensor = lambda a, dtype: torch.as_tensor(a, dtype=dtype, device=scaled.device)  # noqa: E731
    weight = as_tensor(position - low, scaled.dtype)[:, None, :]  # [b, 1, N]
    index = as_tensor(low, torch.int64)[:, None, :].expand(-1, scaled.shape[-2], -1)  # [b, K, N]
    out = (1 - weight) * scaled.gather(-1, index) + weight * scaled.gather(-1, index + 1)
    valid = as_tensor(np.arange(frames.max())[None, :] < frames[:, None], torch.bool)[:, None, :]  # [b, 1, N]
    return out * valid, samples


# ----- (1) phase retrieval ------------------------------------------------------------------------------------------

def _window(nperseg: int, like: torch.Tensor) -> torch.Tensor:
    """scipy's default window: the periodic Hann window (``"hann_periodic"``)."""
    dtype = like.real.dtype if like.is_complex() else like.dtype
    return torch.hann_window(nperseg, periodic=True, dtype=dtype, device=like.device)


def stft_magnitude(waveforms: torch.Tensor, nperseg: int, hop: int) -> torch.Tensor:
    """``|Z|`` of ``waveforms [b, n]`` as ``scipy.signal.stft`` computes it with the preprocessing's settings (periodic
    Hann window, zeros padded, ``scaling="spectrum"``: divided by ``sum(w)``), ``[b, nperseg // 2 + 1, n // hop + 1]``
    (scipy adds one frame when ``hop`` does not divide ``n``)."""
    window = _window(nperseg, waveforms)
    spectrum = torch.stft(waveforms, nperseg, hop, window=window, center=True, pad_mode="constant", return_complex=True)
    return spectrum.abs() / window.sum()


def griffin_lim(magnitudes: torch.Tensor, nperseg: int, hop: int, length: int | None = None, iterations: int = 100,
                momentum: float = 0.99, seed: int = 0) -> torch.Tensor:
    """Waveforms ``[b, length]`` whose STFT magnitudes (:func:`stft_magnitude`'s scaling) approach ``magnitudes
    [b, K, N]``, by the fast Griffin-Lim algorithm (Perraudin, Balazs & Søndergaard 2013, "A fast Griffin-Lim
    algorithm", IEEE WASPAA), from random phases (seeded):

        c_n = P_1(P_2(t_{n-1})),   t_n = c_n + alpha (c_n - c_{n-1}),

    with ``P_2(X) = S X / |X|`` (the given magnitudes ``S``), ``P_1(X) = STFT(ISTFT(X))`` (the nearest consistent
    STFT; ``torch.istft`` is the least-squares inverse of Griffin & Lim 1984, "Signal estimation from modified
    short-time Fourier transform", IEEE Trans. ASSP 32(2)) and ``alpha = momentum``; ``alpha = 0`` is Griffin-Lim
    itself. The output is ``ISTFT(P_2(t_N))``. ``length`` defaults to ``(N - 1) hop`` samples; it must give ``N``
    frames (``length // hop + 1 == N``)."""
    frames = magnitudes.shape[-1]
    length = (frames - 1) * hop if length is None else length
    if length // hop + 1 != frames:
        raise ValueError(f"{length} samples give {length // hop + 1} frames at hop {hop}, not the {frames} given.")
    window = _window(nperseg, magnitudes)
    target = magnitudes * window.sum()  # torch.stft's unnormalised scale
    analyse = lambda x: torch.stft(x, nperseg, hop, window=window, center=True, pad_mode="constant",  # noqa: E731
                                   return_complex=True)
    synthesise = lambda spectrum: torch.istft(spectrum, nperseg, hop, window=window, center=True,  # noqa: E731
                                              length=length)
    generator = torch.Generator().manual_seed(seed)
    angles = 2 * math.pi * torch.rand(magnitudes.shape, generator=generator, dtype=magnitudes.dtype)
    t = previous = torch.polar(torch.ones_like(angles), angles).to(magnitudes.device)  # [b, K, N] unit phases
    tiny = torch.finfo(magnitudes.dtype).tiny
    for _ in range(iterations):
        c = analyse(synthesise(target * t / (t.abs() + tiny)))
        t = c + momentum * (c - previous)
        previous = c
    return synthesise(target * t / (t.abs() + tiny))


def spectral_convergence(magnitudes: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``||S_hat - S||_F / ||S||_F`` per example over the last two dimensions (frequency, time), ``[...]``: 0 for a
    perfect match; the measure of Sturmel & Daudet 2011 ("Signal reconstruction from STFT magnitude: a state of the
    art", DAFx) and of Perraudin et al. 2013."""
    return torch.linalg.matrix_norm(magnitudes - reference) / torch.linalg.matrix_norm(reference)


# ----- the preprocessing, forward ---------------------------------------------------------------------------------

def audio_to_spectrogram(waveforms: torch.Tensor, params: Mapping, durations, shape: tuple[int, int]) -> torch.Tensor:
    """The preprocessing's images ``[b, F, T]`` (``shape = (F, T)``) of ``waveforms [b, n]`` that each span one
    image's time window (:func:`time_window` of ``durations``: the syllable starts at its offset), as
    ``syllable_spectrogram`` computes them with a recording that is the waveform and zeros around it: the STFT
    magnitudes (:func:`stft_magnitude`), ``log(|Z| + 1e-12)`` interpolated onto the rows (:func:`row_interpolation`)
    and onto the columns (linearly between frames), scaled and clipped to [0, 1]; rows above the Nyquist frequency
    are 0. Batched and on the waveforms' device: it measures an inversion (:func:`spectrogram_to_audio`)."""
    p = inversion_params(params)
    rows, columns = shape
    hop = p["nperseg"] - p["noverlap"]
    spans, _ = time_window(_per_example(durations, len(waveforms)), p["max_dur"], p["time_stretch"])
    padded = torch.nn.functional.pad(waveforms, (0, hop))  # [b, n + hop]: a frame at or after every column's time
    log_magnitude = torch.log(stft_magnitude(padded, p["nperseg"], hop) + 1e-12)  # [b, K, N]
    matrix = row_interpolation(frequency_axis(p["min_freq"], p["max_freq"], rows, p["mel"]), p["fs"], p["nperseg"])
    as_tensor = lambda a: torch.as_tensor(a, dtype=log_magnitude.dtype, device=waveforms.device)  # noqa: E731
    on_rows = as_tensor(matrix) @ log_magnitude  # [b, F, N]
    position = np.linspace(0.0, 1.0, columns)[None, :] * spans[:, None] * p["fs"] / hop  # [b, T] in frames
    low = np.floor(position).astype(np.int64)
    weight = as_tensor(position - low)[:, None, :]  # [b, 1, T]
    index = torch.as_tensor(low, device=waveforms.device)[:, None, :].expand(-1, rows, -1)  # [b, F, T]
    image = (1 - weight) * on_rows.gather(-1, index) + weight * on_rows.gather(-1, index + 1)
    image = ((image - p["spec_min_val"]) / (p["spec_max_val"] - p["spec_min_val"])).clamp(0, 1)
    return image * as_tensor(matrix.any(axis=1))[:, None]  # rows above the Nyquist frequency: 0


# ----- all of it ----------------------------------------------------------------------------------------------------

class InvertedAudio(NamedTuple):
    """What :func:`spectrogram_to_audio` returns."""

    waveforms: torch.Tensor  # [b, n] float, zeros past each example's own length
    sample_rate: float
    lengths: torch.Tensor  # [b] samples of each example (its image's time span)
    spectral_convergence: torch.Tensor  # [b] of the re-analysed sound's magnitudes at the image's pixels
    pixel_error: torch.Tensor  # [b] mean |re-analysed image - image|


def spectrogram_to_audio(images: torch.Tensor, params: Mapping, durations, iterations: int = 100,
                         momentum: float = 0.99, hop: int | None = None, nnls_iterations: int = 50,
                         seed: int = 0) -> InvertedAudio:
    """Sound from the preprocessing's spectrograms: ``images [b, F, T]`` or ``[b, 1, F, T]`` in [0, 1] (data or
    decoded) with ``params`` the preprocessing's parameters (the HDF5 attributes: :data:`INVERSION_KEYS`) and
    ``durations`` (seconds, one or ``[b]``) of the syllables they show.

    Steps: the NNLS bins of each column (:func:`rows_to_bins`), the columns interpolated onto the STFT frames of the
    image's time span (:func:`time_window`, :func:`columns_to_frames`), magnitudes (:func:`magnitude_from_scaled`:
    the floor is silence) and fast Griffin-Lim (:func:`griffin_lim`, ``iterations``, ``momentum``) with the
    preprocessing's window, scaling and hop. ``hop`` (samples; default the preprocessing's ``nperseg - noverlap``)
    may be smaller, since the magnitudes do not depend on it: more overlap gives the phase retrieval more
    redundancy, but the frames between the image's then carry interpolated magnitudes (README, "Hearing the
    spectrograms", for what that changes).

    Returns :class:`InvertedAudio`: waveforms ``[b, n]`` (float, on the images' device) of the image's whole time
    span (the syllable starts at :func:`time_window`'s offset), at the recording's level (samples in [-1, 1] where
    the original's were; re-analysed by the preprocessing they give its pixel values back), zero-padded to the
    longest; the sample rate; each one's length in samples; and how well each sound gives its image back when the
    preprocessing analyses it again (:func:`audio_to_spectrogram`): the spectral convergence of the linear
    magnitudes at the image's pixels (:func:`magnitude_from_scaled` of both images; NaN for an image that is all
    floor) and the mean absolute pixel difference.
    """
    p = inversion_params(params)
    if images.dim() == 4 and images.shape[1] == 1:
        images = images[:, 0]  # [b, F, T]
    if images.dim() != 3:
        raise ValueError(f"images must be [b, F, T] or [b, 1, F, T]; got shape {tuple(images.shape)}.")
    images = images.to(torch.float64 if images.dtype == torch.float64 else torch.float32).clamp(0, 1)
    durations = _per_example(durations, len(images))
    hop = p["nperseg"] - p["noverlap"] if hop is None else int(hop)
    bins = rows_to_bins(images, p["fs"], p["nperseg"], p["min_freq"], p["max_freq"], p["mel"],
                        nnls_iterations)  # [b, K, T]
    spans, _ = time_window(durations, p["max_dur"], p["time_stretch"])
    scaled, samples = columns_to_frames(bins, spans, p["fs"], hop)  # [b, K, N]
    magnitudes = magnitude_from_scaled(scaled, p["spec_min_val"], p["spec_max_val"])
    length = int(samples.max())
    waveforms = griffin_lim(magnitudes, p["nperseg"], hop, length, iterations, momentum, seed)  # [b, n]
    lengths = torch.as_tensor(samples, device=images.device)
    waveforms = waveforms * (torch.arange(length, device=images.device)[None, :] < lengths[:, None])
    again = audio_to_spectrogram(waveforms, p, durations, images.shape[-2:])  # [b, F, T]
    convergence = spectral_convergence(magnitude_from_scaled(again, p["spec_min_val"], p["spec_max_val"]),
                                       magnitude_from_scaled(images, p["spec_min_val"], p["spec_max_val"]))
    return InvertedAudio(waveforms, p["fs"], lengths, convergence, (again - images).abs().mean(dim=(-2, -1)))
