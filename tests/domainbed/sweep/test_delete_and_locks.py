"""``delete_incomplete`` never deletes a lock it holds in place, so a run starting during a
deletion gets a directory and a lock of its own; and symlink loops count runs once."""

import fcntl
import os
import shutil

from domainbed.lib import run_dir
from domainbed.sweep import actions
from domainbed.sweep.jobs import make_jobs


def _incomplete_job(tmp_path):
    (job,) = make_jobs([{"dataset": "Debug28", "algorithm": "ERM", "test_envs": [0],
                         "hparams_seed": 0, "trial_seed": 0}], str(tmp_path / "sweep"))
    os.makedirs(job.output_dir)
    with open(os.path.join(job.output_dir, run_dir.RESULTS), "w") as f:
        f.write("{}\n")
    return job


def test_a_run_starting_while_its_directory_is_deleted_gets_its_own(tmp_path, monkeypatch):
    job = _incomplete_job(tmp_path)
    real_rmtree = shutil.rmtree
    started = []

    def rmtree_with_a_run_starting_midway(path, *args, **kwargs):
        # rmtree removes files first: the lock file goes, then a run starts in the job's
        # directory, then the rest of the tree goes
        os.unlink(os.path.join(path, run_dir.LOCK))
        lock = run_dir.RunLock(job.output_dir)
        assert lock.acquire()
        with open(os.path.join(job.output_dir, "out.txt"), "w") as f:
            f.write("a new run\n")
        started.append(lock)
        real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", rmtree_with_a_run_starting_midway)
    deleted = actions.delete_incomplete([job], skip_confirmation=True)
    assert deleted == [job]
    (lock,) = started
    try:
        # the new run's directory and lock survived the deletion, and its lock is real
        assert open(os.path.join(job.output_dir, "out.txt")).read() == "a new run\n"
        assert not os.path.exists(os.path.join(job.output_dir, run_dir.RESULTS))
        assert run_dir.is_running(job.output_dir)
    finally:
        lock.release()
    assert not [n for n in os.listdir(tmp_path / "sweep") if n.startswith(".deleting-")]


def test_a_lock_taken_on_a_directory_renamed_away_meanwhile_is_retaken(tmp_path, monkeypatch):
    out = tmp_path / "run"
    out.mkdir()
    real_flock = fcntl.flock
    renamed = []

    def flock_after_a_deletion_renamed_the_directory(fd, op):
        if not renamed and op & fcntl.LOCK_EX:
            os.rename(out, tmp_path / ".deleting-run")  # delete_incomplete, mid-way
            renamed.append(True)
        return real_flock(fd, op)

    monkeypatch.setattr(fcntl, "flock", flock_after_a_deletion_renamed_the_directory)
    lock = run_dir.RunLock(str(out))
    assert lock.acquire()
    try:
        # the lock held is the one at the run's path, in a fresh directory
        assert os.path.samestat(os.fstat(lock._fd), os.stat(out / run_dir.LOCK))
        assert not run_dir.is_running(str(tmp_path / ".deleting-run"))
    finally:
        lock.release()


def test_a_symlink_loop_in_a_sweep_folder_counts_each_run_once(tmp_path):
    sweep = tmp_path / "sweep"
    for name in ("a", "b"):
        os.makedirs(sweep / name)
        (sweep / name / run_dir.DONE).write_text("done")
    os.symlink(sweep, sweep / "loop")          # the folder itself, again
    os.symlink(sweep / "a", sweep / "alias")   # one run under two names
    found = run_dir.find_run_dirs(str(sweep), max_depth=None)
    assert [os.path.basename(p) for p, _ in found] == ["a", "b"]
    assert len(run_dir.find_run_dirs(str(sweep))) == 2
