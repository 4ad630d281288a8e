"""Hear what a model of vocalization spectrograms generates: the decoded spectrograms of latent points, turned into
sound (:func:`lvm.numerics.spectrograms.spectrogram_to_audio`) and written as one WAV file with short gaps between
them, beside a PNG of the same spectrograms with kHz and ms axes.

    python -m lvm.tools.listen --ckpt CKPT --path 0.1 0.2 0.6 0.7 [--steps 8] --out traversal.wav
    python -m lvm.tools.listen --ckpt CKPT --points 0.1 0.2 0.5 0.5 --out points.wav
    python -m lvm.tools.listen --ckpt CKPT --grid 4 --rate 0.1 --out grid.wav

``--path`` takes the start and end points (``d`` coordinates each; on the torus the path goes the short way round),
``--points`` any number of points, ``--grid N`` an N x N grid over a 2-D latent plane (the torus's unit square, or
+-2 standard deviations of a Gaussian prior). A decoded image has no duration of its own: ``--duration`` (seconds),
else the median duration of the data set's syllables. ``--rate`` plays the sound at that fraction of its speed (the
WAV's sample rate is the recording's times ``rate``; pitch falls by the same factor), e.g. 0.1 to hear ultrasonic
calls. ``--data.init_args.*`` options change the datamodule's arguments (e.g. its ``root`` where the files moved).

A conditional model (``model.covariates``) decodes under ``--covariate KEY=VALUE`` (repeatable, e.g. ``--covariate
animal=bird2 --covariate duration=0.08``: the same latent points as that bird, or that long); a covariate not given
takes its reference value (the first category, the training mean).

In a notebook: ``sound = decoded_sound(model, datamodule, z, covariates={"animal": "bird2"})``
(:func:`decoded_sound`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from lvm.runs.usage import UsageError
from lvm.tools.arguments import data_overrides, run_command

__all__ = ["main", "latent_path", "latent_points_grid", "decoding_covariates", "decoded_sound", "write_wav"]


def latent_path(start, end, steps: int, periodic: bool) -> np.ndarray:
    """``steps`` points ``[steps, d]`` evenly spaced from ``start`` to ``end`` (both included); on the torus along the
    shortest way round, wrapped into [0, 1)."""
    start, end = np.asarray(start, dtype=float), np.asarray(end, dtype=float)
    delta = end - start
    if periodic:
        delta = delta - np.round(delta)  # the nearest image of the end point
    path = start + np.linspace(0.0, 1.0, steps)[:, None] * delta  # [steps, d]
    return np.mod(path, 1.0) if periodic else path


def latent_points_grid(per_side: int, dim: int, periodic: bool) -> np.ndarray:
    """An ``per_side`` x ``per_side`` grid ``[per_side^2, 2]`` over a 2-D latent plane: cell centres of the unit square
    on the torus, +-2 around 0 otherwise."""
    if dim != 2:
        raise UsageError(f"--grid covers a 2-D latent plane; this model's latent space is {dim}-D (use --points).")
    axis = (np.arange(per_side) + 0.5) / per_side if periodic else np.linspace(-2.0, 2.0, per_side)
    first, second = np.meshgrid(axis, axis, indexing="xy")
    return np.stack([first.ravel(), second[::-1].ravel()], axis=1)  # rows from the top, as a plot reads


def _check_audio(datamodule, ckpt: str) -> None:
    if not hasattr(datamodule, "inversion_params"):
        raise UsageError(f"{ckpt} was trained on {type(datamodule).__name__}, not on spectrograms of recordings "
                         "(lvm.datamodules.VocalizationsDataModule): there is no sound to turn its images into.")


def _duration(datamodule, given: float | None) -> float:
    if given is not None:
        if not given > 0:
            raise UsageError(f"--duration must be > 0 seconds; got {given}.")
        return float(given)
    durations = getattr(datamodule, "durations", None)
    if durations is None or not len(durations):
        raise UsageError("The data set records no syllable durations (onsets and offsets); pass --duration SECONDS.")
    return float(np.median(durations))


def decoding_covariates(model, given: dict | None):
    """The covariate codes ``[1, C]`` a conditional model decodes under: the raw values ``given`` (``{key: value}``,
    e.g. ``{"animal": "bird2"}``), each covariate not given at its reference value (first category, training mean);
    None for an unconditional model, which refuses covariates. A key the model has not, or a category training never
    saw, is a :class:`lvm.runs.usage.UsageError`."""
    from lvm.covariates import CovariateError

    try:
        return model.decoding_codes(dict(given or {}), 1)
    except CovariateError as error:
        raise UsageError(str(error)) from None


def decoded_sound(model, datamodule, z, duration: float | None = None, covariates: dict | None = None, **inversion):
    """The sound of the decoded spectrograms at latent points ``z`` ``[n, d]``: an
    :class:`lvm.numerics.spectrograms.InvertedAudio` (waveforms ``[n, samples]``, sample rate, lengths, and how well
    each sound gives its image back), and the decoded images ``[n, 1, F, T]``. ``duration`` (seconds) is the
    syllables' length (default: the data set's median); a conditional model decodes under ``covariates``
    (``{key: raw value}``, the others at their reference: :func:`decoding_covariates`); ``inversion`` passes options
    to :func:`~lvm.numerics.spectrograms.spectrogram_to_audio` (e.g. ``iterations``)."""
    import torch

    from lvm.numerics.spectrograms import spectrogram_to_audio

    datamodule.setup("fit")
    params = datamodule.inversion_params()
    z = torch.as_tensor(np.asarray(z, dtype=np.float32), device=model.device)
    codes = decoding_covariates(model, covariates)  # [1, C] or None
    with torch.no_grad():
        images = model.decode(z, codes).float().cpu()  # [n, 1, F, T]
    return spectrogram_to_audio(images, params, _duration(datamodule, duration), **inversion), images


def write_wav(path: Path, waveforms, lengths, sample_rate: float, gap: float = 0.2) -> float:
    """The sounds ``[n, samples]`` (each its first ``lengths[i]`` samples) one after another with ``gap`` seconds of
    silence between them, as 16-bit PCM at ``sample_rate`` (rounded to a whole number of Hz), peak-normalised to
    0.9 of full scale; written to a partial file first, then moved into place. Returns the file's duration (s)."""
    from scipy.io import wavfile

    rate = int(round(sample_rate))
    silence = np.zeros(int(round(gap * rate)), dtype=np.float64)
    pieces = []
    for wave, length in zip(np.asarray(waveforms, dtype=np.float64), np.asarray(lengths)):
        pieces += [wave[: int(length)], silence]
    signal = np.concatenate(pieces[:-1]) if pieces else np.zeros(0)
    peak = np.abs(signal).max() if len(signal) else 0.0
    pcm = (np.zeros_like(signal) if peak == 0 else 0.9 * signal / peak) * 32767
    partial = path.with_name(f".{path.name}.partial")
    wavfile.write(partial, rate, pcm.round().astype(np.int16))
    partial.replace(path)
    return len(signal) / rate


