"""The algorithm registry, torch-free: every algorithm is declared once, by the decorator on
its class (``@register_algorithm(...)``), and indexed from source without importing it.

Metadata an algorithm declares (read by the sweep, the recipe and the report without
importing torch):

- ``init``: where a run of it starts when a sweep recycles models (the ratatouille
  extension's ``--aux_dir`` / ``--output_dir_lp``): ``"pool"`` (a member of the auxiliary
  pool with the shared linear probe), ``"fused"`` (a fused featurizer of the pool with the
  probe), ``"probe"`` (the shared linear probe, always, even in a sweep that recycles
  nothing); None (the default): the shared linear probe once the sweep recycles, else the
  core's own initialisation.
- ``family``: the family of Table-1 rows its runs enter (``domainbed_aux.report``), None:
  none.
"""

from typing import List

from domainbed.registry import Registry

ALGORITHM_REGISTRY: Registry = Registry(
    "algorithm", decorator="register_algorithm", search=["domainbed.algorithms"],
    fields={"init": None, "family": None}, extensible=True, listed_as="algorithms")
register_algorithm = ALGORITHM_REGISTRY.register

INIT_KINDS = ("probe", "pool", "fused")

# upstream DomainBed's ALGORITHMS, in its order (sweep default, row order of the tables);
# names registered but not in this list (MA, SWAD, extensions) follow in index order
UPSTREAM_ALGORITHMS = [
    "ERM", "ERMPlusPlus", "Fish", "IRM", "GroupDRO", "Mixup", "MLDG", "CORAL", "MMD", "DANN",
    "CDANN", "MTL", "SagNet", "ARM", "VREx", "RSC", "SD", "ANDMask", "SANDMask", "IGA",
    "SelfReg", "Fishr", "TRM", "IB_ERM", "IB_IRM", "CAD", "CondCAD", "Transfer",
    "CausIRL_CORAL", "CausIRL_MMD", "EQRM", "RDM", "ADRMX", "URM",
]


def algorithm_names() -> List[str]:
    """``domainbed.algorithms.ALGORITHMS``: upstream's names in upstream's order, then the
    others in index order (torch-free)."""
    return ALGORITHM_REGISTRY.names_in_order(UPSTREAM_ALGORITHMS)


def get_algorithm_class(algorithm_name: str):
    """The algorithm class registered under ``algorithm_name`` (its module is imported)."""
    return ALGORITHM_REGISTRY.get(algorithm_name)


def init_kind(algorithm: str) -> object:
    """The declared ``init`` of a registered algorithm (None for an unknown name)."""
    if algorithm not in ALGORITHM_REGISTRY:
        return None
    return ALGORITHM_REGISTRY.metadata(algorithm)["init"]


def recycles(algorithm: str) -> bool:
    """Whether runs of ``algorithm`` start from the auxiliary pool (``init`` "pool" or
    "fused")."""
    return init_kind(algorithm) in ("pool", "fused")


def algorithms_of_family(family: str) -> List[str]:
    """The registered algorithms whose runs enter the Table-1 rows of ``family``."""
    return [e.name for e in ALGORITHM_REGISTRY.entries() if e.metadata.get("family") == family]


def family_of(algorithm: str) -> object:
    """The declared Table-1 family of an algorithm (None: none, or an unknown name)."""
    if algorithm not in ALGORITHM_REGISTRY:
        return None
    return ALGORITHM_REGISTRY.metadata(algorithm)["family"]
