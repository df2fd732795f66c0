"""In-process runs, several at once: persistent worker processes, one per slot, each of
which imports torch once and runs the typed calls of many jobs (``Task.call``).

A worker is a fresh interpreter (never a fork of a launcher that holds torch's threads)
started with the slot's environment (its share of the CPU threads, its GPU); it imports
torch, then runs each call it is sent with ``in_process.run_in_process``: the same
isolation per job as one-at-a-time in-process runs (see ``in_process``). A job without a
call runs as a subprocess in the slot, as with ``--no_in_process``. A worker that dies in a run
(``os._exit``, a crash of the interpreter, the kernel's OOM killer) is reported like a
subprocess that died the same way (one that exits 0 without answering: exit 1), and the
slot's next job gets a fresh worker. Workers
ignore SIGINT: on Ctrl-C the launcher kills them (the runs they held leave no ``failed``
file, as for killed subprocesses); a worker whose launcher has gone exits by itself.
"""

import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Sequence

from domainbed.command_launchers.core.base import Task
from domainbed.command_launchers.core.parallel import Slot, _Run, run_tasks

log = logging.getLogger(__name__)

PARENT_CHECK_SECONDS = 1.0  # how often a worker checks that its launcher is still alive
STOP_SECONDS = 10.0  # how long a worker may take to exit once it is told to


def _exit_with_parent(parent_pid: int) -> None:
    """End this worker when the launcher that started it is gone (killed without a chance
    to stop its workers)."""
    def watch() -> None:
        while True:
            time.sleep(PARENT_CHECK_SECONDS)
            if os.getppid() != parent_pid:
                os._exit(1)
    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _worker_main(conn: Any, parent_pid: int) -> None:
    """A worker's life: import torch once, then run each ``(command, output_dir, name,
    call, env_overrides, n_threads)`` it receives (``call``: the job's pickled typed call)
    and answer its exit status; ``None`` or a closed pipe ends it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent(parent_pid)
    import torch  # noqa: F401  imported once, before the first job
    from domainbed.command_launchers.core import in_process
    how = f"in-process (worker pid {os.getpid()})"
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        command, output_dir, name, call, env_overrides, n_threads = message
        task = Task(list(command), output_dir, name, call)
        try:
            code = in_process.run_in_process(task, env_overrides, n_threads, how=how)
        except KeyboardInterrupt:  # only from a run that raised it itself
            code = -int(signal.SIGINT)
        conn.send(int(code))


class Worker:
    """One worker process, started with the slot's environment (before it imports torch:
    thread pools and CUDA read it then), and the launcher's end of its pipe.

    The worker is ``python -m domainbed.command_launchers.core.workers FD PID``, not a
    ``multiprocessing`` child: that would import the launcher's main module again, which a
    script that calls the launcher without a ``__main__`` guard cannot survive."""

    def __init__(self, env: Dict[str, str]):
        self.conn, child = multiprocessing.Pipe()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", __name__, str(child.fileno()), str(os.getpid())],
                env=dict(os.environ, **env), stdin=subprocess.DEVNULL,
                pass_fds=(child.fileno(),))
        except BaseException:
            self.conn.close()
            raise
        finally:
            child.close()
        self.pid = self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def submit(self, task: Task, env_overrides: Optional[Dict[str, str]],
               n_threads: Optional[int]) -> None:
        self.conn.send((list(task.command), task.output_dir, task.name, task.call,
                        env_overrides, n_threads))

    def result(self) -> int:
        """The exit status of the job submitted last: the worker's answer, or, when the
        worker died, its own exit status (negative: the signal that killed it)."""
        try:
            return int(self.conn.recv())
        except (EOFError, OSError):
            code = self.proc.wait()
            return code if code else 1  # a worker that exits 0 mid-job still failed it

    def stop(self) -> None:
        """Ask the worker to exit; kill it if it does not within STOP_SECONDS."""
        try:
            self.conn.send(None)
            self.proc.wait(STOP_SECONDS)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            pass
        self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.conn.close()


class _WorkerRun:
    """A job sent to a worker; a thread waits for its answer, as ``parallel._Run`` waits
    for a subprocess."""

    def __init__(self, index: int, task: Task, slot: Slot, wake: threading.Event,
                 worker: Worker, n_threads: Optional[int]):
        self.index = index
        self.task = task
        self.slot = slot
        self.worker = worker
        self.start = time.monotonic()
        self.code: Optional[int] = None
        worker.submit(task, slot.env or None, n_threads)
        self._waiter = threading.Thread(target=self._wait, args=(wake,), daemon=True)
        self._waiter.start()

    def _wait(self, wake: threading.Event) -> None:
        self.code = self.worker.result()
        wake.set()

    def close(self) -> None:
        """Nothing to release: the worker stays for the slot's next job."""

    def kill(self) -> None:
        self.worker.kill()


class WorkerPool:
    """One worker per slot, started at the slot's first training job; ``start`` is the
    ``starter`` of ``parallel.run_tasks``. Leaving the ``with`` block stops the workers
    (kills them when the block raised)."""

    def __init__(self, slots: Sequence[Slot], n_threads: Optional[int]):
        self.slots = list(slots)
        self.n_threads = n_threads
        self.workers: List[Optional[Worker]] = [None] * len(self.slots)

    def start(self, index: int, task: Task, slot_index: int, wake: threading.Event) -> Any:
        slot = self.slots[slot_index]
        if task.call is None:  # a command only: a subprocess, as one at a time
            return _Run(index, task, slot, wake)
        worker = self.workers[slot_index]
        if worker is None or not worker.alive():  # first job of the slot, or a dead worker
            if worker is not None:
                worker.kill()
            worker = self.workers[slot_index] = Worker(slot.env)
            log.debug("local launcher: worker %d started for slot %d", worker.pid, slot_index)
        return _WorkerRun(index, task, slot, wake, worker, self.n_threads)

    def close(self, kill: bool = False) -> None:
        for worker in self.workers:
            if worker is not None:
                worker.kill() if kill else worker.stop()
        self.workers = [None] * len(self.slots)

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(kill=exc_type is not None)


def run_in_workers(tasks: Sequence[Task], slots: Sequence[Slot], n_threads: Optional[int],
                   tty: Optional[bool] = None) -> List[int]:
    """Run every task on ``len(slots)`` workers at a time, in order as slots free up;
    returns the exit statuses in task order, with ``run_tasks``'s log lines and progress."""
    with WorkerPool(slots, n_threads) as pool:
        return run_tasks(tasks, slots, tty=tty, starter=pool.start)


if __name__ == "__main__":  # a worker: python -m domainbed.command_launchers.core.workers FD PID
    from multiprocessing.connection import Connection
    _worker_main(Connection(int(sys.argv[1])), int(sys.argv[2]))
