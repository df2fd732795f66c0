"""The core's algorithm and dataset names, without importing torch.

``collect_results``, ``list_top_hparams`` and ``sweep status`` need only names: the order of
``domainbed.algorithms.ALGORITHMS`` and ``domainbed.datasets.DATASETS`` and each dataset's
``ENVIRONMENTS``. The registries hold them, but importing them imports torch (seconds). This
module lists what the core registers, in registry order, and answers from that list only
when the answer is then the registry's own:

- the core registers its names before any extension does, and a name cannot be registered
  twice, so the registry's order restricted to core names is the order below;
- a name that is not listed here (an extension's algorithm, a new or unknown dataset), or a
  registry that is imported already, sends the question to the registry itself.

``tests/domainbed/test_no_torch_imports.py`` checks this list against the registries: a core
algorithm or dataset added without its line here fails that test (and, until fixed, costs
only the torch import on sweeps that use it).
"""

import re
import sys
from typing import Dict, Iterable, List, Optional, Tuple

# the core's domainbed.algorithms.ALGORITHMS, in order (upstream's names, then MA and SWAD)
CORE_ALGORITHMS: Tuple[str, ...] = (
    "ERM", "ERMPlusPlus", "Fish", "IRM", "GroupDRO", "Mixup", "MLDG", "CORAL", "MMD", "DANN",
    "CDANN", "MTL", "SagNet", "ARM", "VREx", "RSC", "SD", "ANDMask", "SANDMask", "IGA",
    "SelfReg", "Fishr", "TRM", "IB_ERM", "IB_IRM", "CAD", "CondCAD", "Transfer",
    "CausIRL_CORAL", "CausIRL_MMD", "EQRM", "RDM", "ADRMX", "URM", "MA", "SWAD",
)

# the core's domainbed.datasets.DATASETS, in order, with each class's ENVIRONMENTS
# (None: the class declares none)
CORE_DATASETS: Dict[str, Optional[Tuple[str, ...]]] = {
    "Debug28": ("0", "1", "2"),
    "Debug224": ("0", "1", "2"),
    "ColoredMNIST": ("+90%", "+80%", "-90%"),
    "RotatedMNIST": ("0", "15", "30", "45", "60", "75"),
    "VLCS": ("C", "L", "S", "V"),
    "PACS": ("A", "C", "P", "S"),
    "OfficeHome": ("A", "C", "P", "R"),
    "TerraIncognita": ("L100", "L38", "L43", "L46"),
    "DomainNet": ("clip", "info", "paint", "quick", "real", "sketch"),
    "SVIRO": ("aclass", "escape", "hilux", "i3", "lexus", "tesla", "tiguan", "tucson", "x5",
              "zoe"),
    "WILDSCamelyon": tuple(f"hospital_{i}" for i in range(5)),
    "WILDSFMoW": tuple(f"region_{i}" for i in range(6)),
    "SpawriousO2O_easy": ("Test", "SC_group_1", "SC_group_2"),
    "SpawriousO2O_medium": ("Test", "SC_group_1", "SC_group_2"),
    "SpawriousO2O_hard": ("Test", "SC_group_1", "SC_group_2"),
    "SpawriousM2M_easy": ("Test", "SC_group_1", "SC_group_2"),
    "SpawriousM2M_medium": ("Test", "SC_group_1", "SC_group_2"),
    "SpawriousM2M_hard": ("Test", "SC_group_1", "SC_group_2"),
    "EmbeddedShapes": ("photo", "cartoon", "sketch", "painting"),
    "EmbeddedGlyphs": ("photo", "sketch", "neon", "mosaic"),
    "EmbeddedArrows": ("cartoon", "painting", "neon", "clutter"),
    "EmbeddedTextures": ("photo", "sketch", "mosaic", "clutter"),
    "EmbeddedCounts": ("cartoon", "painting", "neon", "mosaic"),
    "EmbeddedPretrain": ("plain", "stipple"),
    "ImageFolder": None,
    "WILDSRxRx1": ("HEPG2", "HUVEC", "RPE", "U2OS"),
    "WILDSiWildCam": None,
}

