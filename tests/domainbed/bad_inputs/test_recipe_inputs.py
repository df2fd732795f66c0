"""Bad recipe files, through ``sweep launch --recipe`` (dry run and local) and the older
``domainbed_aux.scripts.recipe``: one line per problem, exit status 2, nothing created (no
output root, no data folder), no code run from the file."""

import copy
import json
import os

import pytest

from domainbed.scripts import sweep as sweep_cli
from domainbed_aux.scripts import recipe as recipe_cli
from tests.domainbed.bad_inputs.common import assert_one_error, run_cli
from tests.fixtures.paths import REPO

with open(os.path.join(REPO, "sweeps", "embedded.json"), encoding="utf-8") as _f:
    EMBEDDED = json.load(_f)


def _set(path, value):
    """A change of the embedded recipe: ``path`` = "target.n_hparam" (None value: delete)."""
    def change(recipe):
        *parents, last = path.split(".")
        node = recipe
        for key in parents:
            node = node[key]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value
    return change


_DELETE = object()

# (id, change, fragment)
CASES = [
    ("steps_text", _set("steps", "abc"), "recipe.steps: 'abc' is not an integer >= 1"),
    ("steps_zero", _set("steps", {"default": 0}), "recipe.steps.default: 0 is not"),
    ("steps_negative", _set("steps", -3), "recipe.steps: -3 is not"),
    ("steps_fraction", _set("steps", 1.5), "recipe.steps: 1.5 is not"),
    ("steps_unknown_dataset", _set("steps", {"default": 5, "EmbeddedShape": 3}),
     "recipe.steps: unknown key 'EmbeddedShape'; did you mean 'EmbeddedShapes'?"),
    ("checkpoint_freq_typo_default", _set("checkpoint_freq", {"defualt": 15}),
     "recipe.checkpoint_freq: unknown key 'defualt'; did you mean 'default'?"),
    ("target_a_string", _set("target", "ERM"), "recipe.target: 'ERM' is not an object"),
    ("target_typo", _set("target.n_hparam", 2),
     "recipe.target: unknown key 'n_hparam'; did you mean 'n_hparams'?"),
    ("aux_typo", _set("aux.n_hparam", 2),
     "recipe.aux: unknown key 'n_hparam'; did you mean 'n_hparams'?"),
    ("pretrain_without_dataset", _set("pretrain.dataset", _DELETE),
     "recipe.pretrain: the required key 'dataset' is missing"),
    ("pretrain_unknown_dataset", _set("pretrain.dataset", "EmbeddedPretrian"),
     "did you mean 'EmbeddedPretrain'?"),
    ("pretrain_steps_negative", _set("pretrain.steps", -1), "recipe.pretrain.steps: -1"),
    ("pretrain_algorithm_unknown", _set("pretrain.algorithm", "Foo"),
     "recipe.pretrain.algorithm: 'Foo' is not a known algorithm"),
    ("pretrain_a_list", _set("pretrain", ["EmbeddedPretrain"]),
     "recipe.pretrain: ['EmbeddedPretrain'] is not an object"),
    ("datasets_misspelt", _set("datasets", ["EmbeddedShape"]),
     "recipe.datasets[0]: 'EmbeddedShape' is not a known dataset; did you mean"),
    ("datasets_empty", _set("datasets", []), "recipe.datasets: [] is not a non-empty list"),
    ("datasets_missing", _set("datasets", _DELETE),
     "recipe: the required key 'datasets' is missing"),
    ("datasets_a_string", _set("datasets", "EmbeddedShapes"),
     "recipe.datasets: 'EmbeddedShapes' is not a non-empty list"),
    ("hparams_unknown", _set("hparams.lrr", 1e-3), "unknown hyperparameter 'lrr' in "
                                                   "recipe.hparams"),
    ("hparams_infinite", _set("hparams.weight_decay", float("inf")),
     "recipe.hparams weight_decay: Infinity is not a finite number >= 0"),
    ("hparams_batch_fraction", _set("hparams.batch_size", 2.5),
     "recipe.hparams batch_size: 2.5 is not an integer >= 1"),
    ("hparams_lp_steps_negative", _set("hparams.lp_steps", -6),
     "recipe.hparams lp_steps: -6 is not an integer >= 0"),
    ("hparams_a_list", _set("hparams", [1]), "recipe.hparams: [1] is not an object"),
    ("pretrain_hparams_unknown", _set("pretrain.hparams", {"lrr": 1}),
     "unknown hyperparameter 'lrr' in recipe.pretrain.hparams"),
    ("hparams_space_unknown", _set("hparams_space", "wild"),
     "recipe.hparams_space: 'wild' is not a known hparams_space"),
    ("train_extra_unknown", _set("train_extra", {"full_evaluaton": True}),
     "did you mean 'full_evaluation'?"),
    ("train_extra_reserved", _set("train_extra", {"steps": 3}),
     "recipe.train_extra.steps: set by the sweep (or recipe) itself"),
    ("train_extra_bad_value", _set("train_extra", {"num_workers": -2}),
     "recipe.train_extra.num_workers: -2 is not"),
    ("report_code", _set("report", {"module": "timeit", "args": ["-s", "import os"]}),
     "recipe.report.module: 'timeit' is not a registered report provider"),
    ("report_code_stdlib", _set("report", {"module": "http.server"}),
     "recipe.report.module: 'http.server' is not a registered report provider"),
    ("report_provider_unknown", _set("report", {"provider": "tables"}),
     "recipe.report.provider: 'tables' is not a known report provider"),
    ("report_args_not_list", _set("report.args", "--input_dir x"),
     "recipe.report.args: '--input_dir x' is not a list of strings"),
    ("report_unknown_key", _set("report.modul", "x"),
     "recipe.report: unknown key 'modul'; did you mean 'module'?"),
    ("target_algorithms_empty", _set("target.algorithms", []),
     "recipe.target.algorithms: [] is not a non-empty list"),
    ("target_algorithm_unknown", _set("target.algorithms", ["Ratatouile"]),
     "did you mean 'Ratatouille'?"),
    ("target_test_env_out_of_range", _set("target.test_envs", [9]),
     "recipe.target.test_envs: 9 is out of range for EmbeddedShapes"),
    ("target_test_env_negative", _set("target.test_envs", -1),
     "recipe.target.test_envs: -1 is not an integer >= 0"),
    ("target_n_trials_zero", _set("target.n_trials", 0), "recipe.target.n_trials: 0 is not"),
    ("target_fusing_range_negative", _set("target.fusing_range", -1),
     "recipe.target.fusing_range: -1 is not"),
    ("aux_pool_kind_unknown", _set("aux.pool_kind", "weird"),
     "recipe.aux.pool_kind: 'weird' is not one of 'standard', 'robust'"),
    ("aux_n_trials_zero", _set("aux.n_trials", 0), "recipe.aux.n_trials: 0 is not"),
    ("aux_a_string", _set("aux", "none"), "recipe.aux: 'none' is not an object"),
    ("linear_probe_steps_zero", _set("linear_probe.steps", 0),
     "recipe.linear_probe.steps: 0 is not"),
    ("top_level_typo", _set("targets", {}), "recipe: unknown key 'targets'; did you mean "
                                            "'target'?"),
    ("name_an_int", _set("name", 5), "recipe.name: 5 is not a string"),
    ("output_root_a_list", _set("output_root", ["a"]), "recipe.output_root: ['a'] is not"),
    ("pretrained_featurizer_an_int", _set("pretrained_featurizer", 5),
     "recipe.pretrained_featurizer: 5 is not a string"),
]


