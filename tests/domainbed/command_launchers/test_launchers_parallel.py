"""Launchers that use the machine: parallel local jobs, several jobs per GPU (fake GPU ids),
the thread split, Ctrl-C, and in-process training runs (same results as a subprocess,
crashes reported, process state put back)."""

import functools
import json
import logging
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from domainbed.command_launchers import LAUNCHER_LOG, REGISTRY, Task
from domainbed.command_launchers.core import in_process, resources
from domainbed.command_launchers.core.process import thread_overrides
from domainbed.command_launchers.multi_gpu import gpu_slots
from domainbed.errors import DomainBedError
from domainbed.lib import run_dir
from tests.fixtures.paths import REPO
from tests.fixtures.recipe_runs import comparable_records as _records

# A job that registers itself in RUNNING (one file per live job, named <group>.<pid>), waits
# up to 5 s until it sees WANT jobs of its group (or gives up), records the largest number
# of live jobs of its group it saw, and writes its environment; ``group`` is its GPU or "cpu".
_CONCURRENT_JOB = """
import json, os, sys, time
running, want, index, code = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
group = os.environ.get("CUDA_VISIBLE_DEVICES", "cpu")
me = os.path.join(running, f"{group}.{os.getpid()}")
open(me, "w").close()
seen = 0
deadline = time.time() + 5
while True:
    mine = [f for f in os.listdir(running) if f.split(".")[0] == group]
    seen = max(seen, len(mine))
    if len(mine) >= want or time.time() > deadline:
        break
    time.sleep(0.02)
time.sleep(0.2)
mine = [f for f in os.listdir(running) if f.split(".")[0] == group]
seen = max(seen, len(mine))
os.unlink(me)
with open(os.path.join(running, "..", f"seen{index}.json"), "w") as f:
    json.dump({"group": group, "seen": seen, "omp": os.environ.get("OMP_NUM_THREADS")}, f)
raise SystemExit(code)
"""


def _concurrent_tasks(tmp_path, n, want, failing=()):
    running = tmp_path / "running"
    running.mkdir()
    return [Task([sys.executable, "-c", _CONCURRENT_JOB, str(running), str(want), str(i),
                  str(3 if i in failing else 0)], str(tmp_path / f"job{i}"), f"job{i}")
            for i in range(n)]


def _seen(tmp_path, n):
    return [json.loads((tmp_path / f"seen{i}.json").read_text()) for i in range(n)]


@pytest.fixture
def no_thread_env(monkeypatch):
    for name in resources.THREAD_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(resources, "visible_gpus", lambda: [])


def test_parallel_local_runs_every_job_at_most_n_at_once_and_reports_failures(
        tmp_path, caplog, no_thread_env, monkeypatch):
    monkeypatch.setattr(resources, "cpu_count", lambda: 4)
    tasks = _concurrent_tasks(tmp_path, 5, want=2, failing={2})
    with caplog.at_level(logging.INFO, logger="domainbed.command_launchers"):
        codes = REGISTRY.get("local")(tasks, max_parallel=2, tty=False)
    assert codes == [0, 0, 3, 0, 0]
    seen = _seen(tmp_path, 5)
    assert max(s["seen"] for s in seen) == 2  # two at once, never three
    assert {s["omp"] for s in seen} == {"2"}  # 4 cores split between 2 jobs
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("[")]
    assert len(lines) == 5
    assert any(l.startswith("[3/5] FAILED (exit 3; see ") and "job2" in l for l in lines)
    assert sum(l.split()[1] == "done" for l in lines) == 4
    assert "local launcher: 1 of 5 jobs failed" in caplog.text
    assert "local launcher: 2 jobs at a time, 2 threads each" in caplog.text
    assert (tmp_path / "job2" / LAUNCHER_LOG).read_text().startswith("=== ")


def test_thread_split_and_its_overrides(no_thread_env, monkeypatch):
    monkeypatch.setattr(resources, "cpu_count", lambda: 8)
    assert thread_overrides(1) == {}  # one job at a time: torch's own default
    assert thread_overrides(2) == {"OMP_NUM_THREADS": "4", "MKL_NUM_THREADS": "4"}
    assert thread_overrides(3)["OMP_NUM_THREADS"] == "2"
    assert thread_overrides(16)["OMP_NUM_THREADS"] == "1"  # never 0
    assert thread_overrides(1, threads_per_job=3)["OMP_NUM_THREADS"] == "3"
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the user's choice is inherited
    assert thread_overrides(2) == {}
    assert thread_overrides(2, threads_per_job=2)["OMP_NUM_THREADS"] == "2"


