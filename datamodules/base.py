"""Pieces shared by the datamodules: seeded splits and the three DataLoaders."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Subset

__all__ = ["seeded_split", "SplitDataModule"]


def seeded_split(dataset: Dataset, fractions: list[float], seed: int) -> list[Subset]:
    """Split ``dataset`` into consecutive parts of a permutation drawn from ``seed``.
    The last part takes the remainder, so the sizes always add up to ``len(dataset)``."""
    n = len(dataset)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    sizes = [int(round(f * n)) for f in fractions[:-1]]
    sizes.append(n - sum(sizes))
    parts, start = [], 0
    for size in sizes:
        parts.append(Subset(dataset, order[start:start + size]))
        start += size
    return parts


class SplitDataModule(L.LightningDataModule):
    """A datamodule whose ``setup`` fills ``train_set``, ``val_set`` and ``test_set`` once.
    Subclasses set ``data_shape`` and implement :meth:`build_splits`.

    The training order is drawn from a generator of its own, seeded by ``seed`` and saved in
    checkpoints, so a resumed run sees the same batches as an uninterrupted one (the global
    RNG, used by the objectives, is saved by :class:`lvm.rng_state.RNGStateCheckpoint`)."""

    data_shape: tuple[int, ...]

    def __init__(self, batch_size: int, num_workers: int, seed: int):
        super().__init__()
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.shuffle_generator = torch.Generator().manual_seed(seed)

    def build_splits(self) -> tuple[Dataset, Dataset, Dataset]:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if not hasattr(self, "train_set"):
            self.train_set, self.val_set, self.test_set = self.build_splits()

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0, generator=self.shuffle_generator if shuffle else None)

    def state_dict(self) -> dict:
        return {"shuffle_generator": self.shuffle_generator.get_state()}

    def load_state_dict(self, state_dict: dict) -> None:
        self.shuffle_generator.set_state(state_dict["shuffle_generator"])

    def train_dataloader(self):
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self):
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self):
        return self._loader(self.test_set, shuffle=False)
