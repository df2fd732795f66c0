"""Base hyperparameters equal upstream's (ALGORITHMS.md section H) for every algorithm, and
unknown --hparams keys are refused with the closest known name."""

import json
import os

import numpy as np
import pytest

from domainbed import algorithms, hparams_registry
from domainbed.errors import DomainBedError
from domainbed.lib.misc import seed_hash

from tests.fixtures.paths import REPO
SEEDS = [0, 1, 2, 7, 123, 2 ** 20 + 3]
DATASETS = ["Debug28", "VLCS", "DomainNet"]  # small images, big images, DomainNet's batch size


def draw(seed, name, fn):
    return fn(np.random.RandomState(seed_hash(seed, name)))


def expected_base(algorithm, dataset, seed):
    """(default, random) of every base name, written from section H independently."""
    small = dataset in ("Debug28", "RotatedMNIST", "ColoredMNIST")
    const = lambda v: (v, v)  # noqa: E731
    expected = {
        "data_augmentation": const(True), "resnet18": const(False),
        "resnet50_augmix": const(False),  # our one departure: upstream's default is True
        "dinov2": const(False), "vit": const(False), "vit_attn_tune": const(False),
        "freeze_bn": const(False), "lars": const(False), "linear_steps": const(500),
        "resnet_dropout": (0.0, draw(seed, "resnet_dropout", lambda r: r.choice([0., .1, .5]))),
        "vit_dropout": (0.0, draw(seed, "vit_dropout", lambda r: r.choice([0., .1, .5]))),
        "class_balanced": const(False),
        "nonlinear_classifier": (False, draw(seed, "nonlinear_classifier",
                                             lambda r: bool(r.choice([False, False])))),
    }
    if algorithm == "ADRMX":
        lrs = [5e-4, 1e-3, 2e-3, 3e-3] if small else [2e-5, 3e-5, 4e-5, 5e-5]
        expected["lr"] = (3e-3 if small else 3e-5, draw(seed, "lr", lambda r: r.choice(lrs)))
    elif small:
        expected["lr"] = (1e-3, draw(seed, "lr", lambda r: 10 ** r.uniform(-4.5, -2.5)))
    else:
        expected["lr"] = (5e-5, draw(seed, "lr", lambda r: 10 ** r.uniform(-5, -3.5)))
    if small:
        expected["weight_decay"] = const(0.0)
        expected["batch_size"] = (64, draw(seed, "batch_size",
                                           lambda r: int(2 ** r.uniform(3, 9))))
        return expected
    expected["weight_decay"] = (0.0, draw(seed, "weight_decay",
                                          lambda r: 10 ** r.uniform(-6, -2)))
    if algorithm == "ARM":
        expected["batch_size"] = const(8)
    elif algorithm == "RDM":
        big = dataset in ("DomainNet", "TerraIncognita")
        expected["batch_size"] = (40, draw(seed, "batch_size", lambda r: int(r.uniform(30, 60)))) \
            if big else (88, draw(seed, "batch_size", lambda r: int(r.uniform(70, 100))))
    elif dataset == "DomainNet":
        expected["batch_size"] = (32, draw(seed, "batch_size", lambda r: int(2 ** r.uniform(3, 5))))
    else:
        expected["batch_size"] = (32, draw(seed, "batch_size",
                                           lambda r: int(2 ** r.uniform(3, 5.5))))
    return expected


def upstream_algorithms():
    # read at test time: algorithms registered by other modules are covered when they land
    return [a for a in algorithms.ALGORITHMS if a in algorithms.UPSTREAM_ALGORITHMS]


def test_every_upstream_algorithm_gets_upstreams_base_hparams():
    names = upstream_algorithms()
    assert names[:1] == ["ERM"] and len(names) >= 7
    for algorithm in names:
        for dataset in DATASETS:
            defaults = hparams_registry.default_hparams(algorithm, dataset)
            for seed in SEEDS:
                drawn = hparams_registry.random_hparams(algorithm, dataset, seed)
                for name, (default, value) in expected_base(algorithm, dataset, seed).items():
                    where = (algorithm, dataset, seed, name)
                    assert defaults[name] == default and type(defaults[name]) is type(
                        default), where
                    assert drawn[name] == pytest.approx(value, rel=1e-12), where


def test_every_algorithm_declares_every_base_name():
    base = set(expected_base("ERM", "VLCS", 0))
    for algorithm in algorithms.ALGORITHMS:
        for space in hparams_registry.HPARAM_SPACES:
            assert base <= set(hparams_registry.default_hparams(algorithm, "VLCS", space)), \
                (algorithm, space)


def test_random_hparams_are_deterministic_for_every_algorithm_and_dataset():
    from domainbed import datasets
    for algorithm in algorithms.ALGORITHMS:
        for dataset in datasets.DATASETS:
            first = hparams_registry.random_hparams(algorithm, dataset, 0)
            assert first == hparams_registry.random_hparams(algorithm, dataset, 0)


