"""Datasets: ``DATASETS``, ``get_dataset_class(name)``, ``num_environments(name)``."""

# importing a module registers its dataset classes
from domainbed.datasets import debug, embedded, image_folder, mnist  # noqa: F401
from domainbed.datasets.base import DATASET_REGISTRY, MultipleDomainDataset, register_dataset


def _registry():
    from domainbed.plugins import load_plugins
    load_plugins()
    return DATASET_REGISTRY


def get_dataset_class(dataset_name: str):
    """The dataset class registered under ``dataset_name``."""
    return _registry().get(dataset_name)


def num_environments(dataset_name: str, data_dir=None) -> int:
    return len(get_dataset_class(dataset_name).environments(data_dir))


def __getattr__(name):
    if name == "DATASETS":
        return _registry().names()
    raise AttributeError(name)


__all__ = ["DATASETS", "MultipleDomainDataset", "get_dataset_class", "num_environments",
           "register_dataset"]
