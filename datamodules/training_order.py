"""The training loader's order of examples, resumable in the middle of an epoch.

Each epoch's order is a function of the seed and the epoch alone (:class:`EpochShuffle`), so nothing about it needs
saving; the loader (:class:`ResumableLoader`) counts the batches it has handed to the training loop, and Lightning
keeps that count in every checkpoint (the fit loop saves the ``state_dict`` of a train loader that has one). A run
resumed from a checkpoint written mid-epoch (a SIGTERM, ``ModelCheckpoint(every_n_train_steps)``) draws the
interrupted epoch's order again and starts at the first batch the interrupted run had not trained on
(:class:`ResumableBatches` skips the indices of the others; no example is read for them), then draws the later epochs'
orders as an uninterrupted run does.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler

__all__ = ["EpochShuffle", "ResumableBatches", "ResumableLoader"]


class EpochShuffle(RandomSampler):
    """A random order of ``data_source``'s examples for each epoch, drawn from a generator seeded with ``(seed,
    epoch)`` (NumPy's ``SeedSequence``: unrelated orders for every pair). Lightning sets the epoch before each one
    (``set_epoch``, as for its ``DistributedSampler``); outside the Trainer each pass moves on to the next epoch.

    A ``RandomSampler`` to Lightning, which therefore treats the loader as shuffled: under DDP it puts a
    ``DistributedSampler(shuffle=True)``, also seeded per epoch, in its place."""

    def __init__(self, data_source, seed: int):
        super().__init__(data_source)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        seed = int(np.random.SeedSequence([self.seed, self.epoch]).generate_state(1)[0])
        self.epoch += 1
        yield from torch.randperm(len(self.data_source), generator=torch.Generator().manual_seed(seed)).tolist()


class ResumableBatches(BatchSampler):
    """PyTorch's ``BatchSampler``, whose passes begin at batch ``start`` (set by :class:`ResumableLoader` for each)."""

    start = 0

    def __iter__(self):
        return itertools.islice(super().__iter__(), self.start, None)


class ResumableLoader(DataLoader):
    """A DataLoader over a :class:`ResumableBatches` whose state is the pass in progress: its epoch (the sampler's
    ``epoch``) and the batches handed out so far. Batches that workers have prefetched but the loop has not received
    are not counted.

    A pass starts at its first batch, not when ``iter`` is called: Lightning calls ``iter`` on a resumed run's loader
    before it has said which epoch comes next (``set_epoch``), and workers would fetch at once. A loaded state applies
    to the next pass if that pass is of the state's epoch (a checkpoint from the middle of it), else it is dropped (a
    checkpoint from its end: the next epoch starts at its first batch)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._epoch, self._served = 0, 0  # the pass in progress
        self._resume: dict | None = None

    def state_dict(self) -> dict:
        return {"epoch": self._epoch, "batches": self._served}

    def load_state_dict(self, state_dict: dict) -> None:
        self._resume = dict(state_dict)

    def __iter__(self):
        epoch = getattr(self.batch_sampler.sampler, "epoch", 0)
        resume, self._resume = self._resume, None
        self._epoch, self._served = epoch, resume["batches"] if resume and resume["epoch"] == epoch else 0
        self.batch_sampler.start = self._served
        for batch in super().__iter__():
            self._served += 1
            yield batch
