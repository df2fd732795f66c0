"""A sweep says how it ended: a summary with counts per state and, per failed job, its id
and the last line of its error; a non-zero exit status when a job failed."""

import os
import sys

from domainbed.lib import run_dir
from domainbed.scripts import sweep as sweep_cli
from tests.fixtures.sweeps import cli_jobs

# finishes, except hparams seed 1, which prints one error line and exits 2 without
# writing anything in its run directory (as train does for bad input)
HALF_FAILING_TRAIN = r'''
import argparse, os, sys
p = argparse.ArgumentParser()
p.add_argument("--output_dir", required=True)
p.add_argument("--hparams_seed", type=int, default=0)
args, _ = p.parse_known_args()
if args.hparams_seed == 1:
    print("some progress line")
    print("error: --hparams lr: -1 is not a finite number >= 0", file=sys.stderr)
    sys.exit(2)
os.makedirs(args.output_dir, exist_ok=True)
open(os.path.join(args.output_dir, "results.jsonl"), "w").write("{}\n")
open(os.path.join(args.output_dir, "done"), "w").write("done")
'''

SWEEP = ["--datasets", "Debug28", "--algorithms", "ERM", "--n_hparams", "2", "--n_trials",
         "1", "--single_test_envs", "--test_env", "0"]


def test_a_sweep_with_a_failed_job_exits_1_and_names_it_in_its_summary(tmp_path, capsys):
    script = tmp_path / "train.py"
    script.write_text(HALF_FAILING_TRAIN)
    (tmp_path / "data").mkdir()
    argv = ["launch", "--output_dir", str(tmp_path / "sweep"), "--data_dir",
            str(tmp_path / "data"), "--command_launcher", "local", "--skip_confirmation",
            *SWEEP]
    assert sweep_cli.main(argv, train_command=[sys.executable, str(script)]) == 1
    out = capsys.readouterr().out.splitlines()
    jobs = cli_jobs(tmp_path / "sweep", sweep=SWEEP)
    assert [j.state for j in jobs] == [run_dir.DONE_STATE, run_dir.FAILED_STATE]
    start = out.index("sweep summary: 2 jobs: 1 done, 0 incomplete, 0 running, 0 queued, "
                      "1 failed, 0 not launched")
    failed = out[start + 1]
    assert failed.startswith(f"  failed {jobs[1].name}: error: --hparams lr: -1 is not a "
                             "finite number >= 0 (exit status 2)")
    assert os.path.join(jobs[1].output_dir, "launcher.log") in failed

    # once the job is fixed (here: done by hand) the same command exits 0
    open(os.path.join(jobs[1].output_dir, run_dir.DONE), "w").write("done")
    assert sweep_cli.main(argv, train_command=[sys.executable, str(script)]) == 0


def test_a_sweep_whose_jobs_all_finish_exits_0_with_its_summary(tmp_path, capsys):
    script = tmp_path / "train.py"
    script.write_text(HALF_FAILING_TRAIN)
    (tmp_path / "data").mkdir()
    argv = ["launch", "--output_dir", str(tmp_path / "sweep"), "--data_dir",
            str(tmp_path / "data"), "--command_launcher", "local", "--skip_confirmation",
            *SWEEP[:5], "1", *SWEEP[6:]]
    assert sweep_cli.main(argv, train_command=[sys.executable, str(script)]) == 0
    assert "sweep summary: 1 jobs: 1 done" in capsys.readouterr().out


def test_a_plan_stage_with_a_failed_job_names_its_reason(tmp_path, caplog):
    import logging

    import pytest

    from domainbed.command_launchers import REGISTRY
    from domainbed.sweep.plan import PlanError, Stage, run_stage
    from domainbed.sweep.options import make_spec
    missing = str(tmp_path / "missing.safetensors")
    spec = make_spec(str(tmp_path / "sweep"), datasets=["Debug28"], algorithms=["ERM"],
                     n_hparams=1, n_trials=1, test_env=0, data_dir=str(tmp_path),
                     train_extra={"init_from": missing})
    caplog.set_level(logging.INFO)
    with pytest.raises(PlanError, match=f"--init_from {missing}: no such weight file"):
        run_stage(Stage("target", sweeps=[spec]), REGISTRY.get("local"), {"in_process": True})
    assert "stage target: sweep summary: 1 jobs: 0 done" in caplog.text
