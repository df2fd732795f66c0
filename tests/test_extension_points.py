"""Where each kind of thing is added, one file each: a toy recycling algorithm, a toy
dataset, a toy Table-1 row and a toy launcher that runs multi-stage plans, each in its own module of ``tests/fixtures/toys``, registered from there (the toys'
torch-free entry point only adds that package to the registries' search), and the
commands list and use them (without torch where the command lists or reads records)."""

import json
import os
import subprocess
import sys

import pytest

from domainbed.reports.synthetic import make_record, write_run

from tests.fixtures.commands import run_command
from tests.fixtures.paths import REPO

TOYS = "tests.fixtures.toys.extension"


def _python(code: str) -> str:
    env = dict(os.environ, PYTHONPATH=REPO, DOMAINBED_PLUGINS=TOYS)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=REPO, check=True, timeout=300).stdout


def test_a_recycling_algorithm_added_in_one_file_is_listed_planned_and_reported(tmp_path):
    code, out, heavy = run_command("domainbed.scripts.names", ["algorithms"], plugins=TOYS)
    assert code == 0 and heavy == []
    line, = [l for l in out.splitlines() if l.split()[:1] == ["ToyRecycler"]]
    assert line.split()[1:] == ["tests.fixtures.toys.recycler", "init=pool", "family=inter"]
    # a sweep lists its jobs (torch-free) and plans a pool init for each of them
    argv = ["status", "--output_dir", str(tmp_path / "sweep"), "--datasets", "PACS",
            "--algorithms", "ToyRecycler", "--n_hparams", "2", "--n_trials", "1",
            "--single_test_envs", "--aux_dir", str(tmp_path / "aux")]
    code, out, heavy = run_command("domainbed.scripts.sweep", argv, plugins=TOYS)
    assert code == 0 and heavy == [], out
    assert out.splitlines()[0].startswith("8 jobs: 0 done")
    out = _python("from domainbed_aux import planning\n"
                  "from domainbed_aux.report.registry import families\n"
                  "from domainbed.sweep.options import make_spec\n"
                  "spec = make_spec('out', aux_dir='aux')\n"
                  "print(planning.init_kind({'algorithm': 'ToyRecycler', "
                  "'test_envs': [0]}, planning.InitOptions.of(spec)))\n"
                  "print(families()['inter'])\n")
    assert out.splitlines() == ["pool", "['InterTraining', 'Ratatouille', 'ToyRecycler']"]
    # its records are tabulated in the registry's order, torch-free
    for i, algorithm in enumerate(("ToyRecycler", "ERM")):
        write_run(str(tmp_path / "runs" / str(i)),
                  [make_record(dataset="PACS", algorithm=algorithm, test_envs=[0], step=s,
                               n_envs=4) for s in (0, 10)])
    code, out, heavy = run_command("domainbed.scripts.collect_results",
                                   ["--input_dir", str(tmp_path / "runs"), "--no_save"],
                                   plugins=TOYS)
    assert code == 0 and heavy == []
    rows = [l.split()[0] for l in out.splitlines() if l.startswith(("ERM", "ToyRecycler"))]
    assert rows[:2] == ["ERM", "ToyRecycler"]


def test_a_dataset_added_in_one_file_declares_its_environments_once(tmp_path):
    code, out, heavy = run_command("domainbed.scripts.names", ["datasets"], plugins=TOYS)
    assert code == 0 and heavy == []
    line, = [l for l in out.splitlines() if l.split()[:1] == ["ToyShapes"]]
    assert line.split()[1:] == ["tests.fixtures.toys.dataset", "environments=red,green,blue"]
    argv = ["status", "--output_dir", str(tmp_path / "sweep"), "--datasets", "ToyShapes",
            "--algorithms", "ERM", "--n_hparams", "1", "--n_trials", "1"]
    code, out, heavy = run_command("domainbed.scripts.sweep", argv, plugins=TOYS)
    assert code == 0 and heavy == []
    assert out.splitlines()[0].startswith("6 jobs: 0 done")  # 3 single + 3 pair test envs
    # it trains, and its records' columns are named after its environments, torch-free
    env = dict(os.environ, PYTHONPATH=REPO, DOMAINBED_PLUGINS=TOYS)
    subprocess.run([sys.executable, "-m", "domainbed.scripts.train", "--dataset", "ToyShapes",
                    "--steps", "2", "--hparams", '{"batch_size": 4, "backbone": "tiny_cnn"}',
                    "--data_dir", str(tmp_path), "--output_dir", str(tmp_path / "runs" / "a")],
                   env=env, cwd=REPO, check=True, capture_output=True, timeout=300)
    code, out, heavy = run_command("domainbed.scripts.collect_results",
                                   ["--input_dir", str(tmp_path / "runs"), "--no_save"],
                                   plugins=TOYS)
    assert code == 0 and heavy == []
    assert "Dataset: ToyShapes" in out
    assert any(l.split()[1:4] == ["red", "green", "blue"] for l in out.splitlines()), out


