"""The train command's flags are generated from TrainConfig's fields: each field declares its
flag (help, choices), and each flag parses back to the field's type and default."""

import dataclasses
import re

import pytest

from domainbed.lib.options import field_types, flag_of
from domainbed.scripts.train import build_command_parser, build_parser
from domainbed.training import TrainConfig, config

# a command-line value per item type, and what it parses to
_SAMPLES = {int: ("7", 7), float: ("0.25", 0.25), str: ("text", "text")}


def _sample(name: str):
    flag = flag_of(next(f for f in dataclasses.fields(TrainConfig) if f.name == name))
    item, many = field_types(TrainConfig)[name]
    if item is bool:
        return [], True
    text, value = _SAMPLES[item]
    if flag.choices:
        text = value = flag.choices[-1]
    return ([text, text], [value, value]) if many else ([text], value)


def test_every_field_declares_its_flag():
    assert all(flag_of(f) is not None for f in dataclasses.fields(TrainConfig))


@pytest.mark.parametrize("name", TrainConfig.field_names())
def test_each_field_flag_parses_to_the_field_type(name):
    words, expected = _sample(name)
    parsed = build_parser().parse_args([f"--{name}", *words])
    assert getattr(parsed, name) == expected
    assert type(getattr(parsed, name)) is type(expected)
    config = TrainConfig.from_namespace(parsed)
    assert getattr(config, name) == expected
    assert {k: v for k, v in config.as_record().items() if k != name} == \
        {k: v for k, v in TrainConfig().as_record().items() if k != name}


def test_defaults_are_the_fields_defaults(monkeypatch):
    monkeypatch.setenv("DOMAINBED_DATA", "/data/here")
    assert vars(build_parser().parse_args([])) == TrainConfig().as_record()
    assert TrainConfig().data_dir == "/data/here"


def test_help_shows_each_field_help_choices_and_default(monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # no wrapped help sentence
    text = build_command_parser().format_help()
    blocks = {" ".join(b.split()).split(" ")[0]: " ".join(b.split())
              for b in re.split(r"\n  (?=-)", text.split("\noptions:\n", 1)[1])}
    for f in dataclasses.fields(TrainConfig):
        flag = flag_of(f)
        line = blocks[f"--{f.name}"]
        if flag.help:
            assert flag.help in line and "(default: " in line, f.name
        if flag.choices:
            assert "{" + ",".join(flag.choices) + "}" in line, f.name
    assert "--restart" in text and "move an existing run directory aside" in text
    for sentence in ("seed of everything else", "which part --init_from loads",
                     "let cuDNN autotune its kernels"):
        assert sentence in text


def test_choices_are_the_ones_validated():
    choices = {f.name: flag_of(f).choices for f in dataclasses.fields(TrainConfig)
               if flag_of(f).choices}
    assert choices == {"task": config.TASKS, "init_part": config.INIT_PARTS,
                       "precision": config.PRECISIONS}
