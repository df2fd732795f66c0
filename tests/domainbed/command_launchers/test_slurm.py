"""The SLURM launcher against a real cluster (bring one up with: bash .ci/slurm-up.sh).

Skipped without a cluster, failed instead when REQUIRE_SLURM=1 (see conftest.py).
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import submitit

from domainbed.command_launchers import REGISTRY, Task
from domainbed.command_launchers.slurm import wait_for
from domainbed.errors import DomainBedError
from domainbed.lib import run_dir
from domainbed.scripts import sweep as sweep_cli
from domainbed.sweep import actions
from domainbed.sweep.jobs import make_jobs
from tests.fixtures.sweeps import SWEEP_24, cli_jobs, n_starts, write_fake_train

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

# small requests that fit the 2-CPU CI node, so that two jobs run at once
SLURM_ARGS = ["--slurm_partition", "debug", "--slurm_cpus_per_task", "1", "--slurm_mem_gb",
              "1", "--slurm_time", "10"]
SUBMIT = {"partition": "debug", "cpus_per_task": 1, "mem_gb": 1, "time_min": 10}


def n_submitted(log_dir) -> int:
    return len([f for f in os.listdir(log_dir) if f.endswith("_submitted.pkl")])


def test_sweep_through_slurm_ends_done_and_relaunches_only_what_is_missing(tmp_path):
    fake = write_fake_train(tmp_path)
    (tmp_path / "data").mkdir()
    out = tmp_path / "sweep"
    argv = ["launch", "--output_dir", str(out), "--data_dir", str(tmp_path / "data"),
            "--command_launcher", "slurm", "--slurm_wait", "--skip_confirmation", *SLURM_ARGS,
            *SWEEP_24]
    assert sweep_cli.main(argv, train_command=fake) == 0
    jobs = cli_jobs(out, ["--data_dir", str(tmp_path / "data")], train_command=fake)
    assert [j.state for j in jobs] == [run_dir.DONE_STATE] * 24
    log_dir = out / "slurm_logs"
    assert n_submitted(log_dir) == 24  # one array, per-job files

    assert sweep_cli.main(argv, train_command=fake) == 0
    assert n_submitted(log_dir) == 24  # nothing submitted again

    victim = jobs[7]
    os.unlink(os.path.join(victim.output_dir, run_dir.DONE))
    results = os.path.join(victim.output_dir, run_dir.RESULTS)
    kept = open(results).readlines()[:3]
    with open(results, "w") as f:
        f.writelines(kept)
    assert sweep_cli.main(argv, train_command=fake) == 0
    assert n_submitted(log_dir) == 25
    assert [n_starts(j) for j in jobs] == [2 if j is victim else 1 for j in jobs]
    assert "resuming from step 3" in open(os.path.join(victim.output_dir, run_dir.OUT)).read()
    assert all(j.state == run_dir.DONE_STATE for j in jobs)


def _wait_for(predicate, what: str, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what}")
        time.sleep(0.05)


def _comparable(results_path):
    """Records without what may differ between two identical runs (timing, memory, paths)."""
    records = []
    with open(results_path) as f:
        for line in f:
            record = json.loads(line)
            for key in ("step_time", "mem_gb"):
                record.pop(key, None)
            record["args"].pop("output_dir", None)
            records.append(record)
    return records


def test_preempted_training_is_requeued_and_resumes_from_its_checkpoint(tmp_path):
    args = {"dataset": "Debug28", "algorithm": "ERM", "test_envs": [0], "hparams_seed": 0,
            "trial_seed": 0, "seed": 0, "steps": 12, "checkpoint_freq": 2,
            "hparams": '{"batch_size": 8}', "skip_model_save": True,
            "data_dir": str(tmp_path)}
    job, = make_jobs([args], str(tmp_path / "slurm"))
    reference, = make_jobs([args], str(tmp_path / "local"))
    submitted, = REGISTRY.get("slurm").submit([job], log_dir=str(tmp_path / "logs"), **SUBMIT)
    local = subprocess.Popen(reference.command, stdout=subprocess.DEVNULL)  # uninterrupted run

    results = os.path.join(job.output_dir, run_dir.RESULTS)

    def n_records():
        if not os.path.exists(results):
            return 0
        with open(results) as f:
            return sum(1 for _ in f)

    def checkpointed():
        return (os.path.exists(os.path.join(job.output_dir, run_dir.CHECKPOINT))
                and n_records() >= 2)
    _wait_for(checkpointed, "a checkpoint after step 2")
    # freeze the training process (its pid is in the run lock) so that the preemption lands
    # mid-run however fast this machine is; it gets SLURM's signals when it thaws
    with open(os.path.join(job.output_dir, run_dir.LOCK)) as f:
        train_pid = int(f.read())
    os.kill(train_pid, signal.SIGSTOP)
    try:
        assert job.state == run_dir.RUNNING_STATE and n_records() < 7
        submitted._interrupt()  # what SLURM does on preemption: SIGTERM, then USR2
    finally:
        os.kill(train_pid, signal.SIGCONT)
    outcome = submitted.result()
    assert local.wait() == 0

    assert outcome["starts"] == [0, 1]  # ran twice: requeued once
    log = open(os.path.join(job.output_dir, run_dir.OUT)).read()
    resumed = [int(l.split("resuming from step ")[1].split()[0]) for l in log.splitlines()
               if "resuming from step " in l]
    assert len(resumed) == 1 and 0 < resumed[0] < 12
    assert job.state == run_dir.DONE_STATE
    assert _comparable(results) == _comparable(os.path.join(reference.output_dir,
                                                            run_dir.RESULTS))
    assert [r["step"] for r in _comparable(results)] == [0, 2, 4, 6, 8, 10, 11]


def test_failed_jobs_are_reported_and_dependent_stages_wait(tmp_path, monkeypatch, caplog):
    fake = write_fake_train(tmp_path)
    base = {"algorithm": "ERM", "test_envs": [0], "hparams_seed": 0}
    ok, broken = jobs = make_jobs([dict(base, dataset="Debug28"), dict(base, dataset="Broken")],
                                  str(tmp_path / "sweep"), fake)
    monkeypatch.setenv("FAKE_TRAIN_SLEEP", "0.5")  # stage 1 takes a few seconds
    launcher = REGISTRY.get("slurm")
    stage1 = launcher.submit(jobs, log_dir=str(tmp_path / "logs"), **SUBMIT)
    assert stage1[0].job_id.split("_")[0] == stage1[1].job_id.split("_")[0]  # one array
    # stage 2 checks that stage 1 is over when it starts
    check = Task([sys.executable, "-c", "import os, sys; sys.exit(0 if os.path.exists("
                  f"{os.path.join(ok.output_dir, run_dir.DONE)!r}) else 5)"])
    stage2_ids = launcher.launch([check], log_dir=str(tmp_path / "logs"),
                                 after=[stage1[0].job_id], **SUBMIT)
    assert len(stage2_ids) == 1
    pending = subprocess.run(["squeue", "-h", "-j", stage2_ids[0], "-o", "%E"],
                             capture_output=True, text=True, check=True).stdout
    assert f"afterok:{stage1[0].job_id}" in pending
    assert submitit.SlurmJob(str(tmp_path / "logs"), stage2_ids[0]).result()["returncode"] == 0
    assert wait_for(stage1, [ok, broken]) == [True, False]
    assert any("FAILED" in r.getMessage() and "dataset Broken has no files" in r.getMessage()
               for r in caplog.records)
    # the job id as the launcher prints it: a bare "28" also matches a path like pytest-228
    assert not any("FAILED" in r.getMessage() and f"SLURM job {stage2_ids[0]}" in r.getMessage()
                   for r in caplog.records)
    report = actions.status(jobs)
    assert "1 done, 0 incomplete, 0 running, 0 queued, 1 failed" in report
    assert "DataError: dataset Broken has no files" in report


@pytest.mark.parametrize("options, option", [
    ({"partition": "nosuchpartition"}, "--slurm_partition"),
    ({"cpus_per_task": 64}, "--slurm_cpus_per_task"),
    ({"gpus_per_node": 1}, "--slurm_gpus_per_node"),
    ({"mem_gb": 100000}, "--slurm_mem_gb"),
])
def test_impossible_requests_fail_with_one_line_naming_the_option(tmp_path, options, option):
    request = dict(SUBMIT, **options)
    with pytest.raises(DomainBedError) as info:
        REGISTRY.get("slurm").submit([Task(["true"])], log_dir=str(tmp_path), **request)
    message = str(info.value)
    assert "\n" not in message and f"fix {option}" in message


def test_jobs_waiting_in_the_queue_are_not_submitted_twice(tmp_path):
    fake = write_fake_train(tmp_path)
    base = {"dataset": "Debug28", "algorithm": "ERM", "test_envs": [0]}
    jobs = make_jobs([dict(base, hparams_seed=h) for h in range(2)], str(tmp_path / "sweep"),
                     fake)
    launcher = REGISTRY.get("slurm")
    logs = str(tmp_path / "logs")
    # held back by --begin: both stay pending in the queue
    ids = launcher.launch(jobs, log_dir=logs, additional_parameters={"begin": "now+1hour"},
                          **SUBMIT)
    try:
        assert [run_dir.read_submission(j.output_dir) for j in jobs] == ids
        assert actions.status(jobs).splitlines()[0] == (
            "2 jobs: 0 done, 0 incomplete, 0 running, 2 queued, 0 failed, 0 not launched")
        assert actions.launch(jobs, launcher, skip_confirmation=True, log_dir=logs,
                              **SUBMIT) == []
        assert n_submitted(logs) == 2  # nothing submitted again
    finally:
        subprocess.run(["scancel", ids[0].split("_")[0]], check=True)
    _wait_for(lambda: not actions.queued_dirs(jobs), "the cancelled jobs to leave the queue")
    # out of the queue, never started: launched again, and they run to the end
    launched = actions.launch(jobs, launcher, skip_confirmation=True, log_dir=logs, wait=True,
                              **SUBMIT)
    assert launched == jobs and all(j.state == run_dir.DONE_STATE for j in jobs)
