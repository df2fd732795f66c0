"""Batches of tensor-backed datasets are gathered in one indexing per tensor: the same
batches, the same RNG stream, as fetching and stacking every item."""

import itertools

import torch
from torch.utils.data import TensorDataset

from domainbed.lib import fast_data_loader as fdl
from domainbed.lib.misc import split_dataset


def _data(n=50):
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(n, 3, 4, 4, generator=g),
                         torch.randint(0, 5, (n,), generator=g))


def _stacked(dataset, indices):
    items = [dataset[i] for i in indices]
    return [torch.stack([item[k] for item in items]) for k in range(len(items[0]))]


def _same(a, b):
    return type(a) is type(b) is list and len(a) == len(b) and all(
        x.dtype == y.dtype and x.shape == y.shape and torch.equal(x, y) for x, y in zip(a, b))


def test_training_batches_equal_the_stacked_items_and_draw_nothing():
    out, inner = split_dataset(_data(), 10, seed=3)
    _, nested = split_dataset(inner, 7, seed=4)  # a split of a split
    for split in (inner, nested):
        assert fdl.TensorRows.of(split) is not None
        sampler = fdl.StepBatchSampler(len(split), 8, seed=5, env=1, start_step=2)
        torch.manual_seed(11)
        loader = fdl.infinite_loader(split, 8, seed=5, env=1, start_step=2, num_workers=0)
        for step, batch in zip(itertools.count(2), itertools.islice(loader, 3)):
            indices = [i for i, _ in sampler.batch_for_step(step)]
            assert _same(batch, _stacked(split, indices))
    torch.manual_seed(11)
    expected = torch.rand(1).item()
    torch.manual_seed(11)
    next(iter(fdl.infinite_loader(nested, 8, seed=5, env=1, start_step=0, num_workers=0)))
    assert torch.rand(1).item() == expected


def test_evaluation_batches_equal_the_stacked_items_with_or_without_workers():
    _, split = split_dataset(_data(), 10, seed=3)
    for workers in (0, 1):
        batches = list(fdl.eval_loader(split, 16, workers))
        assert [len(b[0]) for b in batches] == [16, 16, 8]
        for k, batch in enumerate(batches):
            assert _same(batch, _stacked(split, range(16 * k, min(16 * k + 16, len(split)))))


def test_datasets_with_their_own_items_are_fetched_item_by_item():
    class Shifted(TensorDataset):  # a transform: gathering the rows would skip it
        def __getitem__(self, i):
            x, y = super().__getitem__(i)
            return x + 1, y
    data = _data()
    shifted = Shifted(*data.tensors)
    _, split = split_dataset(shifted, 10, seed=3)
    assert fdl.TensorRows.of(shifted) is None and fdl.TensorRows.of(split) is None
    batch = next(iter(fdl.eval_loader(split, 8, 0)))
    assert _same(batch, _stacked(split, range(8)))
    assert torch.equal(batch[0], _stacked(split_dataset(data, 10, seed=3)[1], range(8))[0] + 1)
