"""Small helpers with upstream DomainBed's names: seeding, splits, accuracy, class weights."""

import json
import random
from collections import Counter
from typing import Any, Iterable, List, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from domainbed.lib.seeds import seed_hash  # noqa: F401  (upstream's name; torch-free there)
from domainbed.lib.text_rows import format_row


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch, and make cuDNN pick deterministic kernels (as upstream
    DomainBed does): a run resumed on a GPU then repeats the uninterrupted one."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def show_progress(disabled: bool = False) -> bool:
    """Whether to draw progress bars: not when asked not to, nor when stderr is not a
    terminal (a log file would fill with redrawn bars)."""
    import sys
    return not disabled and sys.stderr.isatty()


class _SplitDataset(Dataset):
    """A subset of ``underlying_dataset`` given by ``keys``."""

    def __init__(self, underlying_dataset, keys: Sequence[int]):
        super().__init__()
        self.underlying_dataset = underlying_dataset
        self.keys = list(keys)

    def __getitem__(self, key):
        return self.underlying_dataset[self.keys[key]]

    def __len__(self):
        return len(self.keys)

    def with_dataset(self, dataset) -> "_SplitDataset":
        """The same indices over another view (e.g. without augmentation) of the data."""
        return _SplitDataset(dataset, self.keys)


def split_dataset(dataset, n: int, seed: int = 0):
    """Shuffle indices with ``RandomState(seed)``; the first ``n`` form the "out" split.

    Returns ``(out_split, in_split)`` as upstream DomainBed does.
    """
    if not 0 <= n <= len(dataset):
        raise ValueError(f"cannot hold out {n} of {len(dataset)} examples")
    keys = list(range(len(dataset)))
    np.random.RandomState(seed).shuffle(keys)
    return _SplitDataset(dataset, keys[:n]), _SplitDataset(dataset, keys[n:])


def dataset_labels(dataset) -> List[int]:
    """Labels of a dataset without decoding inputs when the dataset can tell them."""
    if isinstance(dataset, _SplitDataset):
        inner = dataset_labels(dataset.underlying_dataset)
        return [inner[k] for k in dataset.keys]
    targets = getattr(dataset, "targets", None)
    if targets is not None:
        return [int(t) for t in targets]
    tensors = getattr(dataset, "tensors", None)
    if tensors is not None:
        return [int(t) for t in tensors[1]]
    return [int(dataset[i][1]) for i in range(len(dataset))]


def make_weights_for_balanced_classes(dataset) -> torch.Tensor:
    """Per-example sampling weights that give every class the same total weight."""
    labels = dataset_labels(dataset)
    counts = Counter(labels)
    n_classes = len(counts)
    weights = torch.zeros(len(labels))
    for i, y in enumerate(labels):
        weights[i] = 1.0 / (counts[y] * n_classes)
    return weights


@torch.no_grad()
def accuracy(network, loader, weights=None, device=None) -> float:
    """Accuracy of ``network.predict`` over ``loader``; ``weights`` weight each example."""
    correct, total, weights_offset = 0.0, 0.0, 0
    was_training = network.training
    network.eval()
    if device is None:
        device = next(network.parameters()).device
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        p = network.predict(x)
        if weights is None:
            batch_weights = torch.ones(len(x), device=device)
        else:
            batch_weights = weights[weights_offset:weights_offset + len(x)].to(device)
            weights_offset += len(x)
        if p.size(1) == 1:
            hits = p.gt(0).eq(y).float().view(-1)
        else:
            hits = p.argmax(1).eq(y).float()
        correct += (hits * batch_weights).sum().item()
        total += batch_weights.sum().item()
    network.train(was_training)
    return correct / total if total else float("nan")


from domainbed.lib.atomic import atomic_write_bytes, atomic_write_text  # noqa: E402,F401


def pretty_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, indent=2)


def print_row(row: Iterable[Any], colwidth: int = 10, latex: bool = False) -> str:
    """Format a table row with fixed-width columns (upstream's console layout); returns the
    line instead of printing it (the training loop logs it)."""
    return format_row(row, colwidth, latex)


# the rest of upstream's misc names (LARS lives in lib/lars.py)
from domainbed.lib.upstream_misc import (MovingAverage, ParamDict, Tee,  # noqa: E402,F401
                                         distance, l2_between_dicts, pdb, print_separator,
                                         proj, random_pairs_of_minibatches,
                                         split_meta_train_test)


def __getattr__(name):
    if name == "LARS":
        from domainbed.lib.lars import LARS
        return LARS
    raise AttributeError(f"module 'domainbed.lib.misc' has no attribute {name!r}")
