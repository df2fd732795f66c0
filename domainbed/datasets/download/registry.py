"""The registry of downloadable datasets, and the dataset names each download serves.

One download can serve several dataset classes (MNIST: RotatedMNIST and ColoredMNIST;
Spawrious: its six benchmarks); those names are aliases of the download, taken from the
registered dataset classes.
"""

from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple, Type

from domainbed.datasets.base import DATASET_REGISTRY
from domainbed.registry import Registry


@dataclass(frozen=True)
class DownloadSpec:
    """A downloadable dataset: its folder in ``data_dir`` and how to prepare it.

    ``serves``: the dataset base class whose registered subclasses read this download
    (None: only the dataset class named ``name``)."""

    name: str
    subdir: str
    prepare: Callable[..., str]
    serves: Optional[Type] = None


DOWNLOADS: Registry = Registry("downloadable dataset")


def register_download(name: str, subdir: str, serves: Optional[Type] = None):
    """Decorator: register ``prepare(job) -> installed folder`` as the download ``name``."""
    def decorator(prepare):
        DOWNLOADS.register(name)(DownloadSpec(name, subdir, prepare, serves))
        return prepare
    return decorator


def aliases() -> Dict[str, str]:
    """Dataset name -> the download that provides it, for the registered dataset classes
    served by a download under another name (in the datasets' registration order)."""
    served: Tuple[Tuple[Type, str], ...] = tuple(
        (spec.serves, spec.name) for spec in (DOWNLOADS.get(n) for n in DOWNLOADS.names())
        if spec.serves is not None)
    out = {}
    for dataset in DATASET_REGISTRY.names():
        cls = DATASET_REGISTRY.get(dataset)
        for base, download in served:
            if isinstance(cls, type) and issubclass(cls, base) and dataset != download:
                out[dataset] = download
    return out


def resolve(names) -> list:
    """Download names for dataset or download ``names`` (aliases mapped, duplicates dropped,
    order kept)."""
    table = aliases()
    return list(dict.fromkeys(table.get(n, n) for n in names))
