"""Algorithms: ``ALGORITHMS``, ``get_algorithm_class(name)`` and the ``Algorithm`` contract.

Importing the package is cheap (no torch): the names come from the registry's index
(``registry``), and a class is imported when it is asked for (``domainbed.algorithms.ERM``,
``get_algorithm_class("CORAL")``). Add an algorithm by writing its class, decorated with
``@register_algorithm(...)``, in a module of this package (or of an extension).
"""

from domainbed.algorithms.registry import (ALGORITHM_REGISTRY, UPSTREAM_ALGORITHMS,
                                           algorithm_names, get_algorithm_class,
                                           register_algorithm)

# the contract's names, from the modules that define them (imported on first use)
_FROM_BASE = ("Algorithm", "make_optimizer", "random_pairs_of_minibatches")


def __getattr__(name):
    if name == "ALGORITHMS":
        return algorithm_names()
    if name in _FROM_BASE:
        from domainbed.algorithms import base
        return getattr(base, name)
    if not name.startswith("_"):
        import importlib.util
        # ``from domainbed.algorithms import <submodule>``: the import system loads it
        if importlib.util.find_spec(f"{__name__}.{name}") is None and \
                name in ALGORITHM_REGISTRY:
            return ALGORITHM_REGISTRY.get(name)
    raise AttributeError(f"module 'domainbed.algorithms' has no attribute {name!r}")


__all__ = ["ALGORITHMS", "ALGORITHM_REGISTRY", "Algorithm", "CORAL", "ERM", "GroupDRO", "IRM",
           "MMD", "Mixup", "UPSTREAM_ALGORITHMS", "VREx", "algorithm_names",
           "get_algorithm_class", "make_optimizer", "random_pairs_of_minibatches",
           "register_algorithm"]
