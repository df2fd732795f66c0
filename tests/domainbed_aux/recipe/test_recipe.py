"""Recipes: the paper recipe's job counts, stage chaining on SLURM, a local end-to-end run."""

import json
import os
import re
import sys
from types import SimpleNamespace

import pytest

from domainbed.lib.weights import save_weights
from domainbed.sweep.options import list_jobs, train_args_list
from domainbed_aux import recipe as recipe_lib
from domainbed_aux.scripts import recipe as recipe_cli
from tests.fixtures.aux_datasets import HPARAMS  # registers AuxDebugA / AuxDebugB
from tests.fixtures.paths import REPO

PAPER = os.path.join(REPO, "sweeps", "ratatouille_paper.json")


@pytest.mark.parametrize("entry", ["recipe_cli", "sweep_launch_dummy"])
def test_paper_recipe_lists_exactly_the_papers_jobs(capsys, entry):
    if entry == "recipe_cli":
        assert recipe_cli.main(["run", PAPER, "--dry_run", "--output_root", "OUT"]) == 0
    else:  # what a user types: the core's sweep command with the dummy launcher
        from domainbed.scripts import sweep as sweep_cli
        assert sweep_cli.main(["launch", "--recipe", PAPER, "--output_dir", "OUT",
                               "--command_launcher", "dummy"]) == 0
    out = capsys.readouterr().out
    counts = dict(re.findall(r"^stage (\w+): (\d+)", out, re.M))
    # aux: 4 runs per dataset; probes: one per target (dataset, test env, trial) and one per
    # auxiliary dataset (every domain, which its runs start from); target: 22 test envs
    # (4+4+4+4+6) x 3 algorithms (vanilla/soups = ERM from the probe, ratatouille and
    # inter-training = the same Ratatouille runs, fusing) x 20 hparams x 3 trials
    # pools: one per target sweep (dataset, test env)
    assert counts == {"aux": "20", "linear_probe": str(66 + 5), "pool": "22",
                      "target": str(22 * 3 * 60), "report": "1"}
    assert out.index("stage linear_probe") < out.index("stage aux") < out.index("stage target")
    print(out)
    target_lines = [l for l in out.splitlines() if "Ratatouille" in l]
    assert len(target_lines) == 22
    assert all("ERM,Fusing,Ratatouille: 180 jobs (20 hparams x 3 trials)" in l
               and "hparams_space=mild" in l and "lp_steps=200" in l for l in target_lines)
    assert all(("steps=15001" in l) == l.strip().startswith("DomainNet") for l in target_lines)
    assert all("steps=5001" in l for l in target_lines if not l.strip().startswith("DomainNet"))
    aux_lines = [l for l in out.splitlines() if "test_env=-1" in l]
    assert len(aux_lines) == 5 and all("4 jobs" in l for l in aux_lines)


def test_target_sweeps_use_the_paper_flags():
    recipe = recipe_lib.load_recipe(PAPER, output_root="OUT")
    spec = recipe_lib.target_sweeps(recipe)[0]
    for option in ("aux_dir", "output_dir_lp", "hparams_space"):
        assert getattr(spec, option)
    assert spec.output_dir.endswith(os.path.join("target", "VLCS", "test0"))
    assert spec.aux_dir == os.path.abspath(os.path.join("OUT", "aux"))


def _tiny_recipe(tmp_path, **changes):
    recipe = {
        "name": "tiny", "data_dir": str(tmp_path / "data"), "output_root": str(tmp_path / "out"),
        "datasets": ["Debug28"], "hparams": HPARAMS, "steps": {"default": 3},
        "checkpoint_freq": {"default": 2},
        "aux": {"datasets": ["AuxDebugA", "AuxDebugB"], "algorithm": "ERM", "n_hparams": 1,
                "n_trials": 1},
        "target": {"algorithms": ["Ratatouille"], "n_hparams": 5, "n_trials": 1,
                   "test_envs": [0]},
        "report": {"module": "domainbed_aux.no_such_report_module"},
    }
    recipe.update(changes)
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(recipe))
    return str(path)


