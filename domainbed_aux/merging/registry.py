"""The registry of merge rules: every rule is a file of ``domainbed_aux/merging/rules/``.

``@register_rule`` on a :class:`~domainbed_aux.merging.contract.MergeRule` subclass records
it under its ``name``; the first lookup imports every module of the rules package, so adding
a rule is adding a file there (a plugin or a test may also register a rule from its own
module). Everyone reads the names from here: ``inference --weight_selection``, ``merge
--weight_selection``, ``report --rules``, the analyses, the soups of runs
(``scoring.soups``).
"""

import importlib
import pkgutil
from typing import List, Optional, Type

from domainbed.errors import DomainBedError
from domainbed.registry import Registry

MERGE_RULES: Registry = Registry("merge rule")
RULES_PACKAGE = "domainbed_aux.merging.rules"
_discovered = False


def register_rule(cls: Type) -> Type:
    """Class decorator: register a merge rule under its ``name``."""
    if not getattr(cls, "name", ""):
        raise ValueError(f"merge rule {cls.__name__} has no name")
    return MERGE_RULES.register(cls.name)(cls)


def unregister_rule(name: str) -> None:
    """Forget a rule (a plugin's or a test's)."""
    MERGE_RULES.unregister(name)


def discover() -> None:
    """Import every module of the rules package (once)."""
    global _discovered
    if _discovered:
        return
    package = importlib.import_module(RULES_PACKAGE)
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{RULES_PACKAGE}.{info.name}")
    _discovered = True


def rule_names(pooled: Optional[bool] = None) -> List[str]:
    """Every registered rule, in listing order (``order``, then name), read when asked (a
    rule registered later is included); ``pooled=False``: only the rules of one trial
    seed's runs, ``pooled=True``: only those of every trial seed's (the dagger soup)."""
    discover()
    names = sorted(MERGE_RULES.names(), key=lambda n: (MERGE_RULES.get(n).order, n))
    if pooled is None:
        return names
    return [n for n in names if bool(MERGE_RULES.get(n).pooled) == pooled]


def get_rule(name: str):
    """An instance of the rule ``name``; an unknown name fails with the known ones."""
    discover()
    if name not in MERGE_RULES:
        raise DomainBedError(f"unknown merge rule {name!r}; known: {', '.join(rule_names())}")
    return MERGE_RULES.get(name)()
