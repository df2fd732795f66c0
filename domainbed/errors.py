"""Errors that the command-line tools turn into a one-line message (no traceback), and the
functions that write those lines."""

import errno
import sys
from typing import List, Optional


class DomainBedError(Exception):
    """A user-facing error: its message names the bad value and the fix."""


class DataError(DomainBedError):
    """A dataset is missing, malformed or corrupt."""


class WeightFileError(DomainBedError):
    """A weight file is missing, unsafe, or does not fit the model."""


def one_line(exc: BaseException, last: bool = True) -> str:
    """The message of ``exc`` on one line: its last line by default (a data-loader worker's
    error arrives with the worker's traceback before it), else its first."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    return lines[-1] if last else lines[0]


def os_error_line(exc: OSError, resume_step: Optional[int] = None) -> str:
    """An ``OSError`` in one line: what failed on which path, and the way out."""
    where = exc.filename or ""
    if exc.filename2:
        where = f"{where} -> {exc.filename2}"
    what = exc.strerror or type(exc).__name__
    again = "run the same command again" + (
        f": it resumes from step {resume_step}" if resume_step is not None else "")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left on the device ({where or 'writing'}): free space and {again}"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{what}: {where}: give a path you can write to, or fix its permissions, and " \
               f"{again}"
    if exc.errno in (errno.ENOTDIR, errno.EEXIST):
        return f"{what}: {where}: a file stands where a folder is needed; move it or give " \
               "another path"
    if exc.errno == errno.ENOENT:
        return f"{what}: {where}"
    return f"{what}: {where}" if where else f"{type(exc).__name__}: {exc}"


def print_errors(prog: Optional[str], lines: List[str]) -> None:
    """Each line as ``<prog>: error: <line>`` on stderr (``error: <line>`` without prog)."""
    for line in lines:
        print(f"{prog + ': ' if prog else ''}error: {line}", file=sys.stderr)