def test_mild_space_freezes_batch_norm_and_keeps_the_other_switches():
    for seed in SEEDS:
        drawn = hparams_registry.random_hparams("ERM", "VLCS", seed, space="mild")
        assert drawn["freeze_bn"] is True and drawn["resnet50_augmix"] is False
    defaults = hparams_registry.default_hparams("ERM", "VLCS", space="mild")
    assert defaults["freeze_bn"] is True and defaults["linear_steps"] == 500
    assert hparams_registry.default_hparams("ERM", "VLCS")["freeze_bn"] is False


def test_a_typo_is_refused_with_the_closest_known_name():
    for typo, closest in (("lrr", "lr"), ("resnet_dropuot", "resnet_dropout"),
                          ("freezebn", "freeze_bn")):
        with pytest.raises(DomainBedError) as info:
            hparams_registry.check_hparams_keys("ERM", "VLCS", {"lr": 1e-4, typo: 1})
        message = str(info.value)
        assert f"{typo!r}" in message and f"did you mean {closest!r}" in message
        assert "\n" not in message


def test_known_names_are_accepted():
    # declared by another algorithm, read by the networks without a declaration, or
    # registered by a plugin
    hparams_registry.check_hparams_keys(
        "ERM", "VLCS", {"mmd_gamma": 1.0, "pretrained": False, "pretrained_path": "w.pth",
                        "backbone": "resnet18", "vit_dropout": 0.1, "lars": True})
    with pytest.raises(DomainBedError):
        hparams_registry.check_hparams_keys("ERM", "VLCS", {"my_plugin_knob": 1})
    hparams_registry.check_hparams_keys("ERM", "VLCS", {"my_plugin_knob": 1},
                                        extra_known=["my_plugin_knob"])
    hparams_registry.register_known_hparams(["my_plugin_knob"], owner="tests")
    try:
        hparams_registry.check_hparams_keys("ERM", "VLCS", {"my_plugin_knob": 1})
    finally:
        del hparams_registry.KNOWN_HPARAMS["my_plugin_knob"]


def _recipe_stages(recipe):
    """(algorithm, dataset, hparams) of every stage of a recipe file."""
    top = recipe.get("hparams") or {}
    datasets = list(recipe.get("datasets") or [])
    stages = []
    pretrain = recipe.get("pretrain") or {}
    if pretrain:
        stages.append((pretrain.get("algorithm", "ERM"), pretrain["dataset"],
                       dict(top, **(pretrain.get("hparams") or {}))))
    aux = recipe.get("aux") or {}
    for dataset in aux.get("datasets") or datasets:
        stages.append((aux.get("algorithm", "ERM"), dataset, dict(top, **(aux.get("hparams") or {}))))
    target = recipe.get("target") or {}
    for algorithm in target.get("algorithms") or ["ERM"]:
        for dataset in datasets:
            stages.append((algorithm, dataset, dict(top, **(target.get("hparams") or {}))))
    return stages


def test_every_key_the_recipe_files_pass_is_accepted():
    folder = os.path.join(REPO, "sweeps")
    files = sorted(f for f in os.listdir(folder) if f.endswith(".json"))
    assert files
    n_keys = 0
    for name in files:
        with open(os.path.join(folder, name)) as f:
            recipe = json.load(f)
        space = recipe.get("hparams_space", "upstream")
        for algorithm, dataset, hparams in _recipe_stages(recipe):
            hparams_registry.check_hparams_keys(algorithm, dataset, hparams, space=space)
            n_keys += len(hparams)
    assert n_keys > 0


def test_train_stops_with_one_line_on_an_unknown_key(tmp_path, capsys):
    from domainbed.scripts import train
    code = train.main(["--dataset", "Debug28", "--steps", "1", "--output_dir",
                       str(tmp_path / "run"), "--hparams", json.dumps({"batch_sise": 8})])
    captured = capsys.readouterr()
    errors = [line for line in (captured.out + captured.err).splitlines()
              if line.startswith("error:")]
    assert code != 0 and len(errors) == 1
    assert "'batch_sise'" in errors[0] and "did you mean 'batch_size'" in errors[0]
    assert not (tmp_path / "run" / "done").exists()


def test_the_suggestion_prefers_a_name_the_run_declares():
    # "mmd_gama" is close to CORAL's own mmd_gamma; "lambda_d" would be DANN's name
    with pytest.raises(DomainBedError, match="did you mean 'mmd_gamma'"):
        hparams_registry.check_hparams_keys("CORAL", "VLCS", {"mmd_gama": 1})
    with pytest.raises(DomainBedError, match="did you mean 'lr_d'"):
        hparams_registry.check_hparams_keys("DANN", "VLCS", {"lr_dd": 1})


def test_the_names_checked_are_the_names_drawn():
    # known_hparams lists names without drawing values: the same names as the draws
    from domainbed import algorithms
    for dataset in ("VLCS", "EmbeddedShapes", "Debug28"):
        for space in hparams_registry.HPARAM_SPACES:
            for algorithm in algorithms.ALGORITHMS:
                drawn = hparams_registry.random_hparams(algorithm, dataset, 3, space=space)
                names = hparams_registry._declarations(algorithm, dataset, 0, space,
                                                       hparams_registry._Names).values
                assert set(names) == set(drawn), (algorithm, dataset, space)
