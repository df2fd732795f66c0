"""The sweep: job list, hashing, states, launch / delete_incomplete / status, CLI.

Most tests use FAKE_TRAIN, a tiny stand-in for the training script that follows the run
directory contract (lock, results.jsonl, out.txt, failed, done) and resumes from the records
already written; it starts in milliseconds, so a 24-job sweep runs in about a second. The
tests marked ``slow`` run the real ``domainbed.scripts.train`` on Debug28.
"""

import json
import os
import shlex
import subprocess
import sys
import time

import pytest

from domainbed.command_launchers import REGISTRY
from domainbed.errors import DomainBedError
from domainbed.lib import run_dir
from domainbed.lib.misc import seed_hash
from domainbed.scripts import sweep as sweep_cli
from domainbed.sweep import actions, hooks
from domainbed.sweep.jobs import (Job, all_test_env_combinations, job_hash, make_args_list,
                                  make_jobs)
from tests.fixtures.sweeps import SWEEP_24, cli_jobs, n_starts, write_fake_train


@pytest.fixture
def fake_train(tmp_path):
    return write_fake_train(tmp_path)


@pytest.fixture
def data_dir(tmp_path):
    path = tmp_path / "data"
    path.mkdir()
    return str(path)


# ---- job list -----------------------------------------------------------------------------

def test_test_env_combinations_are_every_single_and_pair_in_a_fixed_order():
    assert all_test_env_combinations(3) == [[0], [0, 1], [0, 2], [1], [1, 2], [2]]
    assert len(all_test_env_combinations(4)) == 4 + 6


def test_job_list_order_seeds_and_ids(tmp_path):
    args_list = make_args_list(n_trials=2, dataset_names=["Debug28"], algorithms=["ERM"],
                               n_hparams_from=0, n_hparams=2, steps=5, data_dir="/data",
                               task="domain_generalization", holdout_fraction=0.2,
                               single_test_envs=False, hparams=None, seed=7)
    assert len(args_list) == 2 * 6 * 2
    keys = [(a["trial_seed"], tuple(a["test_envs"]), a["hparams_seed"]) for a in args_list]
    assert keys == sorted(keys, key=lambda k: (k[0], all_test_env_combinations(3).index(
        list(k[1])), k[2]))
    first = args_list[0]
    assert first["seed"] == seed_hash(7, 0, "Debug28", "ERM", [0], 0)
    jobs = make_jobs(args_list, str(tmp_path))
    assert len({j.output_dir for j in jobs}) == 24
    assert all(os.path.dirname(j.output_dir) == str(tmp_path) for j in jobs)
    assert jobs[0].command[:3] == [sys.executable, "-m", "domainbed.scripts.train"]
    single = make_args_list(1, ["Debug28"], ["ERM"], 0, 1, None, None, "domain_generalization",
                            0.2, True, None)
    assert [a["test_envs"] for a in single] == [[0], [1], [2]]


def test_job_id_ignores_paths_but_not_arguments(tmp_path):
    base = {"dataset": "Debug28", "algorithm": "ERM", "test_envs": [0], "hparams_seed": 0,
            "trial_seed": 0, "seed": 1, "data_dir": "/data/a", "output_dir": "/x"}
    moved = dict(base, data_dir="../elsewhere", output_dir="/y", init_from="/pool/m0.safetensors")
    assert job_hash(base) == job_hash(moved)
    assert job_hash(base) != job_hash(dict(base, hparams_seed=1))
    assert job_hash(base) != job_hash(dict(base, fusing_range=4.0))
    assert Job(base, str(tmp_path / "a")).job_id == Job(moved, str(tmp_path / "b")).job_id
    with pytest.raises(DomainBedError, match="share the id"):
        make_jobs([base, dict(base, init_from="/pool/m1.safetensors")], str(tmp_path))


