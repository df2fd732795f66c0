"""A sweep folder remembers its spec: ``sweep.json``, written by a real launch.

``status`` and ``delete_incomplete`` rebuild the job list from the sweep's options; given
only ``--output_dir`` (or some of the options), they take the others from the folder's
``sweep.json``, so that a flag left out cannot make a finished sweep look "not launched".
An option given on the command line that differs from the stored one is named. Listing
with the dummy launcher writes nothing. Torch-free.
"""

import argparse
import json
import logging
import os
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple

from domainbed.sweep.spec import SweepSpec, spec_fields

SPEC_FILE = "sweep.json"
FORMAT = 1
# options that are not the sweep's: how and where it ran, never read back
NOT_STORED = ("output_dir", "data_dir", "mode")

log = logging.getLogger(__name__)


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False


def spec_values(spec: SweepSpec) -> Dict[str, Any]:
    """The options that describe the sweep's jobs: fields and extensions' options."""
    values = {name: getattr(spec, name) for name in spec_fields() if name not in NOT_STORED}
    for name, value in (spec.options or {}).items():
        if not name.startswith("_") and name not in NOT_STORED and _jsonable(value):
            values[name] = value
    if isinstance(values.get("algorithms"), list):
        values["algorithms"] = list(values["algorithms"])  # a plain list, not a subclass
    return {k: v for k, v in values.items() if _jsonable(v)}


def write_spec(spec: SweepSpec) -> str:
    """Write ``<output_dir>/sweep.json`` (atomically); returns its path."""
    from domainbed.lib.atomic import atomic_write_text
    path = os.path.join(spec.output_dir, SPEC_FILE)
    atomic_write_text(path, json.dumps({"format": FORMAT, "spec": spec_values(spec)},
                                       indent=1, sort_keys=True) + "\n")
    return path


def read_spec(output_dir: str) -> Optional[Dict[str, Any]]:
    """The stored options of the sweep in ``output_dir``, or None (no or unreadable file)."""
    path = os.path.join(output_dir, SPEC_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("ignoring %s: %s", path, exc)
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT or \
            not isinstance(data.get("spec"), dict):
        log.warning("ignoring %s: not a sweep spec of format %d", path, FORMAT)
        return None
    return data["spec"]


class _Unset(list):
    """What a ``_Given`` namespace answers for an option not parsed yet: not None (an action
    that fills in another option's default when that one is None leaves it alone) and a list
    (an ``append`` action can add to it)."""


class _Given(argparse.Namespace):
    """A namespace that has every attribute, so that argparse fills in no default: once the
    command line is parsed into it, it holds exactly the options written there."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # argparse's own bookkeeping, Python's special names
            raise AttributeError(name)
        return _Unset()


def typed_options(parser: argparse.ArgumentParser, argv: Sequence[str]) -> Set[str]:
    """The destinations of the options written on the command line (``--flag``,
    ``--flag=value`` and unambiguous abbreviations, as the parser reads them) of a command
    line the parser accepted."""
    given = _Given()
    parser.parse_args(list(argv), namespace=given)
    typed = set(vars(given))
    if "dataset" in typed:
        typed.add("datasets")
    return typed


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return [str(x) for x in a] == [str(x) for x in b]
    if isinstance(b, str) and isinstance(a, dict):
        try:
            return json.loads(b) == a
        except ValueError:
            return False
    return a == b


def apply_stored_spec(args: argparse.Namespace, stored: Dict[str, Any],
                      typed: Iterable[str]) -> List[str]:
    """Fill the options not on the command line from ``stored``; returns one line per
    option given that differs from the stored one (the given value is used)."""
    typed = set(typed)
    differing = []
    for name, value in stored.items():
        if not hasattr(args, name):
            continue
        given = getattr(args, "dataset", None) if name == "datasets" and \
            getattr(args, "dataset", None) else getattr(args, name)
        if name in typed:
            if name == "datasets" and isinstance(given, str):
                given = [given]
            if not _same(value, given):
                differing.append(f"--{name} {_text(given)} differs from the sweep's launch "
                                 f"({_text(value)}, in {SPEC_FILE}); using the value given")
            continue
        setattr(args, name, value)
    return differing


def _text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return json.dumps(value) if isinstance(value, dict) else str(value)


def remembered(parser: argparse.ArgumentParser, args: argparse.Namespace,
               argv: Sequence[str]) -> Tuple[bool, List[str]]:
    """``status`` / ``delete_incomplete``: apply the sweep folder's stored spec to ``args``
    (see module docstring); returns (whether a spec was found, the differing options)."""
    stored = read_spec(args.output_dir) if args.output_dir else None
    if stored is None:
        return False, []
    return True, apply_stored_spec(args, stored, typed_options(parser, argv))
