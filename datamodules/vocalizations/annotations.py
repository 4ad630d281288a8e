"""Import of existing annotations into the table of syllables ``file,onset,offset`` (seconds) that
:mod:`lvm.datamodules.vocalizations.segment` also writes by segmenting recordings.

:func:`read_annotations` reads Sonic Visualiser layers (``.svl``/``.xml`` exports of region, note or
box layers, or bzip2-compressed ``.sv`` sessions), Raven selection tables, Audacity label tracks and plain
CSV files into the same table, with ``label``, ``low_freq`` and ``high_freq`` (Hz) when the files have them
(and, for Raven and CSV, their other columns). The readers are our own, a few lines of pandas or
``xml.etree`` each: crowsetta (5.1.2) has no Sonic Visualiser format, and its ``raven`` and ``aud-seq``
readers reject common valid files through their pandera schemas: Raven tables whose frequencies are
whole numbers (as BirdNET writes them; crowsetta issue #301) and Audacity regions without a label, the
usual result of marking calls, or with a frequency range; the tests check our readers against crowsetta's
on its example files. The audio file of an annotation file is its stem + ``.wav`` (``bird1.txt`` ->
``bird1.wav``; Raven's ``bird1.Table.1.selections.txt`` -> ``bird1.wav``) unless a ``file`` / ``Begin
File`` column or ``audio_files`` says otherwise; :func:`match_audio` matches each name to the audio file of
that stem in a folder of recordings.
"""

from __future__ import annotations

import bz2
import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["ANNOTATION_FORMATS", "COLUMNS", "read_annotations", "annotation_files", "match_audio"]

ANNOTATION_FORMATS = {"sonic-visualiser": (".svl", ".xml", ".sv"), "raven": (".txt",), "audacity": (".txt",),
                      "csv": (".csv",)}
COLUMNS = ["file", "onset", "offset"]
RAVEN_COLUMNS = ["Selection", "View", "Channel", "Begin Time (s)", "End Time (s)", "Low Freq (Hz)", "High Freq (Hz)",
                 "Begin File", "File Offset (s)", "Annotation"]


def _default_audio_name(path: Path) -> str:
    """``bird1.txt`` -> ``bird1.wav``; Raven's ``bird1.Table.1.selections.txt`` -> ``bird1.wav``."""
    return re.sub(r"\.Table\.\d+\.selections$", "", path.stem) + ".wav"


def _read_sonic_visualiser(path: Path) -> pd.DataFrame:
    """Region, note and box layers of a Sonic Visualiser layer export (``.svl``/``.xml``) or session
    (``.sv``, bzip2-compressed): ``<model sampleRate=... dataset=ID>`` and ``<dataset id=ID>`` holding
    ``<point frame=... duration=... [value=... extent=...] label=...>`` (frames in samples; for boxes,
    value and extent are the lowest frequency and the height in Hz)."""
    data = path.read_bytes()
    if data.startswith(b"BZh"):
        data = bz2.decompress(data)
    root = ElementTree.fromstring(data)
    datasets = {element.get("id"): element for element in root.iter("dataset")}
    models = [model for model in root.iter("model") if model.get("dataset") in datasets]
    if not models:
        raise ValueError(f"{path}: no Sonic Visualiser annotation layer (<model dataset=...> and <dataset>) found; "
                         "export a region, note or box layer with File > Export Annotation Layer as .svl.")
    rows, instants = [], 0
    for model in models:
        rate, box = float(model.get("sampleRate")), model.get("subtype") == "box"
        for point in datasets[model.get("dataset")].iter("point"):
            if point.get("duration") is None:  # a time instant, not an interval
                instants += 1
                continue
            onset = float(point.get("frame")) / rate
            row = {"onset": onset, "offset": onset + float(point.get("duration")) / rate,
                   "label": point.get("label", "")}
            if box:
                row["low_freq"] = float(point.get("value"))
                row["high_freq"] = row["low_freq"] + float(point.get("extent"))
            rows.append(row)
    if instants and not rows:
        raise ValueError(f"{path}: holds only time instants, which have no duration; annotate calls with a region, "
                         "note or box layer.")
    return pd.DataFrame(rows, columns=None if rows else ["onset", "offset"])


