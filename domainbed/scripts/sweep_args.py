"""The ``sweep`` command line: its parser, generated from the declared options (the fields of
``SweepSpec``, the launchers' and the extensions' options dataclasses), the spec of a parsed
command line, and, for ``status`` / ``delete_incomplete``, the options left out of it, taken
from the sweep folder's ``sweep.json`` (``domainbed.sweep.memory``).

Upstream DomainBed's flags are kept; the paper's code words ``--dataset D`` and
``--test_env k`` are accepted too.
"""

import argparse
import json
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple

from domainbed.errors import DomainBedError
from domainbed.lib.options import add_dataclass_arguments
from domainbed.scripts.cli import add_launcher_arguments
from domainbed.sweep.jobs import Job
from domainbed.sweep.memory import SPEC_FILE, read_spec
from domainbed.sweep.options import (NOT_SPEC, extension_options, list_jobs, load_extensions,
                                     parse_train_extra)
from domainbed.sweep.spec import SweepSpec, spec_fields


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m domainbed.scripts.sweep`` with every registered extension:
    the spec's fields, the command's own flags, then the launchers' and the extensions'
    options."""
    registry = load_extensions()
    parser = argparse.ArgumentParser(
        prog="python -m domainbed.scripts.sweep",
        description="Run a sweep of training jobs: each (trial seed, dataset, algorithm, test "
                    "envs, hparams seed) is one run directory in --output_dir.")
    parser.add_argument("command", choices=["launch", "delete_incomplete", "status"])
    declared: Set[str] = set()
    add_dataclass_arguments(parser, SweepSpec, declared)
    parser.add_argument("--dataset", default=None, help="one dataset (same as --datasets D)")
    parser.add_argument("--command_launcher", default="local",
                        help=f"one of: {', '.join(registry.names())}")
    parser.add_argument("--skip_confirmation", action="store_true")
    parser.add_argument("--stage", default=None, metavar="NAME",
                        help="with a multi-stage plan (e.g. --recipe): run this stage only, "
                             "here (what a SLURM stage job runs)")
    parser.add_argument("--only", nargs="+", default=None, metavar="STAGE",
                        help="with a multi-stage plan run locally: run only these stages")
    declared.update(NOT_SPEC + ("dataset",))
    for name in registry.names():
        add_launcher_arguments(parser, registry.get(name))
    for options_class in extension_options():
        title = getattr(options_class, "GROUP", None)
        add_dataclass_arguments(parser.add_argument_group(title) if title else parser,
                                options_class, declared)
    return parser


def datasets_of(args, default: Optional[List[str]] = None) -> Optional[List[str]]:
    """``--dataset D`` or ``--datasets D1 D2 ...`` of a parsed command line (else
    ``default``)."""
    dataset = getattr(args, "dataset", None)
    if dataset is not None:
        if args.datasets is not None and list(args.datasets) != [dataset]:
            raise DomainBedError("give either --dataset D or --datasets D1 D2 ..., not both")
        return [dataset]
    if args.datasets is not None:
        return list(args.datasets)
    return default


def from_namespace(ns: argparse.Namespace, mode: str = "launch") -> SweepSpec:
    """The spec of a parsed ``sweep`` command line (``--dataset D`` = ``--datasets D``)."""
    values = vars(ns)
    fields = set(spec_fields())
    core = {k: values[k] for k in fields if k in values}
    core["datasets"] = datasets_of(ns, default=None)
    core["train_extra"] = parse_train_extra(values.get("train_extra"))
    if core.get("algorithms") is not None:
        core["algorithms"] = list(core["algorithms"])
    options = {k: v for k, v in values.items()
               if k not in fields and k not in NOT_SPEC and k != "dataset"}
    return SweepSpec(mode=mode, options=options, **core)


def jobs_from_args(args: argparse.Namespace,
                   train_command: Optional[Sequence[str]] = None) -> List[Job]:
    """The jobs of a parsed command line (see ``list_jobs``)."""
    return list_jobs(from_namespace(args), train_command)



# ------------------------------------------------- options left out of the command line

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