def test_pretrain_stage_feeds_phi_pt_to_later_stages(tmp_path):
    path = _tiny_recipe(tmp_path, pretrain={"dataset": "AuxDebugA", "steps": 4})
    recipe = recipe_lib.load_recipe(path)
    stages = recipe_lib.recipe_plan(recipe).stages
    assert [s.name for s in stages] == ["pretrain", "linear_probe", "aux", "pool", "target",
                                        "report"]
    phi = recipe_lib.pretrained_featurizer(recipe)
    assert phi.startswith(str(tmp_path / "out" / "pretrain")) and phi.endswith(
        "model.safetensors")
    for stage in stages[1:5]:
        for spec in stage.sweeps:
            assert spec.pretrained_featurizer == phi
    pre = stages[0].sweeps[0]
    assert pre.steps == 4
    # probes: the target's and one per auxiliary dataset; one pool for the target sweep
    assert [s.n_jobs() for s in stages] == [1, 3, 2, 1, 5, 1]


def test_unknown_recipe_key_is_an_error(tmp_path):
    path = _tiny_recipe(tmp_path, targets={})
    with pytest.raises(recipe_lib.RecipeError,
                       match="unknown key 'targets'; did you mean 'target'"):
        recipe_lib.load_recipe(path)


def test_slurm_stages_are_chained_with_afterok(tmp_path, monkeypatch):
    from domainbed.command_launchers import get_launcher
    from domainbed.sweep.plan import read_source
    path = _tiny_recipe(tmp_path, pretrain={"dataset": "AuxDebugA", "steps": 4})
    calls = []

    def fake_submit(jobs, after=(), job_name="", **options):
        calls.append((job_name, list(jobs), list(after)))
        return [SimpleNamespace(job_id=f"{len(calls)}_{i}") for i in range(len(jobs))]

    monkeypatch.setattr(get_launcher("slurm"), "submit", fake_submit)
    assert recipe_cli.main(["run", path, "--launcher", "slurm", "--slurm_partition", "p1"]) == 0
    names = [c[0] for c in calls]
    # the aux jobs start from probes of phi_pt, which the pretraining has not written yet:
    # the aux stage lists its jobs when it runs (one stage job), after the probes
    assert names == ["recipe-pretrain", "recipe-linear_probe", "recipe-aux", "recipe-pool",
                     "recipe-target", "recipe-report"]
    assert calls[0][2] == [] and len(calls[0][1]) == 1
    for (name, jobs, after), previous in zip(calls[1:], ["1_0", "2_0", "3_0", "4_0", "5_0"]):
        assert after == [previous] and len(jobs) == 1
        # a stage job receives (the plan's source, the stage), not a rebuilt command line
        command = jobs[0].command
        assert command[1:3] == ["-m", "domainbed.scripts.stage"]
        assert command[-1] == name.split("-", 1)[1]
        spec, launcher_name, options = read_source(command[-2])
        assert launcher_name == "slurm" and options["partition"] == "p1"
        assert spec.recipe == os.path.abspath(path) and os.path.isabs(spec.output_dir)
        # a stage job has no run directory: on SLURM it succeeds when its command exits 0
        # (it once waited for a ``done`` file in the plan's root, which nothing writes)
        from domainbed.command_launchers.slurm import TrainCommand
        assert jobs[0].output_dir is None
        ok = TrainCommand([sys.executable, "-c", "pass"], jobs[0].output_dir,
                          signal_grace_s=0)()
        assert ok["returncode"] == 0

    # submitted again once the pretraining is done, while one aux job waits in the queue:
    # the aux stage is an array of the job not queued, and the target stage waits for both
    from domainbed import networks
    from domainbed.command_launchers import slurm as slurm_module
    from domainbed.lib import run_dir
    recipe = recipe_lib.load_recipe(path)
    phi = recipe_lib.pretrained_featurizer(recipe)
    os.makedirs(os.path.dirname(phi), exist_ok=True)
    save_weights(phi, {"featurizer." + k: v for k, v in
                       networks.Featurizer((3, 28, 28), HPARAMS).state_dict().items()})
    open(os.path.join(os.path.dirname(phi), "done"), "w").close()
    aux_stage = recipe_lib.recipe_plan(recipe).stage("aux")
    aux_a, aux_b = [j for spec in aux_stage.sweeps for j in list_jobs(spec)]
    run_dir.write_submission(aux_a.output_dir, "q_7")
    monkeypatch.setattr(slurm_module, "jobs_in_queue", lambda: {"q_7"})
    calls.clear()
    assert recipe_cli.main(["run", path, "--launcher", "slurm", "--slurm_partition", "p1"]) == 0
    assert [c[0] for c in calls] == ["recipe-linear_probe", "recipe-aux", "recipe-pool",
                                     "recipe-target", "recipe-report"]
    assert calls[0][2] == []  # the pretraining is done
    assert [j.output_dir for j in calls[1][1]] == [aux_b.output_dir]
    assert calls[1][2] == ["1_0"]  # after the probes
    assert calls[2][2] == ["2_0", "q_7"]  # the new aux job and the queued one