def test_command_is_an_argument_list_that_a_shell_cannot_hijack(tmp_path):
    evil = '{"note": "a b; touch /tmp/pwned $(id)"}'
    args_list = make_args_list(1, ["Debug28"], ["ERM"], 0, 1, 3, str(tmp_path),
                               "domain_generalization", 0.2, True, evil,
                               extra_args={"init_from": "/p/w.safetensors",
                                           "save_model_every_checkpoint": True})
    job = make_jobs(args_list[:1], str(tmp_path / "out"))[0]
    hparams_arg = job.command[job.command.index("--hparams") + 1]
    assert json.loads(hparams_arg) == {"note": "a b; touch /tmp/pwned $(id)"}
    assert shlex.split(job.command_str) == job.command
    assert "--save_model_every_checkpoint" in job.command
    assert job.command[job.command.index("--init_from") + 1] == "/p/w.safetensors"
    assert job.command[job.command.index("--test_envs") + 1] == "0"
    assert "--skip_model_save" not in job.command


def test_paper_code_words_dataset_and_test_env(tmp_path):
    jobs = cli_jobs(tmp_path, ["--dataset", "Debug28", "--test_env", "-1"])
    assert len(jobs) == 2 * 2 and {tuple(j.train_args["test_envs"]) for j in jobs} == {(-1,)}
    assert jobs[0].command[jobs[0].command.index("--test_envs") + 1] == "-1"
    jobs = cli_jobs(tmp_path, ["--test_env", "2"])
    assert {tuple(j.train_args["test_envs"]) for j in jobs} == {(2,)}
    with pytest.raises(DomainBedError, match=r"--test_env 3 is out of range.*0\.\.2"):
        cli_jobs(tmp_path, ["--test_env", "3"])


@pytest.mark.parametrize("extra, message", [
    (["--datasets", "NoSuchData"], "unknown dataset 'NoSuchData'.*Debug28"),
    (["--algorithms", "NoSuchAlgorithm"], "unknown algorithm 'NoSuchAlgorithm'.*ERM"),
    (["--hparams", "{lr: 1"], "--hparams must be a JSON object"),
    (["--train_extra", "[1]"], "--train_extra must be a JSON object"),
    (["--n_hparams", "0"], "n_hparams_from < --n_hparams"),
    (["--train_extra", '{"score_test_once": true}'], "two test envs.*--single_test_envs"),
])
def test_bad_sweep_arguments_name_the_fix(tmp_path, extra, message):
    with pytest.raises(DomainBedError, match=message):
        cli_jobs(tmp_path, extra)


def test_score_test_once_goes_with_single_test_env_sweeps(tmp_path):
    extra = ["--train_extra", '{"score_test_once": true}']
    jobs = cli_jobs(tmp_path, ["--single_test_envs", *extra])
    assert jobs and all("--score_test_once" in j.command for j in jobs)
    assert all(len(j.train_args["test_envs"]) == 1 for j in jobs)


def test_job_transformer_hook_adds_training_flags(tmp_path, monkeypatch):
    def add_init(train_args, sweep_args):
        train_args["init_from"] = f"/pool/member{train_args['hparams_seed']}.safetensors"
        return train_args
    monkeypatch.setitem(hooks.JOB_TRANSFORMERS._items, "test_add_init", add_init)
    jobs = cli_jobs(tmp_path)
    assert jobs[1].command[jobs[1].command.index("--init_from") + 1] == "/pool/member1.safetensors"
    # absolute paths stay out of the job id
    assert [j.job_id for j in jobs] == [j.job_id for j in cli_jobs(tmp_path / "other")]


# ---- launch / status / delete_incomplete ------------------------------------------------------

def test_dummy_launch_lists_every_command_and_runs_nothing(tmp_path, data_dir, capsys):
    out = tmp_path / "sweep"
    code = sweep_cli.main(["launch", "--output_dir", str(out), "--data_dir", data_dir,
                           "--command_launcher", "dummy", "--skip_confirmation", *SWEEP_24])
    assert code == 0
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("Dummy launcher:")]
    jobs = cli_jobs(out, ["--data_dir", data_dir])
    assert len(lines) == 24
    assert [shlex.split(l.split(":", 1)[1]) for l in lines] == [j.command for j in jobs]
    assert not out.exists() or not any(out.iterdir())
    assert all(j.state == run_dir.NOT_LAUNCHED_STATE for j in jobs)