def _covariate_options(options: list[str]) -> dict[str, str]:
    """``--covariate KEY=VALUE`` options as ``{key: value}`` (values as text: the covariates encode them)."""
    given = {}
    for option in options:
        key, equals, value = option.partition("=")
        if not equals or not key or not value:
            raise UsageError(f"--covariate {option}: write KEY=VALUE, e.g. --covariate animal=bird2.")
        if key in given:
            raise UsageError(f"--covariate names {key} twice.")
        given[key] = value
    return given


def _points(args, dim: int, periodic: bool) -> np.ndarray:
    if sum(option is not None for option in (args.path, args.points, args.grid)) != 1:
        raise UsageError("give one of --path START END, --points Z ..., --grid N.")
    if args.grid is not None:
        return latent_points_grid(args.grid, dim, periodic)
    values = np.asarray(args.path if args.path is not None else args.points, dtype=float)
    if len(values) % dim:
        raise UsageError(f"the latent space is {dim}-D: give the coordinates {dim} per point; got {len(values)} numbers.")
    points = values.reshape(-1, dim)
    if args.path is not None:
        if len(points) != 2:
            raise UsageError(f"--path takes two points (start and end, {2 * dim} numbers); got {len(points)}.")
        if args.steps < 2:
            raise UsageError(f"--steps must be >= 2; got {args.steps}.")
        return latent_path(points[0], points[1], args.steps, periodic)
    return points


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lvm.tools.listen", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, help="a checkpoint of a model of vocalization spectrograms")
    parser.add_argument("--out", required=True, help="the WAV file (a PNG of the spectrograms is written beside it)")
    parser.add_argument("--path", nargs="+", type=float, help="start and end points, d coordinates each")
    parser.add_argument("--steps", type=int, default=8, help="points along --path, ends included (default 8)")
    parser.add_argument("--points", nargs="+", type=float, help="latent points, d coordinates each")
    parser.add_argument("--grid", type=int, help="an N x N grid over a 2-D latent plane")
    parser.add_argument("--duration", type=float, help="seconds per sound (default: the data set's median)")
    parser.add_argument("--gap", type=float, default=0.2, help="seconds of silence between sounds (default 0.2)")
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed, e.g. 0.1 for ultrasonic calls")
    parser.add_argument("--iterations", type=int, default=100, help="Griffin-Lim iterations (default 100)")
    parser.add_argument("--covariate", action="append", default=[], metavar="KEY=VALUE",
                        help="a conditional model's covariate to decode under, e.g. animal=bird2 (repeatable; the "
                             "others at their reference: first category, training mean)")
    args, rest = parser.parse_known_args(argv)

    def listen() -> None:
        from lvm.runs.files import load_checkpoint
        from lvm.runs.threads import limit_threads

        out = Path(args.out)
        if out.suffix.lower() != ".wav":
            raise UsageError(f"--out {args.out}: write a .wav file.")
        if not args.rate > 0:
            raise UsageError(f"--rate must be > 0; got {args.rate}.")
        limit_threads()
        model, datamodule = load_checkpoint(args.ckpt, data_overrides(rest))
        _check_audio(datamodule, args.ckpt)
        z = _points(args, model.prior.dim, model.prior.periodic)
        covariates = _covariate_options(args.covariate)
        try:
            sound, images = decoded_sound(model, datamodule, z, args.duration, covariates,
                                          iterations=args.iterations)
        except ValueError as error:  # e.g. files without the parameters the inversion needs
            raise UsageError(str(error)) from None
        out.parent.mkdir(parents=True, exist_ok=True)
        seconds = write_wav(out, sound.waveforms.cpu().numpy(), sound.lengths.cpu().numpy(),
                            sound.sample_rate * args.rate, args.gap)
        figure = out.with_suffix(".png")
        _plot(figure, images, z, getattr(datamodule, "image_axes", None), sound)
        quality = np.nanmedian(sound.spectral_convergence.cpu().numpy())
        print(f"Wrote {len(z)} sounds ({seconds:.2f} s at {args.rate:g}x speed) to {out} and their spectrograms to "
              f"{figure}; median spectral convergence of the re-analysed sounds {quality:.3f}.")

    run_command(listen)


def _plot(path: Path, images, z: np.ndarray, axes, sound) -> None:
    from lvm.plotting.figures import plot_image_grid

    titles = [", ".join(f"{value:.2f}" for value in point) for point in z]
    per_row = min(len(z), 8)
    figure = plot_image_grid(images, per_row, f"Decoded spectrograms at {len(z)} latent points (z in the titles), "
                             f"played in this order", axes, titles)
    partial = path.with_name(f".{path.name}.partial.png")
    figure.savefig(partial, dpi=120, bbox_inches="tight")
    partial.replace(path)


if __name__ == "__main__":
    main()
