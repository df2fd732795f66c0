"""The dataset registry, torch-free: every dataset is declared once, by the decorator on its
class (``@register_dataset(environments=(...))``), and indexed from source without importing
it, so that listing sweeps and reading records need no torch.

Metadata a dataset declares:

- ``environments``: its environment (domain) names, in order (upstream's ``ENVIRONMENTS``,
  which the decorator sets on the class); None: read from the data;
- ``environments_from_data``: the class reads its domains from the data when they are on
  disk (the count may then differ from ``environments``): a sweep asks the class.

``folder:NAME`` names the user's own image folders under a name of their choice (several of
them, a target and auxiliary datasets, are told apart); ``folder:NAME=PATH`` gives the
folder too (else the job's ``--data_dir`` is the folder).
"""

import re
from typing import Dict, List, Optional, Tuple

from domainbed.registry import Entry, Registry


def _set_environments(cls, entry: Entry) -> None:
    environments = entry.metadata.get("environments")
    if environments is not None:
        cls.ENVIRONMENTS = list(environments)


DATASET_REGISTRY: Registry = Registry(
    "dataset", decorator="register_dataset", search=["domainbed.datasets"],
    fields={"environments": None, "environments_from_data": False}, extensible=True,
    on_register=_set_environments, listed_as="datasets")
register_dataset = DATASET_REGISTRY.register

# upstream's DATASETS order: the sweep's default order and the order of the result tables
UPSTREAM_DATASETS = [
    "Debug28", "Debug224", "ColoredMNIST", "RotatedMNIST", "VLCS", "PACS", "OfficeHome",
    "TerraIncognita", "DomainNet", "SVIRO", "WILDSCamelyon", "WILDSFMoW", "SpawriousO2O_easy",
    "SpawriousO2O_medium", "SpawriousO2O_hard", "SpawriousM2M_easy", "SpawriousM2M_medium",
    "SpawriousM2M_hard",
]

FOLDER_PREFIX = "folder:"
_FOLDER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class UnknownDatasetError(KeyError, NotImplementedError):
    """An unregistered dataset name: a KeyError (ours) and a NotImplementedError (upstream's)."""


def is_folder_dataset(name: str) -> bool:
    return isinstance(name, str) and name.startswith(FOLDER_PREFIX)


def split_dataset_root(entry: str) -> Tuple[str, Optional[str]]:
    """``("folder:NAME", PATH)`` of ``folder:NAME=PATH``; ``(entry, None)`` for any other
    name. A bad NAME raises ValueError naming the accepted form."""
    if not is_folder_dataset(entry):
        return entry, None
    name, sep, root = entry[len(FOLDER_PREFIX):].partition("=")
    if not _FOLDER_NAME.fullmatch(name) or (sep and not root):
        raise ValueError(f"bad image-folder dataset {entry!r}: write folder:NAME or "
                         "folder:NAME=PATH, NAME of letters, digits, '_', '.', '-'")
    return FOLDER_PREFIX + name, (root or None)


def dataset_names() -> List[str]:
    """``domainbed.datasets.DATASETS``: upstream's names in upstream's order, then the
    others in index order (torch-free)."""
    return DATASET_REGISTRY.names_in_order(UPSTREAM_DATASETS)


class AcceptedNames(list):
    """The registered dataset names; ``in`` also accepts a well-formed ``folder:NAME[=PATH]``
    (the user's image folders need no registration)."""

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str) and is_folder_dataset(name):
            try:
                split_dataset_root(name)
                return True
            except ValueError:
                return False
        return list.__contains__(self, name)


def accepted_dataset_names() -> AcceptedNames:
    """``dataset_names()`` as ``AcceptedNames``: what a sweep or a recipe may name."""
    return AcceptedNames(dataset_names())


def get_dataset_class(dataset_name: str):
    """The dataset class registered under ``dataset_name`` (``folder:NAME``: the user's own
    image folders under that name); an unknown name raises ``UnknownDatasetError`` listing
    the known ones."""
    if is_folder_dataset(dataset_name):
        return folder_dataset_class(dataset_name)
    try:
        return DATASET_REGISTRY.get(dataset_name)
    except KeyError as exc:
        raise UnknownDatasetError(exc.args[0]) from None


_FOLDER_CLASSES: Dict[str, type] = {}


def folder_dataset_class(name: str) -> type:
    """The ``ImageFolder`` of ``folder:NAME`` (``folder:NAME=PATH`` names the same class):
    the user's image folders under their own name, read from the job's ``--data_dir``
    (``PATH`` in sweeps and recipes). Two names are two datasets: a target and its
    auxiliary datasets can all be image folders (see docs/datasets.md)."""
    from domainbed.errors import DataError
    try:
        name, _ = split_dataset_root(name)
    except ValueError as exc:
        raise DataError(str(exc)) from None
    if name not in _FOLDER_CLASSES:
        image_folder = DATASET_REGISTRY.get("ImageFolder")
        _FOLDER_CLASSES[name] = type(name, (image_folder,), {
            "__doc__": f"The image folders of {name}: <data_dir>/<domain>/<class>/<image>.",
            "__module__": image_folder.__module__, "__qualname__": name})
    return _FOLDER_CLASSES[name]


def declared_environments(dataset: str) -> Optional[List[str]]:
    """The declared environments of a registered dataset (None when it declares none, e.g.
    ``folder:NAME``); raises ``KeyError`` for an unknown name. Torch-free."""
    if is_folder_dataset(dataset):
        return None
    environments = DATASET_REGISTRY.metadata(dataset)["environments"]
    if environments is None and dataset in DATASET_REGISTRY.loaded():
        # registered at run time without declaring them: the class may inherit some
        environments = getattr(DATASET_REGISTRY.get(dataset), "ENVIRONMENTS", None)
    return None if environments is None else list(environments)


def num_environments(dataset: str, data_dir: Optional[str] = None) -> int:
    """Number of environments (domains); ``data_dir`` only for datasets that read their
    domains from disk. Torch-free for a dataset that declares its environments and does not
    read them from the data; otherwise its class is asked."""
    if not is_folder_dataset(dataset):
        metadata = DATASET_REGISTRY.metadata(dataset)
        if metadata["environments"] is not None and not metadata["environments_from_data"]:
            return len(metadata["environments"])
    return len(get_dataset_class(dataset).environments(data_dir))


def known_environment_count(dataset: str) -> Optional[int]:
    """The number of environments when it is known without data (declared, not read from
    the data), else None (also for an unknown name)."""
    if is_folder_dataset(dataset) or dataset not in DATASET_REGISTRY:
        return None
    metadata = DATASET_REGISTRY.metadata(dataset)
    if metadata["environments"] is None or metadata["environments_from_data"]:
        return None
    return len(metadata["environments"])
