"""One validation layer: every problem of a command's input, found before anything starts.

A ``Rule`` is data: what a value must be (type, range, choices, required, the keys of a
nested object). Tables of rules (training arguments, sweep options, hyperparameters, the
recipe schema) are checked by one function, :func:`check`, which returns one line per
problem; callers collect the lines of every check and raise one ``ValidationError`` holding
all of them, so a user sees every problem at once. Torch-free.
"""

import difflib
import math
from dataclasses import dataclass
from typing import Any, Iterable, List, Mapping, Optional, Sequence, Tuple

from domainbed.errors import DomainBedError

Names = Optional[Mapping[str, Sequence[str]]]  # kind of name -> the names it accepts

EXIT_STATUS = 2  # a command given bad input exits with this status, having written nothing


class ValidationError(DomainBedError):
    """Bad input: ``problems`` holds one line per problem (the message joins them)."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def raise_if_any(problems: Sequence[str]) -> None:
    """Raise ``ValidationError`` when ``problems`` is not empty."""
    if problems:
        raise ValidationError(problems)


def error_lines(exc: BaseException) -> List[str]:
    """The lines a command prints for ``exc``: every problem of a ``ValidationError``, else
    the one line of the message (see ``domainbed.errors.one_line``)."""
    from domainbed.errors import one_line
    if isinstance(exc, ValidationError):
        return list(exc.problems)
    return [one_line(exc)]


@dataclass(frozen=True)
class Rule:
    """What a value must be.

    ``kind``: ``int`` (not bool), ``number`` (int or float, finite, not bool), ``bool``,
    ``str``, ``list`` (of ``items``), ``object`` (a dict with the keys of ``children``; an
    unknown key is a problem naming the closest known one), ``map`` (a dict of free keys,
    each value checked by ``items``; ``keys`` lists the allowed keys when given), or ``any``.
    ``alternatives``: the value may instead match one of these rules (e.g. a number or a
    per-dataset map). Ranges are inclusive unless ``min_open`` / ``max_open``.
    """

    kind: str = "any"
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    min_open: bool = False
    max_open: bool = False
    choices: Optional[Tuple[Any, ...]] = None
    nullable: bool = False
    required: bool = False
    items: Optional["Rule"] = None
    children: Optional[Mapping[str, "Rule"]] = None
    keys: Optional[Tuple[str, ...]] = None
    alternatives: Tuple["Rule", ...] = ()
    non_empty: bool = False
    fix: str = ""  # how to fix a bad value, appended to the problem
    hide_null: bool = False  # a command-line flag: None means "not given", not a value
    names: Optional[str] = None  # a str (or a map's keys) must be a known name of this kind

    def describe(self) -> str:
        """The accepted values in words, e.g. ``an integer >= 1``."""
        if self.choices is not None:
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        else:
            text = {"int": "an integer", "number": "a finite number", "bool": "true or false",
                    "str": "a string", "list": "a list", "object": "an object",
                    "map": "an object", "any": "a value"}[self.kind]
            if self.kind == "list" and self.items is not None:
                text = f"a {'non-empty ' if self.non_empty else ''}list of " \
                       f"{_plural(self.items.describe())}"
            text += self._range_text()
            if self.kind == "map" and self.names == "dataset":
                text = 'a per-dataset object {"default": ..., "<dataset>": ...}'
        for alternative in self.alternatives:
            text += f", or {alternative.describe()}"
        if self.nullable and not self.hide_null:
            text += ", or null"
        return text

    def _range_text(self) -> str:
        low, high = self.minimum, self.maximum
        if low is not None and high is not None:
            return (f" in {'(' if self.min_open else '['}{_num(low)}, {_num(high)}"
                    f"{')' if self.max_open else ']'}")
        if low is not None:
            return f" {'>' if self.min_open else '>='} {_num(low)}"
        if high is not None:
            return f" {'<' if self.max_open else '<='} {_num(high)}"
        return ""


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(value)


def _plural(text: str) -> str:
    for article in ("an ", "a "):
        if text.startswith(article):
            return text[len(article):].replace("integer", "integers", 1) \
                .replace("number", "numbers", 1).replace("string", "strings", 1)
    return text


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """An int or a finite float (bool excluded)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and math.isfinite(value)


_KIND_TEST = {
    "int": is_int,
    "number": is_number,
    "bool": lambda v: isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "list": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "map": lambda v: isinstance(v, dict),
    "any": lambda v: True,
}


def closest(name: str, known: Iterable[str]) -> Optional[str]:
    """The known name closest to ``name`` (difflib, ignoring case), or None."""
    by_lower = {}
    for k in sorted(known):
        by_lower.setdefault(str(k).lower(), k)
    found = difflib.get_close_matches(str(name).lower(), list(by_lower), n=1, cutoff=0.5)
    return by_lower[found[0]] if found else None


