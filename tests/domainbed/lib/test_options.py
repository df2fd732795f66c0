"""domainbed.lib.options: argparse flags generated from typed dataclass fields."""

import argparse
from dataclasses import dataclass, field
from typing import ClassVar, Dict, List, Optional

import pytest

from domainbed.lib.options import (add_dataclass_arguments, field_types, flag_of,
                                   from_namespace, option, option_defaults, option_fields)


class _Remember(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        namespace.remembered = True


@dataclass
class Toy:
    GROUP: ClassVar[str] = "toy options"  # a class variable is no option

    name: str = option("a", help="a name")
    count: int = option(3, metavar="N", help="how many")
    ratio: Optional[float] = option(None, help="a ratio")
    envs: List[int] = option(default_factory=lambda: [0], help="environments")
    words: Optional[List[str]] = option(None)
    fast: bool = option(False, help="go fast")
    mode: str = option("x", choices=("x", "y"), help="the mode")
    tri: Optional[bool] = option(None, negative=("--no_tri", "say no"), help="say yes")
    extra: Dict[str, int] = option(default_factory=dict, type=str, cli_default=None)
    picked: Optional[str] = option(None, action=_Remember)
    many: Optional[List[str]] = option(None, action="append", metavar="M")
    alias: int = option(1, aliases=("--other",))
    internal: int = field(default=7)  # declared without option(): no flag


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="toy")
    add_dataclass_arguments(parser, Toy)
    return parser


def test_each_option_field_is_a_flag_with_its_default():
    ns = _parser().parse_args([])
    assert vars(ns) == {"name": "a", "count": 3, "ratio": None, "envs": [0], "words": None,
                        "fast": False, "mode": "x", "tri": None, "extra": None,
                        "picked": None, "many": None, "alias": 1}
    assert option_defaults(Toy) == vars(ns)  # known without a parser
    assert [f.name for f in option_fields(Toy)] == list(vars(ns))
    assert flag_of([f for f in Toy.__dataclass_fields__.values()
                    if f.name == "internal"][0]) is None


def test_types_come_from_the_annotations():
    ns = _parser().parse_args(["--name", "b", "--count", "5", "--ratio", "0.5", "--envs", "1",
                               "2", "--words", "p", "q", "--fast", "--mode", "y",
                               "--extra", '{"k": 1}', "--other", "4"])
    assert (ns.name, ns.count, ns.ratio, ns.envs, ns.words) == ("b", 5, 0.5, [1, 2], ["p", "q"])
    assert ns.fast is True and ns.mode == "y" and ns.extra == '{"k": 1}' and ns.alias == 4
    assert field_types(Toy)["envs"] == (int, True)
    assert field_types(Toy)["ratio"] == (float, False)
    with pytest.raises(SystemExit):
        _parser().parse_args(["--count", "many"])


def test_choices_are_checked(capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["--mode", "z"])
    assert "invalid choice: 'z' (choose from 'x', 'y')" in capsys.readouterr().err


def test_optional_bool_has_a_negative_flag_and_none_means_not_given():
    assert _parser().parse_args(["--tri"]).tri is True
    assert _parser().parse_args(["--no_tri"]).tri is False
    assert _parser().parse_args([]).tri is None


def test_custom_and_append_actions_are_kept():
    ns = _parser().parse_args(["--picked", "p", "--many", "a", "--many", "b"])
    assert ns.picked == "p" and ns.remembered is True and ns.many == ["a", "b"]


def test_help_texts_metavars_and_groups():
    parser = argparse.ArgumentParser(prog="toy")
    add_dataclass_arguments(parser.add_argument_group(Toy.GROUP), Toy)
    text = parser.format_help()
    for line in ("toy options:", "--name NAME", "a name", "--count N", "how many",
                 "--fast", "go fast", "--mode {x,y}", "--tri", "say yes", "--no_tri",
                 "say no", "--many M", "--alias ALIAS, --other ALIAS"):
        assert line in text, line
    assert "--internal" not in text


def test_from_namespace_builds_the_dataclass_and_fills_what_is_missing():
    toy = from_namespace(Toy, _parser().parse_args(["--count", "9", "--envs", "4"]))
    assert isinstance(toy, Toy) and toy.count == 9 and toy.envs == [4] and toy.internal == 7
    partial = from_namespace(Toy, argparse.Namespace(count=2))
    assert partial == Toy(count=2)


def test_shared_options_are_added_once():
    @dataclass
    class Shared:
        count: int = option(3, shared=True)
        second: int = option(0)

    parser = argparse.ArgumentParser()
    declared = set()
    add_dataclass_arguments(parser, Toy, declared)
    assert add_dataclass_arguments(parser, Shared, declared) == ["second"]
    assert "count" in declared and "second" in declared


def test_a_bool_option_must_default_to_false_and_odd_types_need_a_parser():
    @dataclass
    class OnByDefault:
        on: bool = option(True)

    @dataclass
    class Odd:
        table: Dict[str, int] = option(default_factory=dict)

    for cls in (OnByDefault, Odd):
        with pytest.raises(TypeError):
            add_dataclass_arguments(argparse.ArgumentParser(), cls)
