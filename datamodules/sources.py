"""Readers of a scientist's own data files, one per format, behind one interface (:class:`Source`): the number of
rows, the shape of one row, ``read(rows)`` of any rows as float32, per-row metadata and, where the format has them,
row ids. :func:`open_source` picks the reader from the path.

* ``.npy``: memory-mapped (``np.load(mmap_mode="r")``), so a file larger than the memory trains; rows are read
  per batch. Any trailing shape (``[N, D]``, ``[N, C, H, W]``).
* ``.npz``: the array ``key`` (or the only array); other 1-D arrays of length N become metadata.
* ``.csv`` / ``.tsv`` / ``.parquet``: the feature columns (a list, a prefix, or every numeric column); the other
  columns become metadata.
* ``.h5`` / ``.hdf5``: the dataset ``key`` (or the only one with two or more dimensions), read lazily row by row
  (worker-safe: each process opens its own handle); 1-D datasets of length N become metadata.
* ``.h5ad`` (AnnData, the optional dependency ``anndata``): ``X`` or the layer ``key``, dense or sparse (sparse rows
  are made dense a batch at a time); the ``obs`` columns and ``obs_names`` (the ids) become metadata.
* a folder of images (``.png``, ``.jpg``/``.jpeg``, ``.tif``/``.tiff``, found recursively, in sorted order): grey or
  RGB, resized to ``image_size``, values in [0, 1] (8- and 16-bit); the relative path (the id) and the sub-folder
  become metadata.

Errors are ``ValueError`` / ``FileNotFoundError`` / ``KeyError`` whose message names the file and what to do.
"""

from __future__ import annotations

import functools
from pathlib import Path

import h5py
import numpy as np

from .base import npz_array

__all__ = ["Source", "open_source", "TABLE_SUFFIXES", "IMAGE_SUFFIXES", "metadata_array"]

TABLE_SUFFIXES = (".csv", ".tsv", ".parquet")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
FORMATS = ".npy, .npz, .csv, .tsv, .parquet, .h5/.hdf5, .h5ad or a folder of images"


def metadata_array(values) -> np.ndarray:
    """A column as a 1-D NumPy array: numbers stay numbers; text, categories and mixed objects become str."""
    array = np.asarray(values)
    if array.dtype.kind in "biuf":
        return array
    if array.dtype.kind == "S":
        return np.char.decode(array, "utf-8")
    return np.asarray([str(value) for value in array], dtype=str)


class Source:
    """One data file's rows. ``shape`` is one row's shape; ``metadata`` maps names to 1-D arrays of length ``n``;
    ``ids`` (or ``None``) names each row for joining a metadata table; ``where(row, flat_index)`` says where a value
    is in the user's terms (a table's column name, an array's index)."""

    path: Path
    n: int
    shape: tuple[int, ...]
    metadata: dict[str, np.ndarray]
    ids: np.ndarray | None = None

    def read(self, rows: np.ndarray) -> np.ndarray:
        """Rows ``rows`` (any order, repeats allowed) as float32 ``[len(rows), *shape]``."""
        raise NotImplementedError

    def where(self, row: int, flat_index: int) -> str:
        index = np.unravel_index(flat_index, self.shape)
        return f"row {row}, index {list(map(int, index)) if len(index) > 1 else int(index[0])}"

    def __getstate__(self):  # DataLoader workers open their own file handles
        state = dict(self.__dict__)
        state.pop("_handle", None)
        return state


class ArraySource(Source):
    """An array in memory or memory-mapped (``.npy``, ``.npz``, a table's feature columns, a dense ``.h5ad``)."""

    def __init__(self, path: Path, array, metadata: dict | None = None, ids=None, columns: list[str] | None = None):
        if array.ndim < 2:
            raise ValueError(f"{path}: the data array has shape {list(array.shape)}; it needs one row per example "
                             "(shape [N, D] or [N, C, H, W]).")
        if array.dtype.kind not in "biuf":
            raise ValueError(f"{path}: the data array has dtype {array.dtype}, not numbers; save numeric values.")
        self.path, self.array, self.n, self.shape = path, array, int(array.shape[0]), tuple(int(s) for s in array.shape[1:])
        self.metadata, self.ids, self.columns = dict(metadata or {}), ids, columns

    def read(self, rows):
        return np.asarray(self.array[np.asarray(rows)], dtype=np.float32)

    def where(self, row, flat_index):
        if self.columns is not None:
            return f"row {row}, column {self.columns[flat_index]!r}"
        return super().where(row, flat_index)


class SparseSource(Source):
    """A SciPy sparse matrix (a sparse ``.h5ad``), made dense a batch of rows at a time."""

    def __init__(self, path: Path, matrix, metadata: dict, ids):
        self.path, self.matrix, self.n, self.shape = path, matrix.tocsr(), matrix.shape[0], (matrix.shape[1],)
        self.metadata, self.ids = metadata, ids

    def read(self, rows):
        return np.asarray(self.matrix[np.asarray(rows)].toarray(), dtype=np.float32)


