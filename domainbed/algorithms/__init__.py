"""Algorithms: ``ALGORITHMS``, ``get_algorithm_class(name)`` and the ``Algorithm`` contract."""

from domainbed.algorithms.base import (ALGORITHM_REGISTRY, Algorithm, make_optimizer,
                                       random_pairs_of_minibatches, register_algorithm)
from domainbed.algorithms.erm import ERM
from domainbed.algorithms.mixing import CORAL, MMD, Mixup
from domainbed.algorithms.penalties import IRM, VREx, GroupDRO
from domainbed.algorithms.ma import MA
from domainbed.algorithms.swad import SWAD
from domainbed.algorithms import adversarial, gradient_matching, regularisers, trm  # noqa: F401
from domainbed.algorithms import (bottleneck, causal, erm_plus_plus, meta_learning,  # noqa: F401
                                  risk_distribution, uniform_features)


# upstream DomainBed's ALGORITHMS, in its order (sweep default, row order of the tables);
# names registered here but not in this list (MA, SWAD, plugins) follow in registration order
UPSTREAM_ALGORITHMS = [
    "ERM", "ERMPlusPlus", "Fish", "IRM", "GroupDRO", "Mixup", "MLDG", "CORAL", "MMD", "DANN",
    "CDANN", "MTL", "SagNet", "ARM", "VREx", "RSC", "SD", "ANDMask", "SANDMask", "IGA",
    "SelfReg", "Fishr", "TRM", "IB_ERM", "IB_IRM", "CAD", "CondCAD", "Transfer",
    "CausIRL_CORAL", "CausIRL_MMD", "EQRM", "RDM", "ADRMX", "URM",
]


def _ordered_names(registered) -> list:
    registered = list(registered)
    return ([n for n in UPSTREAM_ALGORITHMS if n in registered]
            + [n for n in registered if n not in UPSTREAM_ALGORITHMS])


def _registry():
    from domainbed.plugins import load_plugins
    load_plugins()
    return ALGORITHM_REGISTRY


def get_algorithm_class(algorithm_name: str):
    """The algorithm class registered under ``algorithm_name``."""
    return _registry().get(algorithm_name)


def __getattr__(name):
    if name == "ALGORITHMS":
        return _ordered_names(_registry().names())
    raise AttributeError(name)


__all__ = ["ALGORITHMS", "Algorithm", "CORAL", "ERM", "GroupDRO", "IRM", "MMD", "Mixup", "VREx",
           "get_algorithm_class", "make_optimizer", "random_pairs_of_minibatches",
           "register_algorithm"]
