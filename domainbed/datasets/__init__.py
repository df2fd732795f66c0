"""Datasets: ``DATASETS``, ``get_dataset_class(name)``, ``num_environments(name)``.

Every registered dataset class is also a module attribute (``domainbed.datasets.PACS``), as
in upstream DomainBed, and ``DATASETS`` lists upstream's names in upstream's order (those
registered), then ours in registration order.
"""

import importlib.util

# importing a module registers its dataset classes
from domainbed.datasets import debug, embedded, image_folder, mnist  # noqa: F401
from domainbed.datasets import spawrious, sviro, wilds  # noqa: F401
from domainbed.datasets.base import DATASET_REGISTRY, MultipleDomainDataset, register_dataset
from domainbed.datasets.debug import _DebugDataset as Debug
from domainbed.datasets.image_folder import MultipleEnvironmentImageFolder
from domainbed.datasets.mnist import MultipleEnvironmentMNIST

# upstream's DATASETS order: the sweep's default order and the order of the result tables
UPSTREAM_DATASETS = [
    "Debug28", "Debug224", "ColoredMNIST", "RotatedMNIST", "VLCS", "PACS", "OfficeHome",
    "TerraIncognita", "DomainNet", "SVIRO", "WILDSCamelyon", "WILDSFMoW", "SpawriousO2O_easy",
    "SpawriousO2O_medium", "SpawriousO2O_hard", "SpawriousM2M_easy", "SpawriousM2M_medium",
    "SpawriousM2M_hard",
]


class UnknownDatasetError(KeyError, NotImplementedError):
    """An unregistered dataset name: a KeyError (ours) and a NotImplementedError (upstream's)."""


def _registry():
    from domainbed.plugins import load_plugins
    load_plugins()
    return DATASET_REGISTRY


def get_dataset_class(dataset_name: str):
    """The dataset class registered under ``dataset_name`` (``folder:NAME``: the user's own
    image folders under that name); an unknown name raises ``UnknownDatasetError`` listing
    the known ones."""
    from domainbed.catalogue import is_folder_dataset
    if is_folder_dataset(dataset_name):
        return image_folder.folder_dataset_class(dataset_name)
    try:
        return _registry().get(dataset_name)
    except KeyError as exc:
        raise UnknownDatasetError(exc.args[0]) from None


def num_environments(dataset_name: str, data_dir=None) -> int:
    """Number of environments (domains); ``data_dir`` only for datasets that read their
    domains from disk (``ImageFolder``)."""
    return len(get_dataset_class(dataset_name).environments(data_dir))


def _ordered_names(registered) -> list:
    registered = list(registered)
    return ([n for n in UPSTREAM_DATASETS if n in registered]
            + [n for n in registered if n not in UPSTREAM_DATASETS])


def __getattr__(name):
    if name == "DATASETS":
        return _ordered_names(_registry().names())
    if not name.startswith("_"):
        if name in DATASET_REGISTRY:  # a core dataset: no need to load the extensions
            return DATASET_REGISTRY.get(name)
        # ``from domainbed.datasets import <submodule>`` asks here first: let the import
        # system load it (loading the extensions would import them for nothing)
        if importlib.util.find_spec(f"{__name__}.{name}") is None and name in _registry():
            return _registry().get(name)
    raise AttributeError(f"module 'domainbed.datasets' has no attribute {name!r}")


__all__ = ["DATASETS", "Debug", "MultipleDomainDataset", "MultipleEnvironmentImageFolder",
           "MultipleEnvironmentMNIST", "UnknownDatasetError", "get_dataset_class",
           "num_environments", "register_dataset"]