class HDF5Source(Source):
    """A dataset of an HDF5 file, read lazily (h5py reads increasing indices: rows are sorted, read, put back)."""

    def __init__(self, path: Path, key: str | None):
        with h5py.File(path, "r") as handle:
            arrays = {name: item for name, item in handle.items() if isinstance(item, h5py.Dataset)}
            if key is None:
                candidates = [name for name, item in arrays.items() if item.ndim >= 2]
                if len(candidates) != 1:
                    raise ValueError(f"{path}: name the data set with data.init_args.key (datasets of two or more "
                                     f"dimensions: {candidates or 'none'}).")
                key = candidates[0]
            if key not in arrays:
                raise KeyError(f"{path}: no dataset {key!r}; it has {sorted(arrays)} (set data.init_args.key).")
            data = arrays[key]
            if data.ndim < 2 or data.dtype.kind not in "biuf":
                raise ValueError(f"{path}: dataset {key!r} has shape {list(data.shape)} and dtype {data.dtype}; it needs "
                                 "numbers, one row per example ([N, D] or [N, C, H, W]).")
            self.n, self.shape = int(data.shape[0]), tuple(int(s) for s in data.shape[1:])
            self.metadata = {name: metadata_array(item[()]) for name, item in arrays.items()
                             if name != key and item.shape == (self.n,)}
        self.path, self.key, self.ids = path, key, None

    def read(self, rows):
        rows = np.asarray(rows)
        unique, inverse = np.unique(rows, return_inverse=True)
        if getattr(self, "_handle", None) is None:
            self._handle = h5py.File(self.path, "r")
        return np.asarray(self._handle[self.key][unique], dtype=np.float32)[inverse]


class ImageSource(Source):
    """A folder of images, decoded and resized once into memory (float32 in [0, 1])."""

    def __init__(self, path: Path, image_size: list[int] | None, channels: int | None):
        from PIL import Image

        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise ValueError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder or below; point "
                             "data.init_args.path at the folder that holds them.")
        with Image.open(files[0]) as first:
            size = tuple(image_size) if image_size else (first.height, first.width)
            channels = channels or (3 if first.mode in ("RGB", "RGBA", "P", "CMYK", "YCbCr") else 1)
        if channels not in (1, 3) or len(size) != 2:
            raise ValueError(f"{path}: images are read as 1 (grey) or 3 (RGB) channels of image_size [height, width]; "
                             f"got channels={channels}, image_size={list(size)}.")
        images = np.empty((len(files), channels, *size), dtype=np.float32)
        for i, file in enumerate(files):
            try:
                with Image.open(file) as image:
                    images[i] = _image_array(image, channels, size)
            except OSError as error:
                raise ValueError(f"{file}: not a readable image ({error}); remove it or convert it.") from None
        relative = [str(file.relative_to(path)) for file in files]
        self.path, self.array, self.n, self.shape = path, images, len(files), images.shape[1:]
        self.ids = np.asarray(relative, dtype=str)
        self.metadata = {"path": self.ids, "folder": np.asarray([str(Path(r).parent) for r in relative], dtype=str)}

    def read(self, rows):
        return self.array[np.asarray(rows)]

    def where(self, row, flat_index):
        return f"image {self.ids[row]}"


def _image_array(image, channels: int, size: tuple[int, int]) -> np.ndarray:
    """``[channels, H, W]`` float32 in [0, 1] of a PIL image, scaled by its bit depth (8 or 16 bits; float images as
    they are) and resized in floating point, so 8- and 16-bit copies of one image agree."""
    from PIL import Image

    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float32)
        depth = 1.0 if image.mode == "F" else 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        planes = [values / depth] * channels  # [H, W] each
    else:
        converted = np.asarray(image.convert("L" if channels == 1 else "RGB"), dtype=np.float32) / 255.0
        planes = [converted] if channels == 1 else list(converted.transpose(2, 0, 1))
    resized = [np.asarray(Image.fromarray(plane).resize(size[::-1], Image.BILINEAR), dtype=np.float32) for plane in planes]
    return np.clip(np.stack(resized), 0.0, 1.0)  # [channels, H, W]


def read_table(path: Path):
    """The whole table (``.csv``, ``.tsv`` or ``.parquet``), or a ``ValueError`` naming the file. Not cached: a data
    table is read once through the cached :func:`open_source`, a metadata table once by the datamodule."""
    import pandas as pd

    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
    except (ValueError, OSError, pd.errors.ParserError) as error:
        raise ValueError(f"{path}: not a readable {suffix[1:]} table ({str(error).splitlines()[0]}).") from None


