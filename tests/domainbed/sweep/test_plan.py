"""Multi-stage plans: a training stage launches the jobs of all its sweeps in one call."""

import pytest

from domainbed.sweep import hooks
from domainbed.sweep import plan as plans
from domainbed.sweep.options import make_spec


class RecordingLauncher:
    """A launcher that records its calls and marks every job it gets done."""

    name = "recording"

    def __init__(self):
        self.calls = []

    def __call__(self, jobs, **options):
        import os
        self.calls.append(([j.output_dir for j in jobs], options))
        for job in jobs:
            os.makedirs(job.output_dir, exist_ok=True)
            open(os.path.join(job.output_dir, "done"), "w").close()


def _sweeps(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    return [make_spec(str(tmp_path / f"sweep{k}"), datasets=["Debug28"], algorithms=["ERM"],
                      test_env=k, n_hparams=2, n_trials=1, data_dir=str(data))
            for k in (0, 1)]


def test_a_stage_launches_every_sweep_in_one_call_after_each_sweeps_hooks(tmp_path,
                                                                        monkeypatch):
    """A launcher that runs several jobs at once keeps its slots busy across the sweeps of a
    stage (the recipe's four one-job auxiliary sweeps ran one after another before); each
    sweep's before-launch hooks still see that sweep and its own jobs."""
    seen = []
    monkeypatch.setitem(hooks.BEFORE_LAUNCH._items, "test_record",
                        lambda jobs, sweep_args: seen.append((sweep_args.output_dir, len(jobs))))
    sweeps = _sweeps(tmp_path)
    launcher = RecordingLauncher()
    plans.run_stage(plans.Stage("train", sweeps=sweeps), launcher, {"max_parallel": 2})
    assert len(launcher.calls) == 1
    dirs, options = launcher.calls[0]
    assert len(dirs) == 4 and options == {"max_parallel": 2}
    assert {d.split("/sweep")[1][0] for d in dirs} == {"0", "1"}
    assert seen == [(s.output_dir, 2) for s in sweeps]
    # a second run finds every job done: nothing is launched, no hook runs
    plans.run_stage(plans.Stage("train", sweeps=sweeps), launcher, {})
    assert len(launcher.calls) == 1 and len(seen) == 2


def test_a_stage_with_unfinished_jobs_is_an_error_naming_one(tmp_path):
    class Lazy(RecordingLauncher):
        def __call__(self, jobs, **options):
            self.calls.append(jobs)
    with pytest.raises(plans.PlanError, match="2 jobs are not done"):
        plans.run_stage(plans.Stage("train", sweeps=_sweeps(tmp_path)), Lazy(), {})


def test_launcher_options_keep_what_the_user_typed_and_default_the_rest():
    plan = plans.Plan("p", "/tmp/p", [], launcher_defaults={
        "local": {"in_process": True, "threads_per_job": 1, "max_parallel": 8}})
    assert plans.launcher_options(plan, "local", {}) == {
        "in_process": True, "threads_per_job": 1, "max_parallel": 8}
    assert plans.launcher_options(plan, "local", {"max_parallel": 2},
                                  typed=["max_parallel"]) == {
        "in_process": True, "threads_per_job": 1, "max_parallel": 2}
    assert plans.launcher_options(plan, "slurm", {"slurm_time": 5}, typed=["slurm_time"]) == {
        "slurm_time": 5}


def test_a_plan_source_round_trips_with_absolute_paths_and_bad_files_are_one_line(
        tmp_path, monkeypatch):
    import json
    import os
    import subprocess
    import sys
    from tests.fixtures.paths import REPO
    monkeypatch.chdir(tmp_path)
    (tmp_path / "recipe.json").write_text("{}")
    spec = make_spec("out", datasets=["Debug28"], data_dir="data", recipe="recipe.json")
    plan = plans.Plan("tiny", str(tmp_path / "out"), stages=[])
    path = plans.write_source(plan, spec, "slurm", {"partition": "p1", "wait": True})
    assert os.path.dirname(path) == str(tmp_path / "out" / plans.SOURCES_DIR)
    # the same content is one file: submitting again with the same options writes no other
    assert plans.write_source(plan, spec, "slurm", {"partition": "p1"}) == path
    again, launcher, options = plans.read_source(path)
    assert (launcher, options) == ("slurm", {"partition": "p1"})  # ``wait`` is the job's own
    assert again.output_dir == str(tmp_path / "out")
    assert again.data_dir == str(tmp_path / "data")
    assert again.recipe == str(tmp_path / "recipe.json")
    assert again.datasets == ["Debug28"] and again.n_hparams == spec.n_hparams
    (tmp_path / "bad.json").write_text(json.dumps({"format": 1}))
    result = subprocess.run([sys.executable, "-m", "domainbed.scripts.stage",
                             str(tmp_path / "bad.json"), "target"], capture_output=True,
                            text=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"stage target: error: {tmp_path / 'bad.json'} is not a plan source written by a "
        "submission (no 'spec' key); submit the plan again"]
