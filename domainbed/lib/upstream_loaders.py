"""Upstream DomainBed's data loaders, for code written against them.

Our training loop does not use these: its batches are a pure function of (seed, env, step)
(``fast_data_loader.infinite_loader``), so a resumed run repeats the uninterrupted one.
These keep upstream's behaviour: draws from torch's global RNG, workers started at
construction.
"""

import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, WeightedRandomSampler


class _InfiniteSampler(torch.utils.data.Sampler):
    """Iterates the wrapped (batch) sampler again and again, forever."""

    def __init__(self, sampler):
        self.sampler = sampler

    def __iter__(self):
        while True:
            for batch in self.sampler:
                yield batch


class InfiniteDataLoader:
    """Endless batches of ``batch_size`` drawn with replacement: weighted by ``weights``
    when given, uniformly otherwise. ``len()`` raises ValueError (it has no length)."""

    REPLACEMENT = True

    def __init__(self, dataset, weights, batch_size, num_workers):
        if weights is not None:
            sampler = WeightedRandomSampler(weights, replacement=self.REPLACEMENT,
                                            num_samples=batch_size)
        else:
            sampler = RandomSampler(dataset, replacement=self.REPLACEMENT)
        batch_sampler = BatchSampler(sampler, batch_size=batch_size, drop_last=True)
        self._infinite_iterator = iter(DataLoader(
            dataset, num_workers=num_workers, batch_sampler=_InfiniteSampler(batch_sampler)))

    def __iter__(self):
        while True:
            yield next(self._infinite_iterator)

    def __len__(self):
        raise ValueError("an InfiniteDataLoader has no length")


class InfiniteDataLoaderWithoutReplacement(InfiniteDataLoader):
    """``InfiniteDataLoader`` whose sampler draws without replacement."""

    REPLACEMENT = False


class FastDataLoader:
    """One shuffled pass over ``dataset`` per ``iter()``, in ``ceil(len / batch_size)``
    batches (the last may be short), from one persistent worker pool."""

    def __init__(self, dataset, batch_size, num_workers):
        batch_sampler = BatchSampler(RandomSampler(dataset, replacement=False),
                                     batch_size=batch_size, drop_last=False)
        self._infinite_iterator = iter(DataLoader(
            dataset, num_workers=num_workers, batch_sampler=_InfiniteSampler(batch_sampler)))
        self._length = len(batch_sampler)

    def __iter__(self):
        for _ in range(self._length):
            yield next(self._infinite_iterator)

    def __len__(self):
        return self._length