def test_default_max_parallel_from_cores_and_gpus():
    assert resources.default_max_parallel(n_cpus=2, gpus=[]) == 1
    assert resources.default_max_parallel(n_cpus=4, gpus=[]) == 1
    assert resources.default_max_parallel(n_cpus=16, gpus=[]) == 4
    assert resources.default_max_parallel(n_cpus=2, gpus=["0", "1", "2"]) == 3
    assert resources.cpu_count() >= 1


def test_local_spreads_parallel_jobs_over_the_gpus(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")  # fake GPU ids: the jobs only read them
    tasks = _concurrent_tasks(tmp_path, 4, want=1)
    assert REGISTRY.get("local")(tasks, max_parallel=2, tty=False) == [0] * 4
    assert sorted({s["group"] for s in _seen(tmp_path, 4)}) == ["3", "5"]
    assert max(s["seen"] for s in _seen(tmp_path, 4)) == 1  # one job per GPU
    # one job at a time: CUDA_VISIBLE_DEVICES is left as it is
    (tmp_path / "one").mkdir()
    tasks = _concurrent_tasks(tmp_path / "one", 1, want=1)
    assert REGISTRY.get("local")(tasks, max_parallel=1, tty=False) == [0]
    assert _seen(tmp_path / "one", 1)[0]["group"] == "3,5"


def test_bad_parallel_options_name_the_fix():
    local = REGISTRY.get("local")
    with pytest.raises(DomainBedError, match="--max_parallel must be a positive integer"):
        local([Task(["true"])], max_parallel=0)
    with pytest.raises(DomainBedError, match="--max_parallel must be a positive integer"):
        local([Task(["true"])], max_parallel=-1, in_process=True)
    with pytest.raises(DomainBedError, match="--jobs_per_gpu must be a positive integer"):
        REGISTRY.get("multi_gpu")([Task(["true"])], gpus=["0"], jobs_per_gpu=0)


def test_multi_gpu_packs_jobs_per_gpu_with_a_fake_gpu_list(tmp_path, monkeypatch, caplog,
                                                          no_thread_env):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    monkeypatch.setattr(resources, "cpu_count", lambda: 8)
    tasks = _concurrent_tasks(tmp_path, 8, want=2, failing={5})
    with caplog.at_level(logging.INFO, logger="domainbed.command_launchers"):
        codes = REGISTRY.get("multi_gpu")(tasks, jobs_per_gpu=2, tty=False)
    assert codes == [0, 0, 0, 0, 0, 3, 0, 0]
    seen = _seen(tmp_path, 8)
    assert sorted({s["group"] for s in seen}) == ["3", "5"]
    for gpu in ("3", "5"):  # two runs packed on each GPU, never three
        assert max(s["seen"] for s in seen if s["group"] == gpu) == 2
    assert {s["omp"] for s in seen} == {"2"}  # 8 cores split between 4 runs
    assert any(r.getMessage().startswith("[6/8] GPU ") and "FAILED (exit 3" in r.getMessage()
               for r in caplog.records)
    slots = gpu_slots(["0", "1"], 3)
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in slots] == ["0", "1"] * 3  # spread first


