"""Launchers: registry, dummy, local, multi_gpu, and the SLURM pieces that need no cluster."""

import logging
import os
import pickle
import signal
import subprocess
import sys

import pytest

from domainbed.command_launchers import LAUNCHER_LOG, REGISTRY, Task, as_task, get_launcher
from domainbed.command_launchers.multi_gpu import visible_gpus
from domainbed.command_launchers.slurm import (JobFailedError, SlurmLauncher, TrainCommand,
                                               explain_sbatch_error)
from domainbed.errors import DomainBedError
from domainbed.lib import run_dir


def py(code: str) -> list:
    return [sys.executable, "-c", code]


def test_registry_has_every_backend_and_unknown_names_list_them():
    assert {"dummy", "local", "multi_gpu", "slurm"} <= set(REGISTRY.names())
    assert get_launcher("local") is REGISTRY.get("local")
    with pytest.raises(DomainBedError, match="unknown command launcher 'pbs'.*local"):
        get_launcher("pbs")


def test_as_task_accepts_jobs_lists_and_strings_without_a_shell(tmp_path):
    class FakeJob:
        command = ["python", "-m", "x"]
        output_dir = str(tmp_path)
        name = "job 1"
    assert as_task(FakeJob()) == Task(["python", "-m", "x"], str(tmp_path), "job 1")
    assert as_task("echo 'a b'; rm -rf x").command == ["echo", "a b;", "rm", "-rf", "x"]
    assert as_task(("a", 1)).command == ["a", "1"]
    with pytest.raises(TypeError):
        as_task(3)


def test_dummy_prints_and_runs_nothing(tmp_path, capsys):
    marker = tmp_path / "ran"
    result = REGISTRY.get("dummy")([py(f"open({str(marker)!r}, 'w')"),
                                    Task(["true"], str(tmp_path / "job"))])
    assert result == [None, None]
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[0].startswith("Dummy launcher: ") and str(marker) in out[0]
    assert not marker.exists() and not (tmp_path / "job").exists()


def test_local_runs_in_order_and_a_failure_does_not_stop_the_rest(tmp_path, caplog):
    order = tmp_path / "order.txt"
    tasks = [Task(py(f"open({str(order)!r}, 'a').write('{i}\\n'); print('hello {i}'); "
                     f"raise SystemExit({3 if i == 1 else 0})"), str(tmp_path / f"job{i}"),
                  f"job{i}") for i in range(3)]
    with caplog.at_level(logging.INFO, logger="domainbed.command_launchers"):
        codes = REGISTRY.get("local")(tasks)
    assert codes == [0, 3, 0]
    assert order.read_text().split() == ["0", "1", "2"]
    assert "hello 1" in (tmp_path / "job1" / LAUNCHER_LOG).read_text()
    progress = [r.getMessage() for r in caplog.records if r.getMessage().startswith("[")]
    assert len(progress) == 3
    assert progress[1].startswith("[2/3] FAILED (exit 3; see ") and "job1" in progress[1]
    assert progress[2].startswith("[3/3] done job2")


_PROGRESS_JOB = """
import sys, time
from domainbed.lib.run_dir import ProgressFile
progress = ProgressFile(sys.argv[1], 4, min_interval=0)
for step in range(1, 5):
    progress.update(step)
    time.sleep(0.4)
"""