def test_local_sweep_runs_all_skips_done_and_resumes_one(tmp_path, data_dir, fake_train, capsys):
    out = tmp_path / "sweep"
    argv = ["launch", "--output_dir", str(out), "--data_dir", data_dir, "--command_launcher",
            "local", "--skip_confirmation", *SWEEP_24]
    assert sweep_cli.main(argv, train_command=fake_train) == 0
    jobs = cli_jobs(out, train_command=fake_train)
    assert [j.state for j in jobs] == [run_dir.DONE_STATE] * 24
    assert [n_starts(j) for j in jobs] == [1] * 24

    assert sweep_cli.main(argv, train_command=fake_train) == 0  # nothing left to do
    assert [n_starts(j) for j in jobs] == [1] * 24

    victim = jobs[5]
    os.unlink(os.path.join(victim.output_dir, run_dir.DONE))
    results = os.path.join(victim.output_dir, run_dir.RESULTS)
    with open(results) as f:
        kept = f.readlines()[:2]  # as if killed after step 1
    with open(results, "w") as f:
        f.writelines(kept)
    assert victim.state == run_dir.INCOMPLETE_STATE
    assert sweep_cli.main(argv, train_command=fake_train) == 0
    assert [n_starts(j) for j in jobs] == [2 if j is victim else 1 for j in jobs]
    assert "resuming from step 2" in open(os.path.join(victim.output_dir, run_dir.OUT)).read()
    with open(results) as f:
        assert [json.loads(l)["step"] for l in f] == [0, 1, 2, 3, 4]
    capsys.readouterr()
    assert sweep_cli.main(["status", "--output_dir", str(out), *SWEEP_24]) == 0
    assert "24 jobs: 24 done, 0 incomplete, 0 running, 0 queued, 0 failed, 0 not launched" in \
        capsys.readouterr().out


def test_failed_job_is_shown_with_reason_and_relaunched(tmp_path, fake_train):
    args = [{"dataset": "Broken", "algorithm": "ERM", "test_envs": [0], "hparams_seed": 0},
            {"dataset": "Debug28", "algorithm": "ERM", "test_envs": [0], "hparams_seed": 0}]
    jobs = make_jobs(args, str(tmp_path / "sweep"), fake_train)
    actions.launch(jobs, REGISTRY.get("local"), skip_confirmation=True)
    assert [j.state for j in jobs] == [run_dir.FAILED_STATE, run_dir.DONE_STATE]
    report = actions.status(jobs)
    assert "2 jobs: 1 done, 0 incomplete, 0 running, 0 queued, 1 failed, 0 not launched" in report
    assert (f"Failed {jobs[0].name}: DataError: dataset Broken has no files (traceback: "
            f"{os.path.join(jobs[0].output_dir, run_dir.FAILED)})") in report
    assert actions.launch(jobs, REGISTRY.get("local"), skip_confirmation=True) == [jobs[0]]
    assert n_starts(jobs[0]) == 2 and n_starts(jobs[1]) == 1


def test_launch_never_starts_a_running_job_and_asks_first(tmp_path, fake_train):
    args = [{"dataset": "Debug28", "algorithm": "ERM", "test_envs": [i], "hparams_seed": 0}
            for i in range(3)]
    jobs = make_jobs(args, str(tmp_path / "sweep"), fake_train)
    assert actions.launch(jobs, REGISTRY.get("local"), confirm=lambda prompt: False) is None
    assert all(j.state == run_dir.NOT_LAUNCHED_STATE for j in jobs)
    with run_dir.RunLock(jobs[1].output_dir) as lock:
        assert lock.acquire()
        assert jobs[1].state == run_dir.RUNNING_STATE
        launched = actions.launch(jobs, REGISTRY.get("local"), confirm=lambda prompt: True)
        assert launched == [jobs[0], jobs[2]]
        assert n_starts(jobs[1]) == 0
    assert [j.state for j in jobs] == [run_dir.DONE_STATE, run_dir.INCOMPLETE_STATE,
                                       run_dir.DONE_STATE]


