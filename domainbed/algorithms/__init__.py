"""Algorithms: ``ALGORITHMS``, ``get_algorithm_class(name)`` and the ``Algorithm`` contract."""

from domainbed.algorithms.base import (ALGORITHM_REGISTRY, Algorithm, make_optimizer,
                                       random_pairs_of_minibatches, register_algorithm)
from domainbed.algorithms.erm import ERM
from domainbed.algorithms.mixing import CORAL, MMD, Mixup
from domainbed.algorithms.penalties import IRM, VREx, GroupDRO
from domainbed.algorithms.trajectory import MA, SWAD


def _registry():
    from domainbed.plugins import load_plugins
    load_plugins()
    return ALGORITHM_REGISTRY


def get_algorithm_class(algorithm_name: str):
    """The algorithm class registered under ``algorithm_name``."""
    return _registry().get(algorithm_name)


def __getattr__(name):
    if name == "ALGORITHMS":
        return _registry().names()
    raise AttributeError(name)


__all__ = ["ALGORITHMS", "Algorithm", "CORAL", "ERM", "GroupDRO", "IRM", "MMD", "Mixup", "VREx",
           "get_algorithm_class", "make_optimizer", "random_pairs_of_minibatches",
           "register_algorithm"]
