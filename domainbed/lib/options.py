"""Command-line options declared once, as typed dataclass fields.

A field declared with ``option(...)`` carries its help text, choices and flag details; the
argparse flag ``--<field name>`` is generated from it (``add_dataclass_arguments``), its type
from the field's annotation:

- ``int`` / ``float`` / ``str``, or ``Optional[...]`` of one: ``--name VALUE``;
- ``List[X]`` or ``Optional[List[X]]``: ``--name V1 V2 ...`` (``nargs="+"``, each an X);
- ``bool``: ``--name`` sets True (``store_true``);
- ``Optional[bool]``: ``--name`` sets True, None means "not given"; ``negative=(FLAG, HELP)``
  adds the flag that sets False.

``option_defaults(cls)`` are the values the flags default to (no parser needed) and
``from_namespace(cls, ns)`` builds the dataclass back from a parsed namespace::

    @dataclass
    class Options:
        steps: Optional[int] = option(None, help="number of steps")
        fast: bool = option(False, help="skip the checks")

    add_dataclass_arguments(parser, Options)
    options = from_namespace(Options, parser.parse_args())

Torch-free: dataclasses and typing only (it calls the add_argument of the parser it is given).
"""

import dataclasses
import typing
from typing import (Any, Callable, Dict, List, MutableSet, Optional, Sequence, Tuple, Type,
                    TypeVar, Union)

METADATA_KEY = "domainbed.option"  # the key of a field's ``Flag`` in its metadata

T = TypeVar("T")
_FROM_FIELD = object()  # ``cli_default`` not given: the flag defaults to the field's default
_Target = Any  # a parser or one of its argument groups: anything with ``add_argument``


@dataclasses.dataclass(frozen=True)
class Flag:
    """How one field appears on the command line (see ``option``)."""

    help: Optional[str] = None
    choices: Optional[Sequence[Any]] = None
    metavar: Optional[str] = None
    nargs: Optional[str] = None
    action: Any = None
    type: Optional[Callable[[str], Any]] = None
    cli_default: Any = _FROM_FIELD
    aliases: Tuple[str, ...] = ()
    negative: Optional[Tuple[str, str]] = None
    shared: bool = False


def option(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING,
           help: Optional[str] = None, choices: Optional[Sequence[Any]] = None,
           metavar: Optional[str] = None, nargs: Optional[str] = None, action: Any = None,
           type: Optional[Callable[[str], Any]] = None, cli_default: Any = _FROM_FIELD,
           aliases: Sequence[str] = (), negative: Optional[Tuple[str, str]] = None,
           shared: bool = False) -> Any:
    """A dataclass field that is also the flag ``--<name>``.

    ``help``, ``choices``, ``metavar``, ``nargs`` and ``action`` (a name or an
    ``argparse.Action`` class) are argparse's; ``type`` parses the flag's text (default: from
    the annotation); ``cli_default`` is the flag's default when it differs from the field's
    (a field without a default: None); ``aliases`` are more option strings; ``negative``
    (``(flag, help)``) adds the flag that stores False in an ``Optional[bool]`` field;
    ``shared``: an option another part of the command line may declare as well (the field
    then reads that flag, see ``add_dataclass_arguments``).
    """
    flag = Flag(help=help, choices=tuple(choices) if choices is not None else None,
                metavar=metavar, nargs=nargs, action=action, type=type,
                cli_default=cli_default, aliases=tuple(aliases), negative=negative,
                shared=shared)
    return dataclasses.field(default=default, default_factory=default_factory,
                             metadata={METADATA_KEY: flag})


def flag_of(f: dataclasses.Field) -> Optional[Flag]:
    """The ``Flag`` of a field declared with ``option``, else None."""
    return f.metadata.get(METADATA_KEY)


def option_fields(cls: type) -> List[dataclasses.Field]:
    """The fields of ``cls`` declared with ``option``, in declaration order."""
    return [f for f in dataclasses.fields(cls) if flag_of(f) is not None]


