"""Data loaders whose batches are a pure function of (seed, environment, step).

Training batches are drawn with replacement from a generator seeded by
``seed_hash(seed, "batch", env, step)``, and every example carries its own seed for random
augmentation. A run resumed at step N therefore sees exactly the batches an uninterrupted
run sees, whatever the number of workers, with no sampler state to checkpoint.
"""

import weakref
from typing import Callable, Iterator, List, Optional, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, TensorDataset, default_collate

from domainbed.lib.misc import _SplitDataset
from domainbed.lib.seeds import seed_hash


class StepBatchSampler(Sampler):
    """Yields, from ``start_step`` on, one batch of ``(index, example_seed)`` per step."""

    def __init__(self, n: int, batch_size: int, seed: int, env: int, start_step: int = 0,
                 weights: Optional[torch.Tensor] = None):
        if n == 0:
            raise ValueError(f"environment {env} has no training examples")
        self.n, self.batch_size, self.seed, self.env = n, batch_size, seed, env
        self.start_step = start_step
        self.weights = weights

    def batch_for_step(self, step: int) -> List[Tuple[int, int]]:
        base = seed_hash(self.seed, "batch", self.env, step)
        generator = torch.Generator().manual_seed(base)
        if self.weights is None:
            idx = torch.randint(self.n, (self.batch_size,), generator=generator)
        else:
            idx = torch.multinomial(self.weights, self.batch_size, replacement=True,
                                    generator=generator)
        return [(int(i), (base + k) % (2 ** 31)) for k, i in enumerate(idx.tolist())]

    def __iter__(self) -> Iterator[List[Tuple[int, int]]]:
        step = self.start_step
        while True:
            yield self.batch_for_step(step)
            step += 1

    def __len__(self):  # infinite; DataLoader only needs this for len()
        raise TypeError("StepBatchSampler is infinite")


class TensorRows:
    """The rows of a ``TensorDataset`` or of index splits of one (``_SplitDataset`` over
    ``_SplitDataset`` ...): ``dataset[i]`` is ``tuple(t[keys[i]] for t in tensors)``, no
    transform, no random draw. ``gather(indices)`` is the collated batch of those items in
    one indexing per tensor: the same values as stacking them (tiny images: the per-item
    fetch and stack cost about a tenth of a training step of the tiny CNN)."""

    def __init__(self, tensors, keys: Optional[torch.Tensor]):
        self.tensors, self.keys = tuple(tensors), keys

    @classmethod
    def of(cls, dataset) -> Optional["TensorRows"]:
        """The rows behind ``dataset``, or None when its items are anything else."""
        if type(dataset).__getitem__ is TensorDataset.__getitem__:
            return cls(dataset.tensors, None)
        if type(dataset).__getitem__ is not _SplitDataset.__getitem__:
            return None
        inner = cls.of(dataset.underlying_dataset)
        if inner is None:
            return None
        keys = torch.as_tensor(dataset.keys, dtype=torch.long)
        return cls(inner.tensors, keys if inner.keys is None else inner.keys[keys])

    def gather(self, indices) -> "Rows":
        # index_select copies whole rows (advanced indexing ``t[index]`` takes the general
        # path): the same values, 61 vs 76-88 us for a batch of 32 embedded images
        index = torch.as_tensor(indices, dtype=torch.long)
        if self.keys is not None:
            index = self.keys.index_select(0, index)
        return Rows([t.index_select(0, index) for t in self.tensors])


class Rows(list):
    """A batch gathered already (``TensorRows.gather``): ``collate`` passes it through."""


def collate(data):
    """``default_collate``, but a ``Rows`` batch is one already (as a plain list, the type
    ``default_collate`` gives a batch of tuples)."""
    return list(data) if isinstance(data, Rows) else default_collate(data)


class _GatheredDataset(Dataset):
    """``dataset`` whose batches are fetched by ``TensorRows.gather``."""

    def __init__(self, dataset, rows: TensorRows):
        self.dataset, self.rows = dataset, rows

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, item):
        return self.dataset[item]

    def __getitems__(self, items):
        return self.rows.gather(items)


class SeededDataset(Dataset):
    """Fetches ``dataset[index]`` with torch's RNG seeded by the example's own seed (items
    that draw nothing, rows of tensors, are gathered in one go)."""

    def __init__(self, dataset):
        self.dataset = dataset
        self.rows = TensorRows.of(dataset)

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, item):
        return self.dataset[item[0]] if self.rows is not None \
            else self.__getitems__([item])[0]

    def __getitems__(self, items):
        if self.rows is not None:
            return self.rows.gather([index for index, _ in items])
        # one save/restore of the global RNG per batch (it is costly), one seed per example
        with torch.random.fork_rng(devices=[]):
            out = []
            for index, example_seed in items:
                # the CPU generator only: torch.manual_seed also seeds every accelerator (slow)
                torch.default_generator.manual_seed(example_seed)
                out.append(self.dataset[index])
            return out


def available_cpus() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    import os
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def cap_workers(num_workers: int) -> int:
    """``num_workers`` capped to the available cores (more only add processes and warnings)."""
    return max(0, min(int(num_workers), available_cpus()))


def _loader_generator() -> torch.Generator:
    # a private generator: creating loaders must not consume the training RNG
    return torch.Generator().manual_seed(0)