# datasets whose ``environments(data_dir)`` reads the domains from the data (so the count
# may differ from ENVIRONMENTS): a sweep asks their class
ENVIRONMENTS_FROM_DATA = frozenset({"ImageFolder", "WILDSCamelyon", "WILDSFMoW", "WILDSRxRx1",
                                    "WILDSiWildCam"})


# ``folder:NAME``: the user's own image folders under a name of their choice, so that
# several of them (a target and auxiliary datasets) are told apart; ``folder:NAME=PATH``
# gives the folder too (else the job's --data_dir is the folder)
FOLDER_PREFIX = "folder:"
_FOLDER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


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


# algorithm names an extension declares from its torch-free sweep plugin, in the order it
# registers them (after the core's): see ``declare_extension_algorithms``
EXTENSION_ALGORITHMS: List[str] = []


def declare_extension_algorithms(names: Iterable[str]) -> None:
    """An extension's algorithm names, in its registration order, so that commands that
    only need names answer without importing the extension's models."""
    for name in names:
        if name not in EXTENSION_ALGORITHMS and name not in CORE_ALGORITHMS:
            EXTENSION_ALGORITHMS.append(name)


def _imported(module: str) -> bool:
    return module in sys.modules


def algorithm_names(needed: Iterable[str] = ()) -> List[str]:
    """``domainbed.algorithms.ALGORITHMS`` as far as the names in ``needed`` go: the same
    relative order of those names, and the same set of them that is registered. Torch-free
    when every needed name is a core algorithm; otherwise the registry is imported."""
    needed = set(needed)
    if not needed <= set(CORE_ALGORITHMS) | set(EXTENSION_ALGORITHMS):
        from domainbed.plugins import SWEEP_PLUGINS, load_plugins
        load_plugins(SWEEP_PLUGINS)  # torch-free: extensions declare their names there
    known = list(CORE_ALGORITHMS) + EXTENSION_ALGORITHMS
    if not _imported("domainbed.algorithms") and needed <= set(known):
        return known
    from domainbed import algorithms
    return list(algorithms.ALGORITHMS)


def knows_algorithms(names: Iterable[str]) -> bool:
    """Whether every name is a core or declared extension algorithm, without torch."""
    return set(names) <= set(CORE_ALGORITHMS) | set(EXTENSION_ALGORITHMS)


def dataset_names(needed: Iterable[str] = ()) -> List[str]:
    """``domainbed.datasets.DATASETS`` as far as the names in ``needed`` go (see
    ``algorithm_names``)."""
    if not _imported("domainbed.datasets") and set(needed) <= set(CORE_DATASETS):
        return list(CORE_DATASETS)
    from domainbed import datasets
    return list(datasets.DATASETS)


def declared_environments(dataset: str) -> Optional[List[str]]:
    """The ``ENVIRONMENTS`` of a registered dataset class (None when it declares none);
    raises ``KeyError`` (the registry's error) for an unknown name."""
    if not _imported("domainbed.datasets") and dataset in CORE_DATASETS:
        envs = CORE_DATASETS[dataset]
        return None if envs is None else list(envs)
    from domainbed.datasets import get_dataset_class
    envs = get_dataset_class(dataset).ENVIRONMENTS
    return None if envs is None else list(envs)


def num_environments(dataset: str, data_dir: Optional[str] = None) -> int:
    """``domainbed.datasets.num_environments(dataset, data_dir)``, torch-free for core datasets
    whose environments do not come from the data."""
    if (not _imported("domainbed.datasets") and dataset not in ENVIRONMENTS_FROM_DATA
            and CORE_DATASETS.get(dataset) is not None):
        return len(CORE_DATASETS[dataset])
    from domainbed import datasets
    return datasets.num_environments(dataset, data_dir)