def field_types(cls: type) -> Dict[str, Tuple[type, bool]]:
    """Each field's (item type, is a list) from its annotation (``Optional`` removed):
    ``List[int]`` -> ``(int, True)``, ``Optional[float]`` -> ``(float, False)``."""
    hints = typing.get_type_hints(cls)
    return {f.name: _unwrap(hints[f.name])[:2] for f in dataclasses.fields(cls)}


def _unwrap(hint: Any) -> Tuple[Any, bool, bool]:
    """(item type, is a list, is Optional) of an annotation."""
    optional = False
    if typing.get_origin(hint) is Union:
        rest = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(rest) < len(typing.get_args(hint))
        hint = rest[0] if len(rest) == 1 else hint
    if typing.get_origin(hint) in (list, List):
        args = typing.get_args(hint)
        return (args[0] if args else str), True, optional
    return hint, False, optional


def cli_default(f: dataclasses.Field) -> Any:
    """The default of the field's flag: ``cli_default``, else the field's default (a
    ``default_factory`` is called), else None."""
    flag = flag_of(f)
    if flag is not None and flag.cli_default is not _FROM_FIELD:
        return flag.cli_default
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def option_defaults(cls: type) -> Dict[str, Any]:
    """``{name: default}`` of the flags of ``cls``, as a parser would give them."""
    return {f.name: cli_default(f) for f in option_fields(cls)}


def argparse_kwargs(f: dataclasses.Field, hint: Any) -> Dict[str, Any]:
    """The keyword arguments of ``add_argument`` for one ``option`` field."""
    flag = flag_of(f)
    if flag is None:
        raise TypeError(f"field {f.name!r} is not declared with option()")
    item, many, optional = _unwrap(hint)
    kwargs: Dict[str, Any] = {"dest": f.name, "default": cli_default(f)}
    if flag.action is not None:
        kwargs["action"] = flag.action
    elif item is bool and not many:
        if optional:
            kwargs.update(action="store_const", const=True)
        elif kwargs["default"] is False:
            kwargs["action"] = "store_true"
        else:
            raise TypeError(f"bool option {f.name!r} must default to False (or be Optional)")
    if item is not bool or flag.action is not None:
        if flag.type is not None:
            kwargs["type"] = flag.type
        elif item in (int, float):
            kwargs["type"] = item
        elif item is not str and flag.action is None:
            raise TypeError(f"option {f.name!r}: no flag type for {hint!r}; give type=")
    if flag.nargs is not None:
        kwargs["nargs"] = flag.nargs
    elif many and flag.action not in ("append", "extend"):
        kwargs["nargs"] = "+"
    for key in ("choices", "metavar", "help"):
        if getattr(flag, key) is not None:
            kwargs[key] = getattr(flag, key)
    return kwargs


def add_dataclass_arguments(target: _Target, cls: type,
                            declared: Optional[MutableSet[str]] = None) -> List[str]:
    """Add one flag per ``option`` field of ``cls`` to a parser or argument group; returns
    the names added. ``declared``: the option names already on the parser (updated here);
    a ``shared`` field named there is not added again (it reads the existing flag)."""
    hints = typing.get_type_hints(cls)
    added = []
    for f in option_fields(cls):
        flag = flag_of(f)
        if declared is not None and flag.shared and f.name in declared:
            continue
        target.add_argument(f"--{f.name}", *flag.aliases, **argparse_kwargs(f, hints[f.name]))
        if flag.negative is not None:
            target.add_argument(flag.negative[0], dest=f.name, action="store_const",
                                const=False, help=flag.negative[1])
        added.append(f.name)
    if declared is not None:
        declared.update(added)
    return added


def from_namespace(cls: Type[T], ns: Any) -> T:
    """An instance of ``cls`` from a parsed namespace (or any object with the options as
    attributes); an option the namespace lacks takes its field's default."""
    return cls(**{f.name: getattr(ns, f.name) for f in option_fields(cls)
                  if hasattr(ns, f.name)})

