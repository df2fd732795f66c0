"""Run a job's typed call inside the launcher's process.

A job that carries a call (``Task.call``: a sweep's training job carries
``domainbed.training.job.run_job(config)``) can run here instead of as its command line's
subprocess, so that N short runs pay the import of torch once instead of N times. What a
run changes in the process is put back afterwards (see ``isolated``): logging handlers,
torch threads, every RNG, cuDNN and matmul flags, grad mode, the default dtype, the working
directory, the environment, ``sys.argv``, warning filters, signal handlers, stdout /
stderr. A run that raises is reported like a failed subprocess (exit status 1, ``failed``
in its run directory); the next job still runs. What no in-process run can be isolated
from: ``os._exit``, a crash of the interpreter itself, and ``mem_gb`` in results.jsonl,
which is the launcher process's peak memory so far.
"""

import contextlib
import gc
import io
import json
import logging
import os
import random
import signal
import sys
import threading
import traceback
import warnings
from typing import Dict, Iterator, Optional

from domainbed.command_launchers.core.base import Task
from domainbed.command_launchers.core.process import open_launcher_log
from domainbed.lib import run_dir

log = logging.getLogger(__name__)

_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGUSR1", "SIGUSR2",
                                                    "SIGHUP") if hasattr(signal, name))


# ------------------------------------------------------------------ process-wide state

def _logging_state() -> Dict[str, tuple]:
    """Level, propagation, handlers and ``disabled`` of the root logger and every named one."""
    loggers = {"": logging.getLogger()}
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger):
            loggers[name] = logger
    return {name: (logger.level, logger.propagate, list(logger.handlers), logger.disabled)
            for name, logger in loggers.items()}


def _restore_logging(saved: Dict[str, tuple]) -> None:
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if not isinstance(logger, logging.Logger):
            continue
        before = saved.get(name)
        kept = before[2] if before else []
        for handler in list(logger.handlers):
            if handler not in kept:  # added by the run (its out.txt / err.txt files)
                logger.removeHandler(handler)
                handler.close()
        if before is None:  # a logger the run created: leave it quiet and propagating
            if logger.level != logging.NOTSET:
                logger.setLevel(logging.NOTSET)
            logger.propagate = True
            logger.disabled = False
            continue
        level, propagate, handlers, disabled = before
        if logger.level != level:  # setLevel clears every logger's cache: only on change
            logger.setLevel(level)
        logger.propagate = propagate
        logger.disabled = disabled
        for handler in handlers:
            if handler not in logger.handlers:
                logger.addHandler(handler)
    root = logging.getLogger()
    level, _, handlers, _ = saved[""]
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)


