"""OS errors and Ctrl-C are one line, never a traceback: a full disk says how to resume, and
Ctrl-C exits with status 130."""

import errno
import json
import os
import signal
import subprocess
import sys
import time

from domainbed.lib import run_dir
from domainbed.scripts import train as train_script
from tests.fixtures.paths import REPO

FAST = json.dumps({"batch_size": 8, "backbone": "tiny_cnn"})


def _errors(capsys):
    captured = capsys.readouterr()
    return [l for l in (captured.out + captured.err).splitlines() if "error" in l.lower()]


def test_a_full_disk_is_one_line_that_says_the_run_resumes(tmp_path, capsys, monkeypatch):
    from domainbed.training import loop
    real_save = loop.save_checkpoint
    calls = []

    def save_until_the_disk_is_full(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", path)
        return real_save(path, *args, **kwargs)

    monkeypatch.setattr(loop, "save_checkpoint", save_until_the_disk_is_full)
    out = tmp_path / "run"
    argv = ["--dataset", "Debug28", "--steps", "6", "--checkpoint_freq", "2", "--output_dir",
            str(out), "--hparams", FAST]
    assert train_script.main(argv) == 1
    (error,) = _errors(capsys)
    assert error.startswith("error: no space left on the device (")
    assert error.endswith("free space and run the same command again: it resumes from step 1")
    assert "Traceback" not in (out / run_dir.OUT).read_text()
    monkeypatch.setattr(loop, "save_checkpoint", real_save)
    assert train_script.main(argv) == 0
    assert "resuming from step 1" in (out / run_dir.OUT).read_text()


def test_an_output_dir_that_is_a_file_is_one_line_and_nothing_is_written(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert train_script.main(["--dataset", "Debug28", "--output_dir", str(blocker / "run"),
                              "--hparams", FAST]) == 2
    (error,) = _errors(capsys)
    assert "is a file, not a folder" in error and str(blocker) in error
    assert blocker.read_text() == "not a folder"


def test_ctrl_c_is_one_line_and_exit_status_130(tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.Popen([sys.executable, "-m", "domainbed.scripts.train", "--dataset",
                             "Debug28", "--steps", "100000", "--checkpoint_freq", "5",
                             "--output_dir", str(out), "--hparams", FAST],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=str(tmp_path))
    deadline = time.time() + 120
    while not (out / run_dir.CHECKPOINT).exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "Traceback" not in stdout + stderr
    lines = [l for l in (stdout + stderr).splitlines() if "interrupted" in l]
    assert len(lines) == 1 and "run the same command again to resume from step" in lines[0]
    assert not (out / run_dir.FAILED).exists() and not (out / run_dir.DONE).exists()