def test_delete_incomplete_removes_incomplete_and_failed_but_never_running(tmp_path, fake_train):
    args = [{"dataset": d, "algorithm": "ERM", "test_envs": [0], "hparams_seed": h}
            for d, h in [("Debug28", 0), ("Broken", 0), ("Debug28", 1), ("Debug28", 2),
                         ("Debug28", 3)]]
    done, failed, incomplete, running, not_launched = jobs = make_jobs(
        args, str(tmp_path / "sweep"), fake_train)
    REGISTRY.get("local")([done, failed])
    os.makedirs(incomplete.output_dir)
    env = dict(os.environ, FAKE_TRAIN_SLEEP="0.2")
    proc = subprocess.Popen(running.command, env=env)  # a real training process holding the lock
    try:
        deadline = time.monotonic() + 30
        while running.state != run_dir.RUNNING_STATE:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        assert actions.delete_incomplete(jobs, confirm=lambda prompt: False) is None
        assert os.path.isdir(failed.output_dir)
        deleted = actions.delete_incomplete(jobs, skip_confirmation=True)
        assert deleted == [failed, incomplete]
        assert os.path.isdir(running.output_dir) and os.path.isdir(done.output_dir)
        assert not os.path.exists(failed.output_dir) and not os.path.exists(incomplete.output_dir)
    finally:
        proc.kill()
        proc.wait()
    assert [j.state for j in jobs] == [run_dir.DONE_STATE, run_dir.NOT_LAUNCHED_STATE,
                                       run_dir.NOT_LAUNCHED_STATE, run_dir.INCOMPLETE_STATE,
                                       run_dir.NOT_LAUNCHED_STATE]
    assert actions.delete_incomplete(jobs, skip_confirmation=True) == [running]


def test_jobs_still_in_the_slurm_queue_are_neither_relaunched_nor_deleted(tmp_path, fake_train):
    args = [{"dataset": "Debug28", "algorithm": "ERM", "test_envs": [0], "hparams_seed": h}
            for h in range(4)]
    queued, left_queue, done, fresh = jobs = make_jobs(args, str(tmp_path / "sweep"),
                                                       fake_train)
    REGISTRY.get("local")([done])
    for job, job_id in ((queued, "11_0"), (left_queue, "11_1"), (done, "11_2")):
        run_dir.write_submission(job.output_dir, job_id)
    assert run_dir.read_submission(queued.output_dir) == "11_0"
    in_queue = lambda: {"11_0", "11_2", "99"}  # noqa: E731  (what squeue lists)

    assert actions.queued_dirs(jobs, in_queue) == {queued.output_dir}
    assert actions.queued_dirs(jobs, lambda: None) == set()  # squeue unavailable
    report = actions.status(jobs, in_queue)
    assert report.splitlines()[0] == ("4 jobs: 1 done, 1 incomplete, 0 running, 1 queued, "
                                      "0 failed, 1 not launched")
    assert actions.delete_incomplete(jobs, skip_confirmation=True, in_queue=in_queue) == \
        [left_queue]
    assert os.path.isdir(queued.output_dir)
    launched = actions.launch(jobs, REGISTRY.get("local"), skip_confirmation=True,
                              in_queue=in_queue)
    assert launched == [left_queue, fresh] and n_starts(queued) == 0