def _tiny_recipe_with_phi(tmp_path, monkeypatch, **changes):
    """A tiny recipe whose subprocesses see the test datasets and a fixed phi_pt file."""
    from tests.fixtures.recipe_runs import prepare_recipe_subprocesses
    phi = prepare_recipe_subprocesses(monkeypatch, tmp_path)
    return _tiny_recipe(tmp_path, pretrained_featurizer=phi, **changes)


@pytest.mark.slow
def test_local_recipe_end_to_end(tmp_path, monkeypatch, caplog):
    path = _tiny_recipe_with_phi(tmp_path, monkeypatch)
    caplog.set_level("INFO")
    assert recipe_cli.main(["run", path]) == 0
    assert "no_such_report_module is not installed; skipped" in caplog.text

    recipe = recipe_lib.load_recipe(path)
    (target,) = recipe_lib.target_sweeps(recipe)
    jobs = list_jobs(target)
    assert len(jobs) == 5 and all(j.state == "Done" for j in jobs)
    members = []
    for job in jobs:
        with open(os.path.join(job.output_dir, "results.jsonl")) as f:
            records = [json.loads(line) for line in f]
        members.append(records[-1]["init"]["member"].get("dataset"))
    assert members == [None, "AuxDebugA", "AuxDebugB", None, "AuxDebugA"]

    caplog.clear()
    assert recipe_cli.main(["run", path, "--only", "linear_probe", "target"]) == 0
    assert "reused" in caplog.text and "nothing to launch" in caplog.text


def test_train_extra_reaches_every_job_of_the_recipe(tmp_path):
    path = _tiny_recipe(tmp_path, train_extra={"full_evaluation": True})
    recipe = recipe_lib.load_recipe(path)
    for stage in recipe_lib.recipe_plan(recipe).stages:
        if stage.name not in ("aux", "target"):
            continue
        for spec in stage.sweeps:
            jobs = train_args_list(spec)
            assert jobs and all(j.get("full_evaluation") is True for j in jobs), stage.name


def test_only_the_target_runs_score_their_test_split_once(tmp_path):
    """Each target sweep has one test env and no pair runs, so leave-one-domain-out never
    reads its runs: they score the test split for the selected record only."""
    recipe = recipe_lib.load_recipe(_tiny_recipe(tmp_path))
    seen = set()
    for stage in recipe_lib.recipe_plan(recipe).stages:
        for spec in stage.sweeps or ():
            for job in train_args_list(spec):
                assert bool(job.get("score_test_once")) == (stage.name == "target"), stage.name
                if stage.name == "target":
                    assert len(job["test_envs"]) == 1
                seen.add(stage.name)
    assert "target" in seen and "aux" in seen


