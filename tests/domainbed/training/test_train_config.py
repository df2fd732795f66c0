"""TrainConfig: the same flags as the train CLI, the same ``args`` record, and the
conversions from a namespace and from a sweep job's argument dict."""

import argparse
import dataclasses
import json
import os
import typing

import pytest

from domainbed.errors import DomainBedError
from domainbed.scripts.train import build_parser, parse_config
from domainbed.sweep.jobs import make_args_list, train_flags
from domainbed.training import TrainConfig
from domainbed.training.config import default_data_dir
from domainbed.training.run import as_config


def _parser_actions():
    return {a.dest: a for a in build_parser()._actions if a.dest != "help"}


def _field_kind(tp) -> str:
    args = [t for t in typing.get_args(tp) if t is not type(None)]
    base = args[0] if typing.get_origin(tp) is typing.Union else tp
    if typing.get_origin(base) in (list, typing.List):
        return "list[%s]" % typing.get_args(base)[0].__name__
    return base.__name__


def _action_kind(action: argparse.Action) -> str:
    if isinstance(action, argparse._StoreTrueAction):
        return "bool"
    name = (action.type or str).__name__
    return f"list[{name}]" if action.nargs == "+" else name


def test_fields_are_the_parser_flags_with_the_same_defaults_and_types(monkeypatch):
    monkeypatch.setenv("DOMAINBED_DATA", "/some/data")
    actions = _parser_actions()
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    assert list(fields) == list(actions)  # same names, same order
    defaults = TrainConfig()
    for name, action in actions.items():
        assert getattr(defaults, name) == action.default, name
        assert _field_kind(fields[name].type) == _action_kind(action), name
        if action.choices:
            with pytest.raises(DomainBedError, match=name):
                TrainConfig(**{name: "no_such_choice"})
    assert defaults.data_dir == "/some/data"
    assert vars(build_parser().parse_args([])) == defaults.as_record()


@pytest.mark.parametrize("argv", [
    [],
    ["--dataset", "Debug28", "--algorithm", "SWAD", "--test_envs", "0", "2", "--steps", "7",
     "--hparams", '{"lr": 0.01}', "--hparams_seed", "3", "--trial_seed", "2", "--seed", "9",
     "--checkpoint_freq", "2", "--holdout_fraction", "0.3", "--output_dir", "o",
     "--data_dir", "d", "--task", "domain_adaptation", "--uda_holdout_fraction", "0.5",
     "--skip_model_save", "--save_model_every_checkpoint", "--init_from", "w.safetensors",
     "--init_part", "featurizer", "--augmented_validation", "--num_workers", "0",
     "--keep_checkpoint", "--full_evaluation", "--precision", "bf16", "--channels_last",
     "--cudnn_benchmark", "--hparams_space", "mild"],
    ["--test_envs", "-1"],
])
def test_as_record_is_what_vars_of_the_namespace_was(argv):
    ns = build_parser().parse_args(argv)
    record = TrainConfig.from_namespace(ns).as_record()
    assert record == vars(ns)
    assert list(record) == list(vars(ns))
    assert json.dumps(record, sort_keys=True) == json.dumps(vars(ns), sort_keys=True)
    assert parse_config(argv) == TrainConfig.from_namespace(ns)
    assert as_config(ns) == as_config(TrainConfig.from_namespace(ns))


def test_as_record_is_a_fresh_copy():
    config = TrainConfig(test_envs=[1, 2])
    record = config.as_record()
    record["test_envs"].append(3)
    assert config.test_envs == [1, 2]


def test_a_namespace_missing_newer_flags_takes_their_defaults():
    ns = build_parser().parse_args(["--steps", "4"])
    del ns.cudnn_benchmark, ns.precision
    config = TrainConfig.from_namespace(ns)
    assert (config.steps, config.cudnn_benchmark, config.precision) == (4, False, "fp32")


