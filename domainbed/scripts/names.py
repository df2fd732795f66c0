"""List what the registries know, without importing torch:
``python -m domainbed.scripts.names [KIND ...] [--json]``.

KIND: algorithms, datasets, launchers (and what installed extensions list). Each name comes
with where it is defined and the metadata it declares (an algorithm's init kind and report
family, a dataset's environments, a launcher's capabilities), read from the source.
"""

import argparse
import json
import sys
from typing import Dict, List, Optional, Sequence

from domainbed.errors import DomainBedError
from domainbed.scripts.cli import print_errors


def listed_registries() -> Dict[str, object]:
    """The listed registries, the core's and those extensions list from their torch-free
    entry points."""
    import domainbed.algorithms.registry  # noqa: F401  (each registry lists itself)
    import domainbed.command_launchers.core.base  # noqa: F401
    import domainbed.datasets.registry  # noqa: F401
    from domainbed.plugins import SWEEP_PLUGINS, load_plugins
    from domainbed.registry import LISTED
    load_plugins(SWEEP_PLUGINS)
    return dict(LISTED)


def _shown(metadata: dict, defaults: dict) -> str:
    parts = []
    for key, value in metadata.items():
        if value == defaults.get(key):
            continue
        if isinstance(value, (list, tuple)):
            value = ",".join(map(str, value))
        parts.append(f"{key}={value}")
    return " ".join(parts)


def lines(kinds: Sequence[str] = ()) -> List[str]:
    registries = listed_registries()
    unknown = [k for k in kinds if k not in registries]
    if unknown:
        raise DomainBedError(f"no registry lists {unknown[0]!r}; known: {', '.join(registries)}")
    out: List[str] = []
    for kind in kinds or list(registries):
        registry = registries[kind]
        entries = registry.entries()
        out.append(f"{kind} ({len(entries)}):")
        width = max([len(e.name) for e in entries] + [1])
        for e in entries:
            out.append(f"  {e.name:<{width}}  {e.module}  {_shown(e.metadata, registry.fields)}"
                       .rstrip())
    return out


def as_json(kinds: Sequence[str] = ()) -> dict:
    registries = listed_registries()
    return {kind: [{"name": e.name, "module": e.module, **e.metadata}
                   for e in registries[kind].entries()]
            for kind in (kinds or list(registries))}


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m domainbed.scripts.names",
                                description=__doc__.splitlines()[0])
    p.add_argument("kinds", nargs="*", metavar="KIND",
                   help="which registries (default: every listed one)")
    p.add_argument("--json", action="store_true", help="as JSON")
    args = p.parse_args(argv)
    try:
        if args.json:
            print(json.dumps(as_json(args.kinds), indent=1, default=list))
        else:
            print("\n".join(lines(args.kinds)))
    except DomainBedError as exc:
        print_errors("names", [str(exc)])
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