def unknown_key(where: str, key: str, known: Iterable[str]) -> str:
    """The problem line of an unknown key, naming the closest known one."""
    known = sorted(known)
    near = closest(key, known)
    hint = f"did you mean {near!r}? " if near else ""
    return f"{where}: unknown key {key!r}; {hint}known keys: {', '.join(known)}"


def _in_range(value: float, rule: Rule) -> bool:
    if rule.minimum is not None and (value < rule.minimum or
                                     (rule.min_open and value == rule.minimum)):
        return False
    if rule.maximum is not None and (value > rule.maximum or
                                     (rule.max_open and value == rule.maximum)):
        return False
    return True


def _bad(where: str, value: Any, rule: Rule) -> str:
    fix = f"; {rule.fix}" if rule.fix else ""
    return f"{where}: {_show(value)} is not {rule.describe()}{fix}"


def _show(value: Any) -> str:
    text = repr(value)
    if isinstance(value, float) and not math.isfinite(value):
        text = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}[repr(value)]
    return text if len(text) <= 60 else text[:57] + "..."


def _name_problem(where: str, value: str, kind: str, known: Names) -> List[str]:
    names = known.get(kind) if known else None
    if names is None or value in names:
        return []
    near = closest(value, names)
    hint = f"did you mean {near!r}? " if near else ""
    return [f"{where}: {value!r} is not a known {kind}; {hint}known: {', '.join(names)}"]


def _own_problems(value: Any, rule: Rule, where: str, known: Names = None) -> List[str]:
    """The problems of ``value`` against ``rule`` alone (its alternatives not tried)."""
    if not _KIND_TEST[rule.kind](value):
        return [_bad(where, value, rule)]
    if rule.choices is not None and value not in rule.choices:
        return [_bad(where, value, rule)]
    if rule.kind == "str" and rule.names:
        return _name_problem(where, value, rule.names, known)
    if rule.kind in ("int", "number") and not _in_range(value, rule):
        return [_bad(where, value, rule)]
    if rule.kind == "list":
        if rule.non_empty and not value:
            return [_bad(where, value, rule)]
        problems: List[str] = []
        if rule.items is not None:
            for i, item in enumerate(value):
                problems += check(item, rule.items, f"{where}[{i}]", known)
        return problems
    if rule.kind == "object" and rule.children is not None:
        return check_object(value, rule.children, where, known)
    if rule.kind == "map":
        problems = []
        for key, item in value.items():
            problems += _map_key_problems(where, key, rule, known)
            if rule.items is not None:
                problems += check(item, rule.items, f"{where}.{key}", known)
        return problems
    return []


def _map_key_problems(where: str, key: str, rule: Rule, known: Names) -> List[str]:
    """A map's key must be one of ``rule.keys`` or a known name of ``rule.names``."""
    fixed = list(rule.keys or ())
    names = list(known.get(rule.names) or []) if (known and rule.names) else None
    if rule.keys is None and names is None:
        return []
    if key in fixed or (names is not None and key in names):
        return []
    if names is None and rule.names:  # the names are unknown here: only fixed keys tested
        return []
    return [unknown_key(where, key, fixed + (names or []))]


def check(value: Any, rule: Rule, where: str, known: Names = None) -> List[str]:
    """One line per problem of ``value`` (named ``where``) against ``rule``; [] when fine.
    With ``alternatives``, the first rule whose kind fits the value decides. ``known`` maps
    a kind of name (``Rule.names``, e.g. "dataset") to the names it accepts."""
    if value is None:
        return [] if rule.nullable else [f"{where}: null is not {rule.describe()}"
                                         + (f"; {rule.fix}" if rule.fix else "")]
    for candidate in (rule,) + tuple(rule.alternatives):
        if _KIND_TEST[candidate.kind](value):
            return _own_problems(value, candidate, where, known)
    return [_bad(where, value, rule)]


def check_object(value: Mapping[str, Any], children: Mapping[str, Rule],
                 where: str, known: Names = None) -> List[str]:
    """The problems of a dict against its table of keys: unknown keys (with the closest
    known name), missing required keys, and each value against its rule."""
    problems = []
    for key in value:
        if key not in children:
            problems.append(unknown_key(where, key, children))
    for key, rule in children.items():
        if key not in value:
            if rule.required:
                problems.append(f"{where}: the required key {key!r} is missing "
                                f"({rule.describe()})" + (f"; {rule.fix}" if rule.fix else ""))
            continue
        problems += check(value[key], rule, f"{where}.{key}", known)
    return problems
