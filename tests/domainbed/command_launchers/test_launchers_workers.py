"""In-process runs several at a time (``local --in_process --max_parallel N``): persistent
worker processes give the results of one-at-a-time in-process runs, are reused from job to
job, are replaced when one dies, and stop with the launcher (Ctrl-C, or a killed launcher)."""

import functools
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch

from domainbed.command_launchers import LAUNCHER_LOG, REGISTRY, Task
from domainbed.command_launchers.core import resources
from domainbed.command_launchers.core.parallel import Slot
from domainbed.command_launchers.core.workers import run_in_workers
from domainbed.lib import run_dir
from tests.fixtures.paths import REPO
from tests.fixtures.recipe_runs import comparable_records as _records
WORKER_PID = re.compile(r"in-process \(worker pid (\d+)\)")


@pytest.fixture(autouse=True)
def importable_repo(monkeypatch):
    """Workers are fresh interpreters: they import this checkout."""
    monkeypatch.setenv("PYTHONPATH", REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for name in resources.THREAD_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")


TINY = '{"backbone": "tiny_cnn", "batch_size": 8}'  # fast runs: what matters is the launcher


def _train_task(data, out, *extra, steps=3):
    """A training task whose call (pickled to the worker) is the command line's entry
    point."""
    from domainbed.scripts import train
    argv = ["--dataset", "Debug28", "--data_dir", str(data), "--steps", str(steps),
            "--checkpoint_freq", "2", "--hparams_seed", "1", "--output_dir", str(out),
            "--hparams", TINY, *extra]
    command = [sys.executable, "-m", "domainbed.scripts.train", *argv]
    return Task(command, str(out), os.path.basename(str(out)),
                functools.partial(train.main, argv))


def _worker_pid(run):
    """The worker that ran ``run``, from the header of its launcher.log (None: not yet)."""
    try:
        with open(os.path.join(run, LAUNCHER_LOG)) as f:
            match = WORKER_PID.search(f.readline())
    except FileNotFoundError:
        return None
    return int(match.group(1)) if match else None


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead too: its parent (not us) has not reaped it yet
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def _wait_for(condition, seconds=120.0):
    deadline = time.time() + seconds
    while not condition():
        if time.time() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


@pytest.mark.slow
def test_workers_give_the_one_at_a_time_results_and_run_several_jobs_each(tmp_path, caplog):
    (tmp_path / "data").mkdir()
    local = REGISTRY.get("local")
    seeds = ("3", "4", "5")
    one = [_train_task(tmp_path / "data", tmp_path / f"one{s}", "--seed", s) for s in seeds]
    assert local(one, in_process=True, max_parallel=1, threads_per_job=1, tty=False) == [0] * 3
    torch.manual_seed(7)
    rng, threads, cwd = torch.random.get_rng_state(), torch.get_num_threads(), os.getcwd()
    many = [_train_task(tmp_path / "data", tmp_path / f"many{s}", "--seed", s) for s in seeds]
    caplog.clear()  # only the parallel launch's lines (an earlier test may have set INFO)
    with caplog.at_level(logging.INFO, logger="domainbed.command_launchers"):
        codes = local(many, in_process=True, max_parallel=2, threads_per_job=1, tty=False)
    assert codes == [0] * 3
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert (torch.get_num_threads(), os.getcwd()) == (threads, cwd)
    from safetensors.torch import load_file
    for a, b in zip(one, many):
        assert _records(a.output_dir) == _records(b.output_dir)
        wa = load_file(os.path.join(a.output_dir, run_dir.MODEL))
        wb = load_file(os.path.join(b.output_dir, run_dir.MODEL))
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    pids = [_worker_pid(t.output_dir) for t in many]
    assert None not in pids and os.getpid() not in pids
    assert len(set(pids)) == 2  # two workers, one of which ran two jobs
    assert not any(_alive(p) for p in set(pids))  # stopped when the launcher returned
    header = (tmp_path / "many3" / LAUNCHER_LOG).read_text().splitlines()[0]
    assert "'OMP_NUM_THREADS': '1'" in header
    assert "local launcher: 2 jobs at a time in-process on 2 workers, 1 threads each" \
        in caplog.text
    lines = [r.getMessage() for r in caplog.records
             if r.getMessage().startswith("[") and " step " not in r.getMessage()]
    assert sorted(line.split()[0] for line in lines) == ["[1/3]", "[2/3]", "[3/3]"]
    assert all(line.split()[1] == "done" for line in lines)


@pytest.mark.slow
def test_failures_in_workers_are_reported_and_a_dead_worker_is_replaced(tmp_path, caplog):
    data = tmp_path / "data"
    data.mkdir()
    long_run = tmp_path / "long"
    tasks = [_train_task(data, long_run, steps=100000),
             _train_task(data, tmp_path / "bad_flag", "--no_such_flag"),
             Task([sys.executable, "-c", "raise SystemExit(4)"], str(tmp_path / "other")),
             _train_task(data, tmp_path / "fine")]
    killed = []

    def kill_the_long_run():  # as the kernel's OOM killer would
        _wait_for(lambda: _worker_pid(str(long_run)) and run_dir.read_progress(str(long_run)))
        killed.append(_worker_pid(str(long_run)))
        os.kill(killed[0], signal.SIGKILL)
    killer = threading.Thread(target=kill_the_long_run, daemon=True)
    killer.start()
    with caplog.at_level(logging.INFO, logger="domainbed.command_launchers"):
        codes = run_in_workers(tasks, [Slot({}, "")], n_threads=1, tty=False)  # one slot
    killer.join()
    assert codes == [-signal.SIGKILL, 2, 4, 0]
    assert not os.path.exists(long_run / run_dir.FAILED)  # as for a killed subprocess
    assert "unrecognized arguments: --no_such_flag" in \
        (tmp_path / "bad_flag" / LAUNCHER_LOG).read_text()
    assert os.path.exists(tmp_path / "fine" / run_dir.DONE)
    after = {_worker_pid(str(tmp_path / name)) for name in ("bad_flag", "fine")}
    assert len(after) == 1 and killed[0] not in after  # the slot got a fresh worker
    assert _worker_pid(str(tmp_path / "other")) is None  # not ours: a subprocess
    assert any(r.getMessage().startswith("[1/4] FAILED (killed by signal 9; see ")
               for r in caplog.records)


_LAUNCHER_SCRIPT = """
import sys
from domainbed.command_launchers import REGISTRY, Task
data, root = sys.argv[1], sys.argv[2]
from domainbed.training.config import TrainConfig
from domainbed.training.job import training_call
tasks = []
for i in range(3):
    config = TrainConfig(dataset="Debug28", data_dir=data, steps=100000,
                         output_dir=f"{root}/job{i}")
    tasks.append(Task(["unused"], f"{root}/job{i}", call=training_call(config)))
REGISTRY.get("local")(tasks, in_process=True, max_parallel=2, threads_per_job=1, tty=False)
"""


def _default_sigint():
    """In the child, before exec: Ctrl-C's default action, even when this test runs from a
    shell that started it in the background (which ignores SIGINT, and Python then installs
    no KeyboardInterrupt handler)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["ctrl_c", "launcher_killed"])
def test_workers_stop_with_the_launcher(tmp_path, how):
    (tmp_path / "data").mkdir()
    launcher = subprocess.Popen([sys.executable, "-c", _LAUNCHER_SCRIPT, str(tmp_path / "data"),
                                 str(tmp_path)], stderr=subprocess.PIPE, text=True,
                                preexec_fn=_default_sigint)
    try:
        runs = [str(tmp_path / f"job{i}") for i in range(2)]
        _wait_for(lambda: launcher.poll() is not None or all(
            _worker_pid(r) and run_dir.read_progress(r) for r in runs), 300)
        assert launcher.poll() is None, launcher.stderr.read()
        workers = [_worker_pid(r) for r in runs]
        if how == "ctrl_c":
            launcher.send_signal(signal.SIGINT)  # the launcher only, as in test_launchers
            _, err = launcher.communicate(timeout=60)
            assert launcher.returncode != 0 and "KeyboardInterrupt" in err
            assert "killed 2 running jobs" in err
            assert not any(_alive(p) for p in workers)
        else:
            launcher.kill()
            launcher.wait()
            _wait_for(lambda: not any(_alive(p) for p in workers), 30)  # they notice
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert not os.path.exists(tmp_path / "job2")  # the third job never started
    for run in runs:
        assert not os.path.exists(os.path.join(run, run_dir.FAILED))
