"""Which submitted jobs are still queued: asked through the launcher interface."""

from types import SimpleNamespace

from domainbed import command_launchers
from domainbed.command_launchers import REGISTRY, Launcher, queued_job_ids
from domainbed.command_launchers import slurm as slurm_module
from domainbed.lib import run_dir
from domainbed.sweep import actions


class QueueLauncher(Launcher):
    """A backend with a queue that holds fixed ids."""

    name = "test_queue"

    def __init__(self, held):
        self.held = held

    def launch(self, jobs, **options):
        return []

    def queued_job_ids(self):
        return self.held


def _submitted(tmp_path, name, job_id, state=run_dir.INCOMPLETE_STATE):
    folder = tmp_path / name
    folder.mkdir()
    run_dir.write_submission(str(folder), job_id)
    return SimpleNamespace(output_dir=str(folder), state=state, name=name)


def test_only_slurm_among_the_core_launchers_has_a_queue(monkeypatch):
    asked = []
    monkeypatch.setattr(slurm_module, "jobs_in_queue", lambda: asked.append(1) or {"5_0"})
    for name in ("local", "dummy", "multi_gpu"):
        assert REGISTRY.get(name).queued_job_ids() is None
    assert REGISTRY.get("slurm").queued_job_ids() == {"5_0"} and asked == [1]
    assert queued_job_ids() == {"5_0"}
    monkeypatch.setattr(slurm_module, "jobs_in_queue", lambda: None)  # squeue unavailable
    assert queued_job_ids() is None


def test_the_queues_of_every_registered_launcher_are_united(monkeypatch):
    monkeypatch.setattr(slurm_module, "jobs_in_queue", lambda: {"5_0"})
    monkeypatch.setitem(REGISTRY._items, "test_queue", QueueLauncher({"q1", "q2"}))
    monkeypatch.setitem(REGISTRY._items, "upstream_style", lambda commands: None)
    assert command_launchers.queued_job_ids() == {"5_0", "q1", "q2"}
    monkeypatch.setattr(slurm_module, "jobs_in_queue", lambda: None)
    assert command_launchers.queued_job_ids() == {"q1", "q2"}


def test_queued_dirs_asks_the_launchers_by_default(tmp_path, monkeypatch):
    held = _submitted(tmp_path, "held", "5_0")
    gone = _submitted(tmp_path, "gone", "5_1")
    elsewhere = _submitted(tmp_path, "elsewhere", "q1", state=run_dir.FAILED_STATE)
    done = _submitted(tmp_path, "done", "5_2", state=run_dir.DONE_STATE)
    jobs = [held, gone, elsewhere, done]
    monkeypatch.setattr(slurm_module, "jobs_in_queue", lambda: {"5_0", "5_2"})
    assert actions.queued_dirs(jobs) == {held.output_dir}
    monkeypatch.setitem(REGISTRY._items, "test_queue", QueueLauncher({"q1"}))
    assert actions.queued_dirs(jobs) == {held.output_dir, elsewhere.output_dir}
    # an explicit in_queue still wins, and no queue readable means nothing is queued
    assert actions.queued_dirs(jobs, lambda: {"5_1"}) == {gone.output_dir}
    monkeypatch.setattr(slurm_module, "jobs_in_queue", lambda: None)
    monkeypatch.setitem(REGISTRY._items, "test_queue", QueueLauncher(None))
    assert actions.queued_dirs(jobs) == set()


def test_no_launcher_is_asked_when_nothing_was_submitted(tmp_path, monkeypatch):
    monkeypatch.setitem(REGISTRY._items, "test_queue", QueueLauncher({"x"}))
    monkeypatch.setattr(slurm_module, "jobs_in_queue", lambda: (_ for _ in ()).throw(
        AssertionError("squeue must not be called")))
    fresh = SimpleNamespace(output_dir=str(tmp_path / "fresh"),
                            state=run_dir.NOT_LAUNCHED_STATE, name="fresh")
    assert actions.queued_dirs([fresh]) == set()