def _jobs_dicts():
    plain = make_args_list(1, ["Debug28"], ["ERM"], 0, 2, 5, "/data", "domain_generalization",
                           0.2, True, '{"lr": 0.001}', seed=3, checkpoint_freq=2,
                           skip_model_save=True)
    upstream = make_args_list(2, ["Debug28"], ["ERM"], 0, 1, None, "/data",
                              "domain_generalization", 0.2, False, None, upstream_args=True)
    extra = [{"dataset": "Debug28", "test_envs": [0, 1], "hparams": {"b": 1, "a": 2},
              "holdout_fraction": 0, "steps": "3", "init_from": "w.safetensors",
              "init_part": "classifier", "keep_checkpoint": True, "full_evaluation": False,
              "num_workers": None, "output_dir": "out"}]
    return plain + upstream + extra


@pytest.mark.parametrize("train_args", _jobs_dicts())
def test_from_train_args_is_what_the_jobs_command_line_parses_to(train_args):
    parsed = build_parser().parse_args(train_flags(train_args))
    config = TrainConfig.from_train_args(train_args)
    assert config.as_record() == vars(parsed)
    assert all(type(v) is type(vars(parsed)[k]) for k, v in config.as_record().items())


def test_an_unknown_train_arg_names_the_closest_field():
    with pytest.raises(DomainBedError, match="'test_env'.*'test_envs'"):
        TrainConfig.from_train_args({"dataset": "Debug28", "test_env": [0]})
    with pytest.raises(DomainBedError, match="'chekpoint_freq'.*'checkpoint_freq'"):
        TrainConfig.from_train_args({"chekpoint_freq": 3})


def test_a_train_arg_of_the_wrong_type_is_an_error():
    with pytest.raises(DomainBedError, match="steps"):
        TrainConfig.from_train_args({"steps": "many"})
    with pytest.raises(DomainBedError, match="keep_checkpoint"):
        TrainConfig.from_train_args({"keep_checkpoint": "yes"})


def test_the_linear_probe_config_is_the_one_its_old_command_line_parsed_to():
    from domainbed_aux.init import probe as lp
    specs = [lp.LinearProbeSpec("Debug28", [0], 1),
             lp.LinearProbeSpec("Debug28", [0, 2], 3, data_dir="/x", hparams={"b": 1, "a": 2},
                                steps=7, checkpoint_freq=0, holdout_fraction=0.3,
                                hparams_space="mild")]
    for spec in specs:
        argv = ["--dataset", spec.dataset, "--algorithm", lp.ALGORITHM, "--hparams_seed", "0",
                "--trial_seed", str(spec.trial_seed), "--seed", "0",
                "--test_envs", *[str(t) for t in spec.test_envs], "--output_dir", "/run",
                "--holdout_fraction", str(spec.holdout_fraction), "--init_from", "/phi.st",
                "--init_part", "featurizer", "--hparams_space", spec.hparams_space,
                # the probe records an absolute data dir (the default one too)
                "--data_dir", os.path.abspath(spec.data_dir or default_data_dir())]
        if spec.hparams:
            argv += ["--hparams", json.dumps(spec.hparams, sort_keys=True)]
        if spec.steps is not None:
            argv += ["--steps", str(spec.steps)]
        if spec.checkpoint_freq is not None:
            argv += ["--checkpoint_freq", str(spec.checkpoint_freq)]
        expected = vars(build_parser().parse_args(argv))
        assert lp._train_args(spec, "/run", "/phi.st").as_record() == expected


def test_train_takes_a_config_and_records_it_as_args(tmp_path):
    from domainbed.lib import run_dir
    from domainbed.training.run import train
    config = TrainConfig(dataset="Debug28", algorithm="ERM", steps=2, checkpoint_freq=1,
                         data_dir=str(tmp_path / "data"), output_dir=str(tmp_path / "run"),
                         test_envs=[1], skip_model_save=True)
    assert train(config) == config.output_dir
    with open(tmp_path / "run" / run_dir.RESULTS, encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    assert [r["step"] for r in records] == [0, 1]
    assert all(r["args"] == config.as_record() for r in records)
    assert (tmp_path / "run" / run_dir.DONE).exists()