def test_local_shows_the_steps_of_the_running_job(tmp_path, caplog, monkeypatch):
    from domainbed.command_launchers.core import process
    monkeypatch.setattr(process, "POLL_SECONDS", 0.05)
    monkeypatch.setattr(process, "LOG_EVERY_SECONDS", 0.0)
    monkeypatch.setenv("PYTHONPATH", os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", ""))
    job = str(tmp_path / "job")
    with caplog.at_level(logging.INFO, logger="domainbed.command_launchers"):
        assert REGISTRY.get("local")([Task(py(_PROGRESS_JOB) + [job], job, "job")]) == [0]
    lines = [r.getMessage() for r in caplog.records if " step " in r.getMessage()]
    steps = sorted({int(line.split("step ")[1].split("/")[0]) for line in lines})
    assert all(line.startswith("[1/1] step ") and line.endswith("/4") for line in lines)
    assert len(steps) >= 2 and set(steps) <= {1, 2, 3, 4}, lines
    assert run_dir.read_progress(job)["step"] == 4


def test_step_progress_draws_a_bar_on_a_terminal(tmp_path, capsys):
    from domainbed.command_launchers.core.process import StepProgress
    run = tmp_path / "run"
    task = Task(["true"], str(run), "job")
    progress = StepProgress(task, "[2/5]", tty=True)
    progress()  # no progress file yet: nothing to show
    assert progress.bar is None
    run_dir.ProgressFile(str(run), 10, min_interval=0).update(3)
    progress()
    assert progress.bar is not None and progress.bar.n == 3 and progress.bar.total == 10
    progress.close()
    assert "[2/5]" in capsys.readouterr().err


def test_visible_gpus_honours_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3, 5")
    assert visible_gpus() == ["3", "5"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,-1,4")
    assert visible_gpus() == ["2"]
    for hidden in ("", "-1"):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", hidden)
        assert visible_gpus() == []


def test_multi_gpu_with_no_gpu_fails_at_once(monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    marker = tmp_path / "ran"
    with pytest.raises(DomainBedError, match="no GPU is visible.*--command_launcher local"):
        REGISTRY.get("multi_gpu")([py(f"open({str(marker)!r}, 'w')")])
    assert not marker.exists()


def test_multi_gpu_gives_each_job_one_gpu_and_never_shares_one(monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    # each job claims its GPU with O_EXCL for its lifetime: a second job on a busy GPU fails
    code = ("import os, time\n"
            "gpu = os.environ['CUDA_VISIBLE_DEVICES']\n"
            f"claim = os.path.join({str(tmp_path)!r}, 'busy' + gpu)\n"
            "fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY)\n"
            f"open(os.path.join({str(tmp_path)!r}, 'used'), 'a').write(gpu + '\\n')\n"
            "time.sleep(0.3)\n"
            "os.close(fd); os.unlink(claim)\n")
    codes = REGISTRY.get("multi_gpu")([Task(py(code), name=f"j{i}") for i in range(6)])
    assert codes == [0] * 6
    used = (tmp_path / "used").read_text().split()
    assert sorted(set(used)) == ["3", "5"] and len(used) == 6
    codes = REGISTRY.get("multi_gpu")([py(code)] * 2, gpus=["7"])
    assert codes == [0, 0] and (tmp_path / "used").read_text().split()[6:] == ["7", "7"]


@pytest.mark.parametrize("stderr, option", [
    ("sbatch: error: Batch job submission failed: Invalid partition name specified",
     "--slurm_partition"),
    ("sbatch: error: Batch job submission failed: More processors requested than permitted",
     "--slurm_cpus_per_task"),
    ("sbatch: error: Batch job submission failed: Invalid generic resource (gres) specification",
     "--slurm_gpus_per_node"),
    ("sbatch: error: Memory specification can not be satisfied\n"
     "sbatch: error: Batch job submission failed: Requested node configuration is not available",
     "--slurm_mem_gb"),
    ("sbatch: error: Batch job submission failed: Invalid account or account/partition "
     "combination specified", "--slurm_account"),
    ("sbatch: error: Batch job submission failed: Requested time limit is invalid "
     "(missing or exceeds some limit)", "--slurm_time"),
])
def test_sbatch_errors_name_the_option_to_fix(stderr, option):
    message = explain_sbatch_error(stderr)
    assert "\n" not in message and f"fix {option}" in message
    assert stderr.splitlines()[-1].split("failed: ")[-1] in message or "Memory" in message


def test_slurm_launcher_without_sbatch_says_so(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DomainBedError, match="sbatch.*not on PATH.*local"):
        SlurmLauncher().submit([Task(["true"])], log_dir=str(tmp_path / "logs"))


def test_train_command_reports_success_and_failure_with_the_run_reason(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    ok = TrainCommand(py(f"open({str(out / run_dir.DONE)!r}, 'w')"), str(out))
    assert ok() == {"returncode": 0, "starts": [0], "output_dir": str(out)}
    failing = TrainCommand(py(
        f"import json; json.dump({{'error': 'ValueError: bad test env 5'}}, "
        f"open({str(out / run_dir.FAILED)!r}, 'w')); raise SystemExit(1)"), str(out))
    os.unlink(out / run_dir.DONE)
    with pytest.raises(JobFailedError, match="exit status 1.*ValueError: bad test env 5"):
        failing()


def test_train_command_checkpoint_stops_the_child_and_resubmits_itself(tmp_path):
    runner = TrainCommand(py("import time; time.sleep(60)"), str(tmp_path), stop_timeout_s=10)
    runner.starts = [0]
    runner._proc = subprocess.Popen(runner.command)
    try:
        delayed = runner.checkpoint()
        assert runner._proc.returncode == -signal.SIGTERM
    finally:
        if runner._proc.poll() is None:
            runner._proc.kill()
    resubmitted = pickle.loads(pickle.dumps(delayed.function))
    assert isinstance(resubmitted, TrainCommand)
    assert resubmitted.command == runner.command and resubmitted.starts == [0]
    assert resubmitted._proc is None


def test_train_command_kills_a_child_that_ignores_sigterm(tmp_path):
    code = ("import signal, time, sys; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(60)")
    runner = TrainCommand(py(code), str(tmp_path), stop_timeout_s=0.5)
    runner._proc = subprocess.Popen(runner.command, stdout=subprocess.PIPE)
    assert runner._proc.stdout.readline().strip() == b"ready"
    runner.checkpoint()
    assert runner._proc.returncode == -signal.SIGKILL


def test_slurm_cli_options_reach_the_launcher(tmp_path):
    from domainbed.scripts.sweep_args import build_parser
    args = build_parser().parse_args([
        "launch", "--output_dir", str(tmp_path), "--command_launcher", "slurm",
        "--slurm_partition", "gpu", "--slurm_account", "lab", "--slurm_time", "90",
        "--slurm_gpus_per_node", "1", "--slurm_cpus_per_task", "8", "--slurm_mem_gb", "32",
        "--slurm_array_parallelism", "4", "--slurm_dependency", "afterok:12", "--slurm_wait"])
    assert get_launcher("slurm").options_from_args(args) == {
        "partition": "gpu", "account": "lab", "time_min": 90, "gpus_per_node": 1,
        "cpus_per_task": 8, "mem_gb": 32.0, "array_parallelism": 4,
        "log_dir": os.path.join(str(tmp_path), "slurm_logs"), "dependency": "afterok:12",
        "wait": True}
    assert get_launcher("multi_gpu").options_from_args(
        build_parser().parse_args(["launch", "--output_dir", "x", "--gpus", "0, 2"])) == \
        {"gpus": ["0", "2"]}


def test_slurm_failure_lines_show_the_remote_error():
    from domainbed.command_launchers.slurm import _one_line_reason
    remote = ("Job (task=0) failed during processing with trace:\n----\nTraceback (most recent "
              "call last):\n  File \"x.py\", line 1\ndomainbed.command_launchers.slurm."
              "JobFailedError: /r failed (exit status 1): DataError: no files\n\nYou can check")
    assert _one_line_reason(Exception(remote)).endswith("JobFailedError: /r failed (exit "
                                                        "status 1): DataError: no files")
    cancelled = "Job 3_4 (task: 0) has not produced any output (state: CANCELLED by 0)\nError " \
                "stream produced:\n"
    assert _one_line_reason(Exception(cancelled)).endswith("(state: CANCELLED by 0)")


def test_progress_bars_only_on_a_terminal(monkeypatch):
    from domainbed.lib.misc import show_progress

    class Stream:
        def __init__(self, tty):
            self.tty = tty

        def isatty(self):
            return self.tty
    monkeypatch.setattr(sys, "stderr", Stream(True))
    assert show_progress() and not show_progress(disabled=True)
    monkeypatch.setattr(sys, "stderr", Stream(False))
    assert not show_progress()
