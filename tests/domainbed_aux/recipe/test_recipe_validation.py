"""A recipe file is checked at every level before anything starts, and runs no code it
names: its report stage is a registered report provider unless the command line allows
another module."""

import glob
import json
import logging
import os
import re
import sys

import pytest

from domainbed.scripts import sweep as sweep_cli
from domainbed_aux import recipe as recipe_lib
from domainbed_aux.recipe import providers, steps
from domainbed_aux.recipe.spec import RecipeValidationError
from tests.fixtures.paths import REPO

EMBEDDED = os.path.join(REPO, "sweeps", "embedded.json")


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(REPO, "sweeps", "*.json"))))
def test_every_recipe_of_the_repository_is_valid(path):
    recipe_lib.load_recipe(path)


def _write(tmp_path, recipe):
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(recipe))
    return str(path)


def _embedded(**changes):
    recipe = json.load(open(EMBEDDED))
    for key, value in changes.items():
        recipe[key] = value
    return recipe


def _launch(tmp_path, path, *extra):
    return sweep_cli.main(["launch", "--recipe", path, "--output_dir", str(tmp_path / "out"),
                           "--data_dir", str(tmp_path / "data"), "--command_launcher",
                           "local", "--skip_confirmation", *extra])


def test_nested_problems_are_all_reported_at_once_and_nothing_starts(tmp_path, capsys):
    recipe = _embedded(steps="abc", datasets=["EmbeddedShape"])
    recipe["target"]["n_hparam"] = 2
    recipe["aux"]["n_hparam"] = 2
    del recipe["pretrain"]["dataset"]
    path = _write(tmp_path, recipe)
    assert _launch(tmp_path, path) == 2
    errors = capsys.readouterr().err.splitlines()
    assert all(e.startswith("sweep launch: error: recipe.") for e in errors), errors
    expected = ["recipe.datasets[0]: 'EmbeddedShape' is not a known dataset; did you mean "
                "'EmbeddedShapes'?",
                "recipe.steps: 'abc' is not an integer >= 1",
                "recipe.pretrain: the required key 'dataset' is missing",
                "recipe.aux: unknown key 'n_hparam'; did you mean 'n_hparams'?",
                "recipe.target: unknown key 'n_hparam'; did you mean 'n_hparams'?"]
    assert len(errors) == len(expected)
    for error, fragment in zip(errors, expected):
        assert fragment in error
    assert not (tmp_path / "out").exists() and not (tmp_path / "data").exists()


@pytest.mark.parametrize("change, fragment", [
    ({"target": "ERM"}, "recipe.target: 'ERM' is not an object"),
    ({"hparams": {"lrr": 1e-3}}, "unknown hyperparameter 'lrr' in recipe.hparams"),
    ({"hparams": {"weight_decay": float("inf")}},
     "recipe.hparams weight_decay: Infinity is not a finite number >= 0"),
    ({"hparams": {"batch_size": 2.5}}, "recipe.hparams batch_size: 2.5 is not an integer"),
    ({"checkpoint_freq": {"default": 0}}, "recipe.checkpoint_freq.default: 0 is not"),
    ({"steps": {"default": 150, "EmbeddedShape": 3}},
     "recipe.steps: unknown key 'EmbeddedShape'; did you mean 'EmbeddedShapes'?"),
    ({"train_extra": {"full_evaluaton": True}},
     "recipe.train_extra: unknown key 'full_evaluaton'; did you mean 'full_evaluation'?"),
    ({"train_extra": {"steps": 3}},
     "recipe.train_extra.steps: set by the sweep (or recipe) itself"),
    ({"hparams_space": "wild"}, "recipe.hparams_space: 'wild' is not a known hparams_space"),
    ({"report": {"provider": "tables"}}, "'tables' is not a known report provider"),
])
def test_one_bad_value_is_one_line(tmp_path, capsys, change, fragment):
    path = _write(tmp_path, _embedded(**change))
    with pytest.raises(RecipeValidationError) as info:
        recipe_lib.load_recipe(path)
    assert len(info.value.problems) == 1 and fragment in info.value.problems[0], \
        info.value.problems


def test_the_dry_run_shows_the_recipes_lp_steps(capsys, tmp_path):
    assert sweep_cli.main(["launch", "--recipe", EMBEDDED, "--output_dir",
                           str(tmp_path / "out"), "--command_launcher", "dummy"]) == 0
    with open(EMBEDDED) as f:
        lp_steps = json.load(f)["hparams"]["lp_steps"]
    assert lp_steps != 200
    targets = [l for l in capsys.readouterr().out.splitlines() if "test_env=0 ERM" in l]
    assert targets and all(re.search(rf"lp_steps={lp_steps}\b", l) for l in targets)  # not 200


# ---- report providers: no code from a data file ------------------------------------------

def test_a_recipe_naming_an_installed_module_is_refused_before_anything_runs(tmp_path, capsys):
    marker = tmp_path / "ran"
    recipe = _embedded(report={"module": "timeit", "args": [
        "-n", "1", "-s", f"open({str(marker)!r}, 'w').close()", "pass"]})
    path = _write(tmp_path, recipe)
    assert _launch(tmp_path, path) == 2
    (error,) = capsys.readouterr().err.splitlines()
    assert "recipe.report.module: 'timeit' is not a registered report provider" in error
    assert "--allow_report_module timeit" in error
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_the_report_stage_refuses_an_unregistered_module_unless_allowed(tmp_path, caplog):
    marker = tmp_path / "ran"
    command = [sys.executable, "-m", "timeit", "-n", "1", "-s",
               f"open({str(marker)!r}, 'w').close()", "pass"]
    with pytest.raises(recipe_lib.RecipeError, match="not a registered report provider"):
        steps.run_report(command)
    assert not marker.exists()
    caplog.set_level(logging.INFO)
    steps.run_report(command, allowed_modules=("timeit",))
    assert marker.exists()
    warning = next(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "running timeit, which is not a registered report provider" in warning
    assert "--allow_report_module" in warning and command[-1] in warning


def test_allowing_a_module_on_the_command_line_passes_validation(tmp_path):
    path = _write(tmp_path, _embedded(report={"module": "timeit"}))
    recipe = recipe_lib.load_recipe(path, allowed_report_modules=("timeit",))
    assert recipe["report"]["module"] == "timeit"


def test_providers_come_from_entry_points_and_ours_is_registered():
    assert providers.report_providers()["ratatouille"] == "domainbed_aux.scripts.report"
    assert providers.is_registered("domainbed_aux.scripts.report")
    assert not providers.is_registered("timeit")
    command = steps.report_command({"output_root": "o", "report": {"provider": "ratatouille"}},
                                   ["a"])
    assert command[1:3] == ["-m", "domainbed_aux.scripts.report"]


def test_looking_for_a_module_never_imports_its_package(tmp_path, monkeypatch):
    package = tmp_path / "sneaky"
    package.mkdir()
    (package / "__init__.py").write_text(f"open({str(tmp_path / 'imported')!r}, 'w').close()\n")
    (package / "report.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert providers.module_exists("sneaky.report")
    assert not providers.module_exists("sneaky.absent")
    assert not providers.module_exists("no_such_top_level_module")
    assert not (tmp_path / "imported").exists()
    assert "sneaky" not in sys.modules
