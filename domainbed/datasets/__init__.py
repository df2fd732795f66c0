"""Datasets: ``DATASETS``, ``get_dataset_class(name)``, ``num_environments(name)``.

Importing the package is cheap (no torch): names and environments come from the registry's
index (``registry``), and a class is imported when it is asked for. Every registered dataset
class is also a module attribute (``domainbed.datasets.PACS``), as in upstream DomainBed, and
``DATASETS`` lists upstream's names in upstream's order (those registered), then ours in
index order. Add a dataset by writing its class, decorated with
``@register_dataset(environments=(...))``, in a module of this package (or of an extension).
"""

import importlib.util

from domainbed.datasets.registry import (DATASET_REGISTRY, UPSTREAM_DATASETS,
                                         UnknownDatasetError, dataset_names,
                                         get_dataset_class, num_environments,
                                         register_dataset)

# upstream's base classes, from the modules that define them (imported on first use)
_BASES = {"MultipleDomainDataset": ("base", "MultipleDomainDataset"),
          "Debug": ("debug", "_DebugDataset"),
          "MultipleEnvironmentImageFolder": ("image_folder", "MultipleEnvironmentImageFolder"),
          "MultipleEnvironmentMNIST": ("mnist", "MultipleEnvironmentMNIST")}


def __getattr__(name):
    if name == "DATASETS":
        return dataset_names()
    if name in _BASES:
        module, attribute = _BASES[name]
        return getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
    # ``from domainbed.datasets import <submodule>``: let the import system load it
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is None \
            and name in DATASET_REGISTRY:
        return DATASET_REGISTRY.get(name)
    raise AttributeError(f"module 'domainbed.datasets' has no attribute {name!r}")


__all__ = ["DATASETS", "DATASET_REGISTRY", "Debug", "MultipleDomainDataset",
           "MultipleEnvironmentImageFolder", "MultipleEnvironmentMNIST", "UPSTREAM_DATASETS",
           "UnknownDatasetError", "get_dataset_class", "num_environments", "register_dataset"]