def _torch_state(torch) -> dict:
    state = {
        "threads": torch.get_num_threads(),
        "rng": torch.random.get_rng_state(),
        "grad": torch.is_grad_enabled(),
        "dtype": torch.get_default_dtype(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "deterministic_warn": torch.is_deterministic_algorithms_warn_only_enabled(),
        "matmul_precision": torch.get_float32_matmul_precision(),
        "cudnn": {k: getattr(torch.backends.cudnn, k)
                  for k in ("enabled", "benchmark", "deterministic", "allow_tf32")},
        "cuda_matmul_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cuda_rng": None,
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    return state


def _restore_torch(torch, state: dict) -> None:
    torch.set_num_threads(state["threads"])
    torch.random.set_rng_state(state["rng"])
    torch.set_grad_enabled(state["grad"])
    torch.set_default_dtype(state["dtype"])
    torch.use_deterministic_algorithms(state["deterministic"],
                                       warn_only=state["deterministic_warn"])
    torch.set_float32_matmul_precision(state["matmul_precision"])
    for key, value in state["cudnn"].items():
        setattr(torch.backends.cudnn, key, value)
    torch.backends.cuda.matmul.allow_tf32 = state["cuda_matmul_tf32"]
    if state["cuda_rng"] is not None:
        torch.cuda.set_rng_state_all(state["cuda_rng"])


def _restore_environ(saved: Dict[str, str]) -> None:
    for key in list(os.environ):
        if key not in saved:
            del os.environ[key]
    for key, value in saved.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


@contextlib.contextmanager
def isolated(env_overrides: Optional[Dict[str, str]] = None,
             n_threads: Optional[int] = None) -> Iterator[None]:
    """Run the body with ``env_overrides`` in ``os.environ`` and ``n_threads`` torch threads
    (None: unchanged), then put back every piece of process state listed in this module's
    docstring, whether the body returned or raised."""
    import numpy as np
    import torch

    cwd = os.getcwd()
    environ = dict(os.environ)
    argv = list(sys.argv)
    logging_state = _logging_state()
    py_rng = random.getstate()
    np_rng = np.random.get_state()
    torch_state = _torch_state(torch)
    in_main_thread = threading.current_thread() is threading.main_thread()
    handlers = {s: signal.getsignal(s) for s in _SIGNALS} if in_main_thread else {}
    # what exists before the run (torch's and the launcher's objects: hundreds of
    # thousands) stays out of the run's garbage collections, the one below included
    # (0.1 s each otherwise); unfrozen afterwards, so a later full collection sees it again
    gc.freeze()
    try:
        with warnings.catch_warnings():
            os.environ.update(env_overrides or {})
            if n_threads:
                torch.set_num_threads(int(n_threads))
            yield
    finally:
        os.chdir(cwd)
        sys.argv[:] = argv
        _restore_logging(logging_state)
        random.setstate(py_rng)
        np.random.set_state(np_rng)
        _restore_torch(torch, torch_state)
        for sig, handler in handlers.items():
            if signal.getsignal(sig) is not handler and handler is not None:
                signal.signal(sig, handler)
        gc.collect()  # the run's model and data loaders, before the next run allocates
        gc.unfreeze()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.empty_cache()
        # last: restoring torch's flags may import modules that set variables of their own
        _restore_environ(environ)


def _write_failure(output_dir: Optional[str], text: str, exc: BaseException) -> None:
    """The run's ``failed`` file, unless the run wrote its own."""
    if not output_dir:
        return
    path = os.path.join(output_dir, run_dir.FAILED)
    if os.path.exists(path):
        return
    from domainbed.errors import one_line
    from domainbed.lib.misc import atomic_write_text
    os.makedirs(output_dir, exist_ok=True)
    atomic_write_text(path, json.dumps({"error": f"{type(exc).__name__}: {one_line(exc)}",
                                        "traceback": text}, indent=2))


def run_in_process(task: Task, env_overrides: Optional[Dict[str, str]] = None,
                   n_threads: Optional[int] = None, how: str = "in-process") -> int:
    """Run ``task.call()`` here; returns its exit status as the subprocess would have had
    it (0 done, 2 bad input, 1 crash).

    Its stdout and stderr are appended to ``<output_dir>/launcher.log`` (as for a
    subprocess), after a header line that ends with ``how``. An exception that escapes
    the call is written to the run's ``failed`` file and to launcher.log, and gives 1;
    ``KeyboardInterrupt`` is raised again (the launcher stops), after the process state has
    been put back.
    """
    out = open_launcher_log(task, env_overrides, how=how) if task.output_dir else None
    stream = io.TextIOWrapper(out, encoding="utf-8", line_buffering=True) if out else None
    try:
        with isolated(env_overrides, n_threads):
            redirect = (contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream)) \
                if stream else ()
            with contextlib.ExitStack() as stack:
                for r in redirect:
                    stack.enter_context(r)
                try:
                    return int(task.call() or 0)
                except SystemExit as exc:  # sys.exit in the run
                    code = exc.code
                    if code is None:
                        return 0
                    if isinstance(code, int):
                        return code
                    print(code, file=sys.stderr)
                    return 1
                except KeyboardInterrupt:
                    raise
                except BaseException as exc:
                    text = traceback.format_exc()
                    print(text, file=sys.stderr, end="")
                    _write_failure(task.output_dir, text, exc)
                    return 1
    finally:
        if stream is not None:
            try:
                stream.close()  # closes ``out`` too
            except ValueError:
                pass