def _table_source(path: Path, features, id_column: str | None) -> ArraySource:
    table = read_table(path)
    if isinstance(features, str):
        columns = [c for c in table.columns if str(c).startswith(features)]
        if not columns:
            raise ValueError(f"{path}: no column starts with {features!r} (data.init_args.features); the columns are "
                             f"{list(map(str, table.columns))[:20]}.")
    elif features:
        missing = [c for c in features if c not in table.columns]
        if missing:
            raise KeyError(f"{path}: no column(s) {missing} (data.init_args.features); the columns are "
                           f"{list(map(str, table.columns))[:20]}.")
        columns = list(features)
    else:
        columns = [c for c in table.columns if table[c].dtype.kind in "biuf" and c != id_column]
        if not columns:
            raise ValueError(f"{path}: no numeric column to use as features; name them with data.init_args.features.")
    text = [str(c) for c in columns if table[c].dtype.kind not in "biuf"]
    if text:
        examples = {c: next((v for v in table[c] if isinstance(v, str)), table[c].iloc[0]) for c in text[:3]}
        raise ValueError(f"{path}: feature column(s) {text} are not numeric (e.g. {examples}); list only numeric "
                         "columns in data.init_args.features, or clean those values.")
    values = table[columns].to_numpy(dtype=np.float64 if any(table[c].dtype.kind == "f" for c in columns) else None)
    metadata = {str(c): metadata_array(table[c]) for c in table.columns if c not in columns}
    ids = metadata.get(id_column) if id_column else None
    return ArraySource(path, values, metadata, ids, [str(c) for c in columns])


def _h5ad_source(path: Path, key: str | None) -> Source:
    try:
        import anndata
    except ImportError:
        raise ValueError(f"{path}: reading .h5ad files needs the optional dependency anndata: "
                         "pip install 'lvm[anndata]' (or pip install anndata).") from None
    try:
        adata = anndata.read_h5ad(path)
    except (OSError, KeyError, ValueError) as error:
        raise ValueError(f"{path}: not a readable AnnData file ({str(error).splitlines()[0]}).") from None
    if key in (None, "X"):
        matrix = adata.X
    elif key in adata.layers:
        matrix = adata.layers[key]
    else:
        raise KeyError(f"{path}: no layer {key!r}; it has X and the layers {sorted(adata.layers)} (data.init_args.key).")
    if matrix is None:
        raise ValueError(f"{path}: X is empty; name a layer with data.init_args.key ({sorted(adata.layers)}).")
    ids = np.asarray(adata.obs_names, dtype=str)
    metadata = {"obs_name": ids, **{str(c): metadata_array(adata.obs[c]) for c in adata.obs.columns}}
    if hasattr(matrix, "tocsr"):
        return SparseSource(path, matrix, metadata, ids)
    return ArraySource(path, np.asarray(matrix), metadata, ids)


def _npz_source(path: Path, key: str | None) -> ArraySource:
    with np.load(path, allow_pickle=False) as archive:
        names = list(archive.files)
        if key is None:
            if len(names) != 1:
                raise ValueError(f"{path}: holds the arrays {names}; name the data with data.init_args.key.")
            key = names[0]
        if key not in names:
            raise KeyError(f"{path}: no array {key!r}; it has {names} (data.init_args.key).")
        data = npz_array(archive, key, path)
        metadata = {}
        for name in names:
            if name != key:
                value = npz_array(archive, name, path)
                if value.shape == (len(data),):
                    metadata[name] = metadata_array(value)
    return ArraySource(path, data, metadata)


def open_source(path: Path, key: str | None = None, features=None, id_column: str | None = None,
                image_size: list[int] | None = None, channels: int | None = None) -> Source:
    """The reader of ``path`` by its suffix (a folder: images). The last two opened are cached (for the file's
    modification time and size), so the datamodule the CLI builds to read the data's shape and the run's own one
    read a table, an AnnData file or an image folder once."""
    if not path.exists():
        raise FileNotFoundError(f"data.init_args.path {path}: no such file or folder.")
    stat = path.stat()
    return _open_source(path, (stat.st_mtime_ns, stat.st_size), key,
                        tuple(features) if isinstance(features, list) else features, id_column,
                        tuple(image_size) if image_size else None, channels)


@functools.lru_cache(maxsize=2)
def _open_source(path: Path, stamp: tuple[int, int], key, features, id_column, image_size, channels) -> Source:
    if path.is_dir():
        return ImageSource(path, image_size, channels)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as error:
            raise ValueError(f"{path}: not a numeric .npy array ({error}); save it with np.save(path, array) "
                             "from a numeric array.") from None
        return ArraySource(path, array)
    if suffix == ".npz":
        return _npz_source(path, key)
    if suffix in TABLE_SUFFIXES:
        return _table_source(path, features, id_column)
    if suffix in (".h5", ".hdf5"):
        return HDF5Source(path, key)
    if suffix == ".h5ad":
        return _h5ad_source(path, key)
    raise ValueError(f"{path}: unknown format {suffix!r}; lvm reads {FORMATS}.")