def _read_raven(path: Path) -> pd.DataFrame:
    """A Raven selection table: tab-separated, with 'Begin Time (s)', 'End Time (s)', maybe 'Low Freq (Hz)',
    'High Freq (Hz)', 'Annotation', 'View' (one row per view a selection appears in), and for tables over
    several recordings 'Begin File' and 'File Offset (s)' (the onset within that file)."""
    table = pd.read_csv(path, sep="\t")
    if not {"Begin Time (s)", "End Time (s)"} <= set(table.columns):
        raise ValueError(f"{path}: not a Raven selection table (a tab-separated table with columns 'Begin Time (s)' "
                         f"and 'End Time (s)'); its columns are {list(table.columns)}.")
    if "View" in table and table["View"].astype(str).str.startswith("Spectrogram").any():
        table = table[table["View"].astype(str).str.startswith("Spectrogram")]
    onset, offset = table["Begin Time (s)"].to_numpy(float), table["End Time (s)"].to_numpy(float)
    if "File Offset (s)" in table:  # Begin Time counts from the start of a list of files
        start = table["File Offset (s)"].to_numpy(float)
        onset, offset = start, start + offset - onset
    result = pd.DataFrame({"onset": onset, "offset": offset})
    if "Begin File" in table:
        result.insert(0, "file", table["Begin File"].astype(str).to_numpy())
    if "Annotation" in table:
        result["label"] = table["Annotation"].fillna("").astype(str).to_numpy()
    for column, name in (("Low Freq (Hz)", "low_freq"), ("High Freq (Hz)", "high_freq")):
        if column in table:
            result[name] = table[column].to_numpy(float)
    for column in table.columns.difference(RAVEN_COLUMNS, sort=False):  # measurements, a 'Species' column...
        result[column] = table[column].to_numpy()
    return result


def _read_audacity(path: Path) -> pd.DataFrame:
    """An Audacity label track export: lines ``start<TAB>end<TAB>label`` (s; the label may be empty), each
    maybe followed by ``\\<TAB>low<TAB>high`` (Hz) when the label has a frequency range."""
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t", 2)
        if fields[0] == "\\" and rows and len(fields) == 3:
            rows[-1].update(low_freq=float(fields[1]), high_freq=float(fields[2]))
        elif len(fields) >= 2:
            rows.append({"onset": float(fields[0]), "offset": float(fields[1]),
                         "label": fields[2].strip() if len(fields) == 3 else ""})
        else:
            raise ValueError(f"{path}, line {number}: expected start<TAB>end<TAB>label; got {line!r}.")
    return pd.DataFrame(rows, columns=None if rows else ["onset", "offset"])


def _read_csv(path: Path) -> pd.DataFrame:
    table = pd.read_csv(path)
    missing = {"onset", "offset"} - set(table.columns)
    if missing:
        raise ValueError(f"{path}: missing columns {sorted(missing)}; expected file,onset,offset (seconds).")
    return table


READERS = {"sonic-visualiser": _read_sonic_visualiser, "raven": _read_raven, "audacity": _read_audacity,
           "csv": _read_csv}


def _guess_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in ANNOTATION_FORMATS["sonic-visualiser"]:
        return "sonic-visualiser"
    if suffix == ".csv":
        return "csv"
    if suffix == ".txt":
        with open(path) as handle:
            return "raven" if "Begin Time (s)" in handle.readline() else "audacity"
    raise ValueError(f"{path}: cannot tell the annotation format from the suffix {suffix!r}; give "
                     f"annotation_format, one of {sorted(ANNOTATION_FORMATS)}.")