def test_sweep_launch_recipe_forwards_the_launcher_options(tmp_path, monkeypatch):
    """``sweep launch --recipe``: the plan's launcher defaults (in-process, one thread per
    run, a run per core) apply when the user gives no launcher option; options typed on the
    command line replace those defaults one by one."""
    from domainbed.command_launchers.core.resources import cpu_count
    from domainbed.scripts import sweep as sweep_cli
    from domainbed.sweep import plan as plans
    path = _tiny_recipe(tmp_path)
    seen = []
    monkeypatch.setattr(plans, "run_locally", lambda plan, launcher, options, only=None:
                        seen.append((launcher.name, dict(options), only)))
    base = ["launch", "--recipe", path, "--output_dir", str(tmp_path / "out"),
            "--skip_confirmation"]
    assert sweep_cli.main(base) == 0
    assert sweep_cli.main(base + ["--no_in_process", "--max_parallel", "2", "--only",
                                  "target"]) == 0
    assert seen == [("local", {"in_process": True, "threads_per_job": 1,
                               "max_parallel": cpu_count()}, None),
                    ("local", {"in_process": False, "max_parallel": 2, "threads_per_job": 1},
                     ["target"])]


def test_sweep_launch_recipe_on_slurm_submits_stage_jobs_of_the_same_command(tmp_path,
                                                                             monkeypatch):
    """On SLURM the core submits the stages that cannot be listed yet as stage jobs that
    receive the plan's source (the user's sweep spec with absolute paths, the launcher and
    its options) and the stage's name."""
    from domainbed.command_launchers import get_launcher
    from domainbed.scripts import sweep as sweep_cli
    from domainbed.sweep.plan import read_source
    path = _tiny_recipe(tmp_path)
    calls = []

    def fake_submit(jobs, after=(), job_name="", **options):
        calls.append((job_name, list(jobs), list(after), options))
        return [SimpleNamespace(job_id=f"{len(calls)}_{i}") for i in range(len(jobs))]

    monkeypatch.setattr(get_launcher("slurm"), "submit", fake_submit)
    monkeypatch.chdir(tmp_path)
    assert sweep_cli.main(["launch", "--recipe", "recipe.json", "--output_dir", "out",
                           "--command_launcher", "slurm", "--slurm_partition", "p1"]) == 0
    assert [c[0] for c in calls] == ["recipe-linear_probe", "recipe-aux", "recipe-pool",
                                     "recipe-target", "recipe-report"]
    assert len(calls[1][1]) == 2  # phi_pt is the core network: the aux jobs are an array
    assert calls[0][3]["partition"] == "p1"
    command = calls[2][1][0].command
    assert command[1:3] == ["-m", "domainbed.scripts.stage"] and command[-1] == "pool"
    spec, launcher_name, options = read_source(command[-2])
    assert (spec.recipe, spec.output_dir) == (path, str(tmp_path / "out"))
    assert launcher_name == "slurm" and options["partition"] == "p1"


def test_the_default_report_stage_is_a_typed_call_in_this_process(tmp_path, monkeypatch):
    """Our report provider with its default arguments is called as
    ``make_report(ReportRequest)``: no command line is built or run; the same request
    the command line's flags would give (targets, report.txt, the other stages' folders)."""
    import subprocess
    from domainbed_aux.init.probe import RUNS_DIR
    from domainbed_aux.report import make
    path = _tiny_recipe(tmp_path, report={}, pretrain={"dataset": "AuxDebugA", "steps": 4})
    recipe = recipe_lib.load_recipe(path)
    seen = []
    monkeypatch.setattr(make, "make_report", lambda request: seen.append(request) or 0)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("a subprocess ran"))
    plan = recipe_lib.recipe_plan(recipe)
    plan.stage("report").step()
    (request,) = seen
    out = tmp_path / "out"
    assert request.input_dirs == [s.output_dir for s in plan.stage("target").sweeps]
    assert request.output == str(out / "report.txt")
    assert request.probe_dirs == [str(out / "lp" / RUNS_DIR)]
    assert request.foundation_dirs == [str(out / "pretrain")]
    assert request.aux_dirs == [str(out / "aux")]
    # a report section with its own arguments stays its provider's command line
    custom = recipe_lib.load_recipe(_tiny_recipe(tmp_path, report={"args": ["--help"]}))
    assert recipe_lib.recipe_plan(custom).stage("report").unit == "report command"