ROW_PROBE = """
from types import SimpleNamespace
from domainbed_aux.report import registry
from domainbed_aux.report.provider import Table1Rows
print(registry.row_names(families=["inter"])[-1])
toy = registry._ROWS["Toy count of runs"]
registry._ROWS = {toy.name: toy}  # score the toy row alone (the others need real runs)
runs = [SimpleNamespace(run_dir=str(i), algorithm=a, dataset="Debug28", test_envs=[0],
                        trial_seed=0, robust=False)
        for i, a in enumerate(["ToyRecycler", "ToyRecycler", "Ratatouille", "ERM"])]
print(Table1Rows(runs)([], "Debug28", None))
"""


def test_a_table1_row_added_in_one_file_is_registered_in_order_and_scores_its_family():
    out = _python(ROW_PROBE).splitlines()
    # after the family's own rows; its cell counts the inter-training family's runs (the toy
    # recycler's by its declared family, and Ratatouille's), not ERM's
    assert out == ["Toy count of runs", "[('Toy count of runs', {0: {0: 3.0}})]"]
    env = dict(os.environ, PYTHONPATH=REPO)
    env.pop("DOMAINBED_PLUGINS", None)
    without = subprocess.run([sys.executable, "-c", "from domainbed_aux.report.registry "
                              "import row_names\nprint('Toy count of runs' in row_names())"],
                             capture_output=True, text=True, env=env, cwd=REPO, check=True)
    assert without.stdout.strip() == "False"


@pytest.mark.slow
def test_a_launcher_added_in_one_file_runs_a_multi_stage_plan(tmp_path, monkeypatch):
    """The toy queue declares the ``dependencies`` capability: the core submits every stage
    of a recipe to it at once, stages that cannot be listed yet as stage jobs that receive
    (the plan's source, the stage); drained in order, the jobs run the whole recipe."""
    from tests.fixtures.aux_datasets import HPARAMS
    from tests.fixtures.recipe_runs import prepare_recipe_subprocesses, run_dirs
    from tests.fixtures.toys.launcher import drain
    code, out, heavy = run_command("domainbed.scripts.names", ["launchers"], plugins=TOYS)
    assert code == 0 and heavy == []
    assert [l.split()[1] for l in out.splitlines() if l.split()[:1] == ["toy_queue"]] == \
        ["tests.fixtures.toys.launcher"]
    phi = prepare_recipe_subprocesses(monkeypatch, tmp_path)
    recipe = {"name": "tiny", "data_dir": str(tmp_path / "data"),
              "output_root": str(tmp_path / "out"), "datasets": ["Debug28"],
              "hparams": HPARAMS, "steps": {"default": 3}, "checkpoint_freq": {"default": 2},
              "pretrained_featurizer": phi,
              "aux": {"datasets": ["AuxDebugA", "AuxDebugB"], "algorithm": "ERM",
                      "n_hparams": 1, "n_trials": 1},
              "target": {"algorithms": ["Ratatouille"], "n_hparams": 2, "n_trials": 1,
                         "test_envs": [0]},
              "report": {"module": "domainbed_aux.no_such_report_module"}}
    (tmp_path / "recipe.json").write_text(json.dumps(recipe))
    (tmp_path / "queue").mkdir()
    monkeypatch.setenv("TOY_QUEUE_DIR", str(tmp_path / "queue"))
    env = dict(os.environ, DOMAINBED_PLUGINS=f"tests.fixtures.aux_datasets,{TOYS}")
    launch = subprocess.run([sys.executable, "-m", "domainbed.scripts.sweep", "launch",
                             "--recipe", "recipe.json", "--command_launcher", "toy_queue",
                             "--skip_confirmation"], env=env, cwd=str(tmp_path),
                            capture_output=True, text=True, timeout=300)
    assert launch.returncode == 0, launch.stderr
    # the aux jobs can be listed now (phi_pt is given): submitted as they are; the other
    # stages wait for earlier ones: one stage job each
    assert launch.stdout.splitlines() == [
        "stage linear_probe: toy-queue jobs toy0", "stage aux: toy-queue jobs toy1,toy2",
        "stage pool: toy-queue jobs toy3", "stage target: toy-queue jobs toy4",
        "stage report: toy-queue jobs toy5"]
    ran = drain(env, str(tmp_path))
    assert [(j["name"], j["after"], j["code"]) for j in ran] == [
        ("recipe-linear_probe", [], 0), ("recipe-aux", ["toy0"], 0),
        ("recipe-aux", ["toy0"], 0), ("recipe-pool", ["toy1", "toy2"], 0),
        ("recipe-target", ["toy3"], 0), ("recipe-report", ["toy4"], 0)]
    stage_jobs = [j for j in ran if j["name"] != "recipe-aux"]
    assert all(j["command"][1:3] == ["-m", "domainbed.scripts.stage"] and
               j["command"][-1] == j["name"].split("-", 1)[1] for j in stage_jobs)
    finished = run_dirs(str(tmp_path / "out"))
    assert len([r for r in finished if os.sep + "target" + os.sep in r]) == 2
    assert len([r for r in finished if os.sep + "aux" + os.sep in r]) == 2