def split_for_batches(dataset) -> Tuple[object, Optional[Callable]]:
    """``(items, finish)``: ``finish(batch of items)`` equals the batch of ``dataset``
    items when the dataset (an environment with a two-stage transform, or index splits of
    one) offers ``batch_split()``; else ``(dataset, None)``. Workers then send the smaller
    pre-finish items (uint8 images) and the main process finishes whole batches."""
    split = getattr(dataset, "batch_split", None)
    if callable(split):
        return split() or (dataset, None)
    inner = getattr(dataset, "underlying_dataset", None)
    if inner is not None and callable(getattr(dataset, "with_dataset", None)):
        items, finish = split_for_batches(inner)
        if finish is not None:
            return dataset.with_dataset(items), finish
    return dataset, None


def _aligned_empty(shape, dtype: np.dtype, alignment: int = 64) -> np.ndarray:
    """An uninitialised array of ``shape`` whose data starts on an ``alignment``-byte
    boundary (as torch's CPU allocator places a tensor's)."""
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(nbytes + alignment, dtype=np.uint8)
    start = (-raw.ctypes.data) % alignment
    return raw[start:start + nbytes].view(dtype).reshape(tuple(shape))


def _never_handed_out() -> None:
    return None


class BufferRing:
    """Output buffers handed out again once nothing uses them any more: a consumer drops
    batch t before it asks for batch t + 2, so two buffers per loader spare writing fresh
    pages (page faults) for every batch. A buffer still in use is never handed out: a new
    one is made.

    How the ring knows, with public APIs only: a buffer's memory is a numpy array the ring
    keeps; each batch is ``torch.from_numpy`` of a fresh view of that array, so the batch's
    storage holds the view for as long as the storage lives, i.e. while anything shares the
    batch's memory (the batch, its views, ``.data``, ``.numpy()`` arrays, an autograd graph
    that saved it). The ring keeps only a weak reference to the view: once it is dead,
    nothing can reach the memory through the batch any more, and the buffer is free."""

    def __init__(self, size: int = 2):
        self.size = size
        # (memory, weak reference to the view the last batch over it holds)
        self.buffers: List[Tuple[np.ndarray, Callable[[], object]]] = []

    def take(self, shape, dtype: torch.dtype) -> torch.Tensor:
        """A free buffer of ``shape`` and ``dtype`` (contents undefined), reused or new."""
        shape = tuple(torch.Size(shape))
        np_dtype = torch.empty(0, dtype=dtype).numpy().dtype
        for i, (memory, in_use) in enumerate(self.buffers):
            if in_use() is None and memory.shape == shape and memory.dtype == np_dtype:
                return self._hand_out(i)
        if len(self.buffers) == self.size:
            self.buffers.pop(0)
        self.buffers.append((_aligned_empty(shape, np_dtype), _never_handed_out))
        return self._hand_out(len(self.buffers) - 1)

    def _hand_out(self, i: int) -> torch.Tensor:
        memory = self.buffers[i][0]
        view = memory[...]  # a new array object over the same memory
        self.buffers[i] = (memory, weakref.ref(view))
        return torch.from_numpy(view)


class _Finished:
    """Batches of ``source`` with ``finish`` applied to their first element (into a
    ``BufferRing``'s buffer when ``finish`` takes ``out=``)."""

    def __init__(self, source, finish: Callable):
        self.source, self.finish = source, finish
        self.ring = BufferRing() if getattr(finish, "takes_out", False) else None

    def __iter__(self):
        for batch in self.source:
            yield self._apply(batch)

    def __next__(self):
        return self._apply(next(self.source))

    def __len__(self):
        return len(self.source)

    def _apply(self, batch):
        x = batch[0]
        if self.ring is None or x.device.type != "cpu":
            return [self.finish(x)] + list(batch[1:])
        out = self.ring.take(self.finish.output_shape(x), torch.float32)
        return [self.finish(x, out=out)] + list(batch[1:])


def infinite_loader(dataset, batch_size: int, seed: int, env: int, start_step: int,
                    num_workers: int, weights: Optional[torch.Tensor] = None) -> Iterator:
    """An endless iterator of training batches for one environment, starting at a step."""
    sampler = StepBatchSampler(len(dataset), batch_size, seed, env, start_step, weights)
    items, finish = split_for_batches(dataset)
    loader = DataLoader(SeededDataset(items), batch_sampler=sampler, collate_fn=collate,
                        num_workers=cap_workers(num_workers),
                        generator=_loader_generator(),
                        persistent_workers=False, pin_memory=False)
    return iter(loader) if finish is None else _Finished(iter(loader), finish)


def eval_loader(dataset, batch_size: int, num_workers: int):
    """Sequential batches over the whole dataset, without touching the global RNG (a
    DataLoader, or an iterable over one that finishes its batches)."""
    num_workers = cap_workers(num_workers)
    items, finish = split_for_batches(dataset)
    rows = TensorRows.of(items)
    if rows is not None:
        items = _GatheredDataset(items, rows)
    loader = DataLoader(items, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=collate,
                        generator=_loader_generator(), persistent_workers=num_workers > 0)
    return loader if finish is None else _Finished(loader, finish)


# upstream's classes, with upstream's signatures (our training loop uses the functions above)
from domainbed.lib.upstream_loaders import (FastDataLoader, InfiniteDataLoader,  # noqa: E402,F401
                                            InfiniteDataLoaderWithoutReplacement)
