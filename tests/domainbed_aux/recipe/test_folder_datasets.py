"""The user's own image folders as the target and the auxiliary tasks of one recipe
(``folder:NAME=PATH``), end to end to a model folder."""

import json
import os

import pytest

from domainbed.model_folder import MERGE_FILE, load_model
from domainbed.model_folder.data import dataset_split
from domainbed.model_folder.predict import predict_dataset
from domainbed.scripts import sweep as sweep_cli
from domainbed.sweep.options import list_jobs
from domainbed.sweep.options import make_spec
from domainbed_aux.scripts import merge as merge_cli
from tests.fixtures.data import make_image_folder_fixture


def test_a_folder_dataset_takes_its_root_from_its_name_and_keeps_job_ids(tmp_path):
    photos = make_image_folder_fixture(str(tmp_path / "photos"), None, ["a", "b", "c"],
                                       ["x", "y"], n_per_class=1)
    with_root = make_spec(str(tmp_path / "s"), datasets=[f"folder:Photos={photos}"],
                          algorithms=["ERM"], n_hparams=2, n_trials=1, test_env=0,
                          mode="ids")
    with_data_dir = make_spec(str(tmp_path / "s"), datasets=["folder:Photos"],
                              algorithms=["ERM"], n_hparams=2, n_trials=1, test_env=0,
                              data_dir=photos, mode="ids")
    jobs = list_jobs(with_root)
    assert [j.job_id for j in jobs] == [j.job_id for j in list_jobs(with_data_dir)]
    assert {j.train_args["dataset"] for j in jobs} == {"folder:Photos"}
    assert {j.train_args["data_dir"] for j in jobs} == {os.path.abspath(photos)}
    with pytest.raises(Exception, match="folder:NAME"):
        list_jobs(make_spec(str(tmp_path / "s"), datasets=["folder:bad name=x"],
                            algorithms=["ERM"], mode="ids"))


@pytest.fixture
def two_folders(tmp_path, monkeypatch, one_thread):
    monkeypatch.chdir(tmp_path)  # the recipe's relative paths
    make_image_folder_fixture("mine/photos", None, ["indoor", "outdoor", "night"],
                              ["cat", "dog"], n_per_class=5, size=12)
    make_image_folder_fixture("mine/sketches", None, ["pencil", "ink"], ["car", "bus", "van"],
                              n_per_class=4, size=12)
    recipe = {
        "name": "my_folders", "output_root": "runs/mine",
        "datasets": ["folder:MyPhotos=mine/photos"],
        "hparams": {"backbone": "tiny_cnn", "image_size": 16, "batch_size": 4, "lp_steps": 2},
        "steps": {"default": 4}, "checkpoint_freq": {"default": 2},
        "aux": {"datasets": ["folder:MySketches=mine/sketches"], "algorithm": "ERM",
                "n_hparams": 1, "n_trials": 1},
        "target": {"algorithms": ["Ratatouille"], "n_hparams": 2, "n_trials": 1,
                   "test_envs": [0]},
        "report": None,
    }
    (tmp_path / "recipe.json").write_text(json.dumps(recipe))
    return tmp_path


def test_a_recipe_of_two_image_folders_runs_end_to_end_to_a_model_folder(two_folders):
    assert sweep_cli.main(["launch", "--recipe", "recipe.json", "--output_dir", "runs/mine",
                           "--skip_confirmation"]) == 0
    # the pool is the auxiliary folder's run, told apart from the target by its name
    pool_dir = "runs/mine/target/folder-MyPhotos/test0/aux_pool/folder:MyPhotos"
    with open(os.path.join(pool_dir, "pool.json")) as f:
        pool = json.load(f)
    assert [m["dataset"] for m in pool["members"] if m["kind"] == "aux"] == ["folder:MySketches"]
    sweep = "runs/mine/target/folder-MyPhotos/test0"
    assert merge_cli.main(["--dataset", "folder:MyPhotos", "--test_env", "0", "--input_dir",
                           sweep, "--weight_selection", "uniform", "--output_dir",
                           "models/mine", "--no_progress"]) == 0
    with open(os.path.join("models/mine", MERGE_FILE)) as f:
        merge = json.load(f)
    assert len(merge["members"]) == 2
    assert any("folder:MySketches" in r["init"] for r in merge["runs"])  # a recycled run
    model = load_model("models/mine", "cpu")
    assert model.class_names == ["cat", "dog"]
    data, _ = dataset_split(model.config, "mine/photos", "0", "in")
    accuracy = predict_dataset(model, data).accuracy
    assert accuracy == pytest.approx(merge["scores"]["test_in"]["accuracy"])


def test_a_malformed_folder_entry_in_a_recipe_is_one_line_and_nothing_runs(two_folders,
                                                                           capsys):
    recipe = json.loads((two_folders / "recipe.json").read_text())
    recipe["aux"]["datasets"] = ["folder:My Sketches=mine/sketches"]
    (two_folders / "recipe.json").write_text(json.dumps(recipe))
    assert sweep_cli.main(["launch", "--recipe", "recipe.json", "--output_dir", "runs/mine",
                           "--skip_confirmation"]) == 2
    err = capsys.readouterr().err
    problems = [line for line in err.splitlines() if "My Sketches" in line]
    assert len(problems) == 1 and "folder:NAME=PATH" in problems[0], err
    assert "is not a known dataset" not in err
    assert not os.path.exists("runs/mine")


def test_training_accepts_a_folder_dataset_and_names_the_form_of_a_bad_one():
    from domainbed.training.config import TrainConfig
    from domainbed.training.validate import name_problems
    assert name_problems(TrainConfig(dataset="folder:MyPhotos", algorithm="ERM")) == []
    problems = name_problems(TrainConfig(dataset="folder:my photos", algorithm="ERM"))
    assert len(problems) == 1 and "folder:NAME" in problems[0]