def annotation_files(paths: list[str], format: str | None) -> list[Path]:
    """Annotation files; a folder stands for its files with the format's suffixes."""
    suffixes = ANNOTATION_FORMATS[format] if format else tuple(s for v in ANNOTATION_FORMATS.values() for s in v)
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"Annotation file {path.resolve()} does not exist.")
    return files


def read_annotations(paths: list[str] | str, format: str | None = None,
                     audio_files: list[str] | None = None) -> pd.DataFrame:
    """Read annotation files (or folders of them) into one table ``file, onset, offset`` (s) with ``label``
    and other columns when the files have them, sorted by file and onset.

    Args:
        paths: annotation files; a folder stands for its files with the format's suffixes.
        format: one of ``"sonic-visualiser"``, ``"raven"``, ``"audacity"``, ``"csv"``; ``None``: guessed
            from each file (``.svl``/``.xml``/``.sv``, ``.csv``, ``.txt`` with or without a Raven header).
        audio_files: the audio file of each annotation file, in order; default: the ``file`` or
            ``Begin File`` column when there is one, else the annotation file's stem + ``.wav``.
    """
    if format is not None and format not in READERS:
        raise ValueError(f"Unknown annotation format {format!r}; choose one of {sorted(READERS)}.")
    files = annotation_files([paths] if isinstance(paths, (str, Path)) else list(paths), format)
    if not files:
        raise FileNotFoundError(f"No annotation file in {paths}.")
    if audio_files is not None and len(audio_files) != len(files):
        raise ValueError(f"Got {len(audio_files)} audio_files for {len(files)} annotation files; give one per "
                         "annotation file, in the same order.")
    tables = []
    for index, path in enumerate(files):
        kind = format or _guess_format(path)
        try:
            table = READERS[kind](path)
            onset, offset = table["onset"].to_numpy(float), table["offset"].to_numpy(float)
        except Exception as error:  # malformed XML, pandas' parser errors, times that are not numbers...
            if isinstance(error, ValueError) and str(path) in str(error):
                raise
            raise ValueError(f"{path}: cannot be read as {kind} annotations ({type(error).__name__}: {error}).") \
                from error
        if audio_files is not None:
            table["file"] = audio_files[index]
        elif "file" not in table:
            table.insert(0, "file", _default_audio_name(path))
        bad = ~(np.isfinite(onset) & np.isfinite(offset) & (onset >= 0) & (offset > onset))
        if bad.any():
            raise ValueError(f"{path}: {bad.sum()} annotations without 0 <= onset < offset (rows "
                             f"{np.flatnonzero(bad)[:5].tolist()}); fix or remove them.")
        tables.append(table.astype({"onset": float, "offset": float}))
    table = pd.concat(tables, ignore_index=True)
    table = table[COLUMNS + [c for c in table.columns if c not in COLUMNS]]
    return table.sort_values(["file", "onset"], ignore_index=True, kind="stable")


def match_audio(table: pd.DataFrame, audio_dir: Path, recordings: list[Path]) -> pd.DataFrame:
    """Replace each ``file`` by the path, relative to ``audio_dir``, of the audio file of that name there,
    or else of that stem among ``recordings``, the audio files under ``audio_dir`` (``bird1.wav`` may be
    ``sub/bird1.flac``)."""
    root = Path(audio_dir)
    by_stem: dict[str, list[str]] = {}
    for path in recordings:
        by_stem.setdefault(path.stem, []).append(path.relative_to(root).as_posix())
    names = {}
    for name in table["file"].unique():
        if (root / name).is_file():
            names[name] = name
            continue
        found = by_stem.get(Path(name).stem, [])
        if len(found) != 1:
            problem = f"several audio files {found}" if found else "no audio file"
            raise FileNotFoundError(f"Annotations for {name}: {problem} of that name under {root.resolve()}; rename "
                                    "the annotation files or give audio_files.")
        names[name] = found[0]
    return table.assign(file=table["file"].map(names))
