"""What every command line does with an error: one line per problem, never a traceback.

- bad input (``ValidationError``): one line per problem, exit status 2, nothing written;
- another ``DomainBedError``: its one line;
- ``OSError`` (a folder that is a file, not writable, a full disk): one line naming the path
  and what to do;
- Ctrl-C: one line, exit status 130 (``exit_on_interrupt``, around ``main`` when the module
  runs as a script: ``main`` itself lets ``KeyboardInterrupt`` through, so that the
  in-process launcher stops on it).
"""

import errno
import sys
from typing import Callable, List, Optional

INTERRUPTED = 130  # the shell's status of a command stopped by SIGINT


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


def exit_on_interrupt(main: Callable[[], Optional[int]],
                      message: Optional[str] = "interrupted (Ctrl-C)") -> int:
    """``main()``'s exit status; on Ctrl-C one line (``message``; None: ``main`` said it
    already) and 130 instead of a traceback."""
    try:
        return int(main() or 0)
    except KeyboardInterrupt:
        try:
            if message:
                print(message, file=sys.stderr)
            sys.stderr.flush()
        except (OSError, ValueError, AttributeError):
            pass
        return INTERRUPTED