def _write(tmp_path, change):
    recipe = copy.deepcopy(EMBEDDED)
    recipe["output_root"] = str(tmp_path / "out")
    recipe["data_dir"] = str(tmp_path / "data")
    change(recipe)
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(recipe))
    return str(path)


def _nothing_created(tmp_path):
    return not (tmp_path / "out").exists() and not (tmp_path / "data").exists()


@pytest.mark.parametrize("launcher", ["dummy", "local"])
@pytest.mark.parametrize("change, fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_recipe_through_sweep_launch(tmp_path, capsys, change, fragment, launcher):
    path = _write(tmp_path, change)
    code, lines = run_cli(sweep_cli.main, ["launch", "--recipe", path, "--command_launcher",
                                           launcher, "--skip_confirmation"], capsys)
    assert code == 2
    assert_one_error(lines, fragment)
    assert lines[0].startswith("sweep launch: error: ")
    assert _nothing_created(tmp_path)


@pytest.mark.parametrize("change, fragment", [c[1:] for c in CASES[:10]],
                         ids=[c[0] for c in CASES[:10]])
def test_bad_recipe_through_the_recipe_script(tmp_path, capsys, change, fragment):
    path = _write(tmp_path, change)
    code, lines = run_cli(recipe_cli.main, ["run", path, "--dry_run"], capsys)
    assert code == 2
    assert_one_error(lines, fragment)
    assert _nothing_created(tmp_path)


def test_a_recipe_that_is_not_an_object(tmp_path, capsys):
    path = tmp_path / "recipe.json"
    path.write_text("[1, 2]")
    code, lines = run_cli(sweep_cli.main, ["launch", "--recipe", str(path), "--output_dir",
                                           str(tmp_path / "out"), "--command_launcher",
                                           "dummy"], capsys)
    assert code == 2
    assert_one_error(lines, "recipe: a recipe is a JSON object, got list")


def test_a_recipe_that_is_not_json(tmp_path, capsys):
    path = tmp_path / "recipe.json"
    path.write_text("{'name': 'x'}")
    code, lines = run_cli(sweep_cli.main, ["launch", "--recipe", str(path), "--output_dir",
                                           str(tmp_path / "out"), "--command_launcher",
                                           "dummy"], capsys)
    assert code == 2
    assert_one_error(lines, "cannot read recipe")
    assert not (tmp_path / "out").exists()


def test_a_recipe_file_that_does_not_exist(tmp_path, capsys):
    code, lines = run_cli(sweep_cli.main, ["launch", "--recipe", str(tmp_path / "no.json"),
                                           "--output_dir", str(tmp_path / "out"),
                                           "--command_launcher", "dummy"], capsys)
    assert code == 2
    assert_one_error(lines, "No such file or directory")
    assert not (tmp_path / "out").exists()


def test_every_recipe_problem_at_once(tmp_path, capsys):
    def many(recipe):
        recipe["steps"] = "abc"
        recipe["target"]["n_hparam"] = 2
        recipe["aux"]["n_hparam"] = 2
        recipe["hparams"]["lrr"] = 1
        recipe["report"] = {"module": "timeit"}
    code, lines = run_cli(sweep_cli.main, ["launch", "--recipe", _write(tmp_path, many),
                                           "--command_launcher", "dummy"], capsys)
    assert code == 2
    assert_one_error(lines, "recipe.steps", n=5)
    assert _nothing_created(tmp_path)
