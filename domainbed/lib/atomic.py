"""Atomic file writes, torch-free (commands that only read records use them too).

A file is written to ``.tmp-<name><random>`` beside its target, then renamed over it, so
readers see the old or the new file, never a part. The new file gets the permissions a plain
``open`` would give it (the umask's, or the mode of the file it replaces), not the 0600 of
``mkstemp``: a sweep on a shared disk stays readable by the lab. A write killed before its
rename leaves its temporary file; ``remove_stale_temporaries`` removes those of a folder that
no other process writes (a run directory under its lock).
"""

import logging
import os
import stat
import tempfile
from typing import List

TMP_PREFIX = ".tmp-"

log = logging.getLogger(__name__)


def current_umask() -> int:
    """The process's umask, read without changing it where Linux allows (``/proc``)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # no /proc: read it by setting it, and put it back at once
    os.umask(mask)
    return mask


def _mode_for(path: str) -> int:
    """What ``open(path, "w")`` would leave: the mode of the file it replaces, else
    0666 minus the umask."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~current_umask()


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never a part."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=TMP_PREFIX + os.path.basename(path))
    try:
        os.fchmod(fd, _mode_for(path))
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str, text: str) -> None:
    """``atomic_write_bytes`` of ``text`` in UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))


def remove_stale_temporaries(folder: str) -> List[str]:
    """Remove the ``.tmp-*`` files that killed writes left in ``folder`` (not below it);
    call it only where no other process is writing (e.g. a run directory under its lock).
    Returns the names removed."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if entry.name.startswith(TMP_PREFIX) and entry.is_file(follow_symlinks=False):
            try:
                os.unlink(entry.path)
                removed.append(entry.name)
            except OSError as exc:
                log.warning("cannot remove the leftover %s: %s", entry.path, exc)
    if removed:
        log.info("removed %d leftover temporary files of killed writes in %s", len(removed),
                 folder)
    return removed
