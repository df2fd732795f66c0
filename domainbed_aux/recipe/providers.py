"""Report providers: the modules a recipe's report stage may run.

A recipe file is data: its ``report`` section chooses a provider among those installed
packages register (entry-point group ``domainbed.report_providers``, name = module run as
``python -m <module> <args>``; ours: ``ratatouille = domainbed_aux.scripts.report``), never an
arbitrary module. Any other module runs only when the command line names it
(``--allow_report_module MODULE``), and the command is printed before it runs. Whether an
unregistered module is installed is found without importing anything (no package
``__init__`` runs), so that a recipe cannot run code by naming it.
"""

import importlib.machinery
from importlib import metadata
from typing import Dict, Iterable, Optional

GROUP = "domainbed.report_providers"
# ours, also when the package's entry points were not regenerated (an old editable install)
BUILTIN: Dict[str, str] = {"ratatouille": "domainbed_aux.scripts.report"}


def report_providers() -> Dict[str, str]:
    """Provider name -> module, ours first, then the installed entry points."""
    providers = dict(BUILTIN)
    try:
        entries = metadata.entry_points(group=GROUP)
    except TypeError:  # Python < 3.10 style API
        entries = metadata.entry_points().get(GROUP, [])
    for entry in entries:
        providers.setdefault(entry.name, entry.value.split(":")[0])
    return providers


def is_registered(module: str) -> bool:
    return module in report_providers().values()


def module_exists(module: str) -> bool:
    """Whether ``module`` can be found on ``sys.path``, found by path without importing it
    or its parent packages (``importlib.util.find_spec`` would run their ``__init__``)."""
    import sys
    locations: Optional[Iterable[str]] = None
    spec = None
    for part in module.split("."):
        if not part.isidentifier():
            return False
        spec = importlib.machinery.PathFinder.find_spec(part, locations or sys.path)
        if spec is None:
            return module in sys.builtin_module_names
        locations = spec.submodule_search_locations
    return spec is not None


def provider_module(report: dict) -> str:
    """The module of a recipe's ``report`` section: its ``provider`` (a registered name) or
    its ``module``; the default provider when neither is given."""
    if report.get("provider"):
        return report_providers()[report["provider"]]
    return report.get("module") or BUILTIN["ratatouille"]


def refusal(module: str, where: str = "recipe.report.module") -> str:
    """The problem line of an unregistered module that is installed (so would run)."""
    names = ", ".join(f"{n} ({m})" for n, m in report_providers().items())
    return (f"{where}: {module!r} is not a registered report provider, and a recipe file runs "
            f"no other code; registered: {names}. Use \"provider\": NAME, or, to run this "
            f"module anyway, add --allow_report_module {module} to the command line")
