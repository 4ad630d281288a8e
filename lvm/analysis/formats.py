"""What an exported embedding is called: the splits it holds and the file formats it is written in. Plain constants
(no NumPy, PyTorch or pandas), so a command's ``--help`` names them without importing those."""

__all__ = ["SPLITS", "FORMATS"]

SPLITS = ("train", "val", "test")
FORMATS = (".csv", ".parquet", ".npz")