def test_multi_gpu_with_no_gpu_fails_at_once_whatever_jobs_per_gpu(monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    marker = tmp_path / "ran"
    with pytest.raises(DomainBedError, match="no GPU is visible"):
        REGISTRY.get("multi_gpu")([[sys.executable, "-c", f"open({str(marker)!r}, 'w')"]],
                                  jobs_per_gpu=4)
    assert not marker.exists()


def test_launcher_flags_reach_the_launchers(tmp_path):
    from domainbed.command_launchers import get_launcher
    from domainbed.scripts.sweep_args import build_parser
    args = build_parser().parse_args(["launch", "--output_dir", str(tmp_path), "--max_parallel",
                                      "3", "--threads_per_job", "2", "--jobs_per_gpu", "4",
                                      "--no_in_process"])
    assert get_launcher("local").options_from_args(args) == {
        "max_parallel": 3, "threads_per_job": 2, "in_process": False}
    assert get_launcher("multi_gpu").options_from_args(args) == {
        "jobs_per_gpu": 4, "threads_per_job": 2}
    args = build_parser().parse_args(["launch", "--output_dir", "x", "--in_process"])
    assert get_launcher("local").options_from_args(args) == {"in_process": True}


_LAUNCHER_SCRIPT = """
import sys
from domainbed.command_launchers import REGISTRY, Task
pids = sys.argv[1]
job = ("import os, sys, time; open(os.path.join(sys.argv[1], str(os.getpid())), 'w').close(); "
       "time.sleep(120)")
tasks = [Task([sys.executable, "-c", job, pids]) for _ in range(3)]
REGISTRY.get("local")(tasks, max_parallel=2, tty=False)
"""


def _default_sigint():
    """In the child, before exec: Ctrl-C's default action, even when this test runs from a
    shell that started it in the background (which ignores SIGINT, and Python then installs
    no KeyboardInterrupt handler)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_ctrl_c_kills_the_running_children(tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    launcher = subprocess.Popen([sys.executable, "-c", _LAUNCHER_SCRIPT, str(pids)], env=env,
                                stderr=subprocess.PIPE, text=True,
                                preexec_fn=_default_sigint)
    try:
        deadline = time.time() + 60
        while len(os.listdir(pids)) < 2 and time.time() < deadline:
            time.sleep(0.05)
        children = [int(p) for p in os.listdir(pids)]
        assert len(children) == 2, launcher.stderr.read() if launcher.poll() else children
        launcher.send_signal(signal.SIGINT)  # the launcher only, as a terminal's Ctrl-C would
        _, err = launcher.communicate(timeout=30)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode != 0 and "KeyboardInterrupt" in err
    assert "killed 2 running jobs" in err
    for pid in children:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert len(os.listdir(pids)) == 2  # the third job never started


# ----------------------------------------------------------------------- in-process runs

def test_a_task_without_a_call_runs_as_a_subprocess_even_with_our_command(tmp_path):
    """A command is only a rendering: without a typed call the job is a subprocess, and
    the launcher never reads its command line to decide."""
    run = tmp_path / "run"
    task = Task([sys.executable, "-m", "domainbed.scripts.train", "--dataset", "Debug28",
                 "--no_such_flag"], str(run))
    codes = REGISTRY.get("local")([task], in_process=True, max_parallel=1, tty=False)
    assert codes == [2]
    assert "in-process" not in (run / LAUNCHER_LOG).read_text().splitlines()[0]


def test_a_sweep_job_carries_its_typed_call_and_its_rendering(tmp_path):
    from domainbed.sweep.jobs import Job
    from domainbed.training.config import TrainConfig
    from domainbed.training.job import run_job
    job = Job({"dataset": "Debug28", "algorithm": "ERM", "test_envs": [0, 1],
               "hparams": {"lr": 0.1}, "data_dir": str(tmp_path)}, str(tmp_path / "sweep"))
    call = job.call
    assert call.func is run_job
    (config,) = call.args
    assert config == TrainConfig.from_train_args(job.train_args)
    assert config.test_envs == [0, 1] and config.hparams == '{"lr": 0.1}'
    assert config.output_dir == job.output_dir
    # the same job with another program as its command has no call
    other = Job(dict(job.train_args), str(tmp_path / "sweep"), train_command=["my_train"])
    assert other.call is None and other.command[0] == "my_train"


TINY = '{"backbone": "tiny_cnn", "batch_size": 8}'  # fast runs: what matters is the launcher


def _train_task(data, out, *extra):
    """A training task whose call is the command line's own entry point (what a test of
    the launcher may use; sweeps give ``run_job(config)``)."""
    from domainbed.scripts import train
    argv = ["--dataset", "Debug28", "--data_dir", str(data), "--steps", "5",
            "--checkpoint_freq", "2", "--seed", "3", "--hparams_seed", "1", "--output_dir",
            str(out), "--hparams", TINY, *extra]
    command = [sys.executable, "-m", "domainbed.scripts.train", *argv]
    return Task(command, str(out), os.path.basename(str(out)),
                functools.partial(train.main, argv))


def _process_state():
    logger = logging.getLogger("domainbed")
    return {"cwd": os.getcwd(), "environ": dict(os.environ), "threads": torch.get_num_threads(),
            "torch_rng": torch.random.get_rng_state().tolist(), "py_rng": random.getstate(),
            "np_rng": np.random.get_state()[1].tolist(),
            "cudnn": (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark),
            "logging": (list(logger.handlers), logger.propagate, logger.level,
                        list(logging.getLogger().handlers)),
            "grad": torch.is_grad_enabled()}


def test_isolated_frees_what_the_run_left_in_cycles_and_leaves_nothing_frozen():
    import gc
    import weakref

    class Node:
        pass
    kept = Node()  # made before the run: frozen during it, collected normally after
    kept.me = kept
    kept_ref = weakref.ref(kept)
    with in_process.isolated():
        assert gc.get_freeze_count() > 0
        made = Node()
        made.me, made.other = made, kept  # a cycle of the run's, pointing at an old object
        made_ref = weakref.ref(made)
        del made
        logging.getLogger("domainbed.tests.new").setLevel(logging.DEBUG)
    assert made_ref() is None  # freed by the collection that ends the run
    assert gc.get_freeze_count() == 0
    assert logging.getLogger("domainbed.tests.new").level == logging.NOTSET
    del kept
    gc.collect()
    assert kept_ref() is None


@pytest.mark.slow
def test_in_process_run_equals_the_subprocess_run_and_puts_the_process_back(tmp_path,
                                                                           monkeypatch):
    monkeypatch.setenv("PYTHONPATH", REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    (tmp_path / "data").mkdir()
    local = REGISTRY.get("local")
    sub, inp = tmp_path / "sub", tmp_path / "inp"
    assert local([_train_task(tmp_path / "data", sub)], max_parallel=1, threads_per_job=1,
                 tty=False) == [0]
    torch.manual_seed(123)
    torch.set_num_threads(2)
    before = _process_state()
    assert local([_train_task(tmp_path / "data", inp)], in_process=True, threads_per_job=1,
                 tty=False) == [0]
    after = _process_state()
    for key in before:
        assert after[key] == before[key], key
    assert os.path.exists(inp / run_dir.DONE)
    assert _records(str(sub)) == _records(str(inp))
    from safetensors.torch import load_file
    a, b = load_file(str(sub / run_dir.MODEL)), load_file(str(inp / run_dir.MODEL))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    log_text = (inp / LAUNCHER_LOG).read_text()
    assert "in-process" in log_text.splitlines()[0] and "done: " in log_text
    assert (inp / run_dir.OUT).read_text() == "" or "HParams" in (inp / run_dir.OUT).read_text()


@pytest.mark.slow
def test_a_crashing_in_process_job_is_reported_and_the_next_one_runs(tmp_path, monkeypatch,
                                                                   caplog):
    from domainbed.algorithms import erm
    from domainbed.training import job
    (tmp_path / "data").mkdir()
    update = erm.ERM.update

    def crashing_update(self, minibatches, unlabeled=None):
        if self.hparams.get("lr") == 0.0123:
            raise RuntimeError("boom in the training loop")
        return update(self, minibatches, unlabeled)
    monkeypatch.setattr(erm.ERM, "update", crashing_update)
    setup = job.setup_logging

    def broken_setup(output_dir):
        if output_dir.endswith("escapes"):
            raise OSError("cannot open the log files")
        setup(output_dir)
    monkeypatch.setattr(job, "setup_logging", broken_setup)
    data = tmp_path / "data"
    tasks = [_train_task(data, tmp_path / "loop", "--hparams", '{"lr": 0.0123}'),
             _train_task(data, tmp_path / "escapes"),
             _train_task(data, tmp_path / "bad_flag", "--no_such_flag"),
             _train_task(data, tmp_path / "fine")]
    before = _process_state()
    with caplog.at_level(logging.INFO, logger="domainbed.command_launchers"):
        codes = REGISTRY.get("local")(tasks, in_process=True, max_parallel=1,
                                      threads_per_job=1, tty=False)
    assert codes == [1, 1, 2, 0]
    assert _process_state() == before
    loop = run_dir.read_failure(str(tmp_path / "loop"))
    assert loop["error"] == "RuntimeError: boom in the training loop"
    # an OS error is one line, no traceback; the launcher records it as the failure
    escapes = run_dir.read_failure(str(tmp_path / "escapes"))
    assert escapes["error"] == "error: OSError: cannot open the log files (exit status 1)"
    escapes_log = (tmp_path / "escapes" / LAUNCHER_LOG).read_text()
    assert "error: OSError: cannot open the log files" in escapes_log
    assert "Traceback" not in escapes_log
    assert "unrecognized arguments: --no_such_flag" in \
        (tmp_path / "bad_flag" / LAUNCHER_LOG).read_text()
    assert os.path.exists(tmp_path / "fine" / run_dir.DONE)
    assert run_dir.run_state(str(tmp_path / "loop")) == run_dir.FAILED_STATE
    lines = [r.getMessage() for r in caplog.records
             if r.getMessage().startswith("[") and " step " not in r.getMessage()]
    assert lines[0].startswith("[1/4] FAILED (exit 1; see ") and lines[3].startswith("[4/4] done")
    assert "local launcher: 3 of 4 jobs failed" in caplog.text


def test_ctrl_c_during_an_in_process_run_stops_the_launcher_and_restores_state(tmp_path,
                                                                             monkeypatch):
    def interrupted():
        os.chdir(tmp_path)
        os.environ["SET_BY_RUN"] = "1"
        torch.set_num_threads(1)
        logging.getLogger("domainbed").addHandler(logging.StreamHandler())
        raise KeyboardInterrupt
    before = _process_state()
    task = Task([sys.executable, "-m", "domainbed.scripts.train"], str(tmp_path / "run"),
                call=interrupted)
    with pytest.raises(KeyboardInterrupt):
        REGISTRY.get("local")([task, task], in_process=True, max_parallel=1, tty=False)
    assert _process_state() == before
    assert not os.path.exists(tmp_path / "run" / run_dir.FAILED)