def test_launch_needs_an_existing_data_dir_and_a_known_launcher(tmp_path, capsys, caplog):
    base = ["launch", "--output_dir", str(tmp_path / "out"), "--skip_confirmation", *SWEEP_24]
    assert sweep_cli.main(base + ["--command_launcher", "local", "--data_dir",
                                  str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "--data_dir" in err and "does not exist" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
    # listing reads no data: it warns, and lists (docs/sweeps.md's first example)
    assert sweep_cli.main(base + ["--command_launcher", "dummy", "--data_dir",
                                  str(tmp_path / "missing")]) == 0
    assert "does not exist yet" in caplog.text
    from domainbed.scripts.sweep_args import build_parser
    # the paper's README commands give no launcher: they run here
    assert build_parser().parse_args(["launch", "--output_dir", "o"]).command_launcher == "local"
    assert sweep_cli.main(base + ["--data_dir", str(tmp_path), "--command_launcher", "nope"]) == 2
    assert "unknown command launcher 'nope'" in capsys.readouterr().err


# ---- the real training script ---------------------------------------------------------------

REAL_SWEEP = ["--datasets", "Debug28", "--algorithms", "ERM", "--test_env", "0",
              "--n_hparams", "2", "--n_trials", "1", "--steps", "2", "--checkpoint_freq", "1",
              "--hparams", '{"batch_size": 8}', "--skip_model_save",
              "--train_extra", '{"keep_checkpoint": true}']


@pytest.mark.slow
def test_real_training_sweep_resumes_and_reports_failures(tmp_path, data_dir):
    out = tmp_path / "sweep"
    argv = ["launch", "--output_dir", str(out), "--data_dir", data_dir, "--command_launcher",
            "local", "--skip_confirmation", *REAL_SWEEP]
    assert sweep_cli.main(argv) == 0
    jobs = cli_jobs(out, ["--data_dir", data_dir], sweep=REAL_SWEEP)
    assert len(jobs) == 2 and all(j.state == run_dir.DONE_STATE for j in jobs)
    logs = [open(os.path.join(j.output_dir, run_dir.OUT)).read() for j in jobs]
    assert sweep_cli.main(argv) == 0  # everything is done: nothing runs
    assert [open(os.path.join(j.output_dir, run_dir.OUT)).read() for j in jobs] == logs

    os.unlink(os.path.join(jobs[1].output_dir, run_dir.DONE))
    records = open(os.path.join(jobs[1].output_dir, run_dir.RESULTS)).read()
    assert sweep_cli.main(argv) == 0
    after = [open(os.path.join(j.output_dir, run_dir.OUT)).read() for j in jobs]
    assert after[0] == logs[0]
    assert after[1].startswith(logs[1]) and "resuming from step 2" in after[1][len(logs[1]):]
    assert open(os.path.join(jobs[1].output_dir, run_dir.RESULTS)).read() == records
    assert jobs[1].state == run_dir.DONE_STATE

    bad = make_jobs([dict(jobs[0].train_args, test_envs=[5])], str(out))
    REGISTRY.get("local")(bad)
    assert bad[0].state == run_dir.FAILED_STATE
    report = actions.status(jobs + bad)
    assert "3 jobs: 2 done, 0 incomplete, 0 running, 0 queued, 1 failed, 0 not launched" in report
    line = next(l for l in report.splitlines() if l.startswith("Failed"))
    # refused before it started (nothing written): the launcher recorded the run's one line
    assert "--test_envs 5 is out of range" in line
    assert "traceback: " + os.path.join(bad[0].output_dir, "launcher.log") in line

    # collect_results on the real runs: the two done runs count, the failed one does not
    from domainbed.scripts import collect_results
    assert collect_results.main(["--input_dir", str(out), "--markdown"]) == 0
    table = (out / "results.md").read_text()
    candidates = {"{:.1f}".format(100 * json.loads(line)["env0_in_acc"]) for j in jobs
                  for line in open(os.path.join(j.output_dir, run_dir.RESULTS))}
    erm_rows = [l for l in table.splitlines() if l.startswith("| ERM")]
    assert erm_rows, table
    first_cell = erm_rows[0].split("|")[2].strip()  # the test env 0 column
    assert first_cell.split(" +/- ")[0] in candidates, (first_cell, candidates)
