"""Lists of files (one path a line) and removing the listed files from a folder."""

import os
from typing import Iterable, List

from domainbed.errors import DataError
from domainbed.lib.archives import is_inside


def read_file_list(path: str, strip_prefix: str = "") -> List[str]:
    """Paths listed one per line in ``path`` (blank lines and ``#`` comments skipped)."""
    entries = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if strip_prefix and line.startswith(strip_prefix):
                line = line[len(strip_prefix):]
            entries.append(line)
    return entries


def drop_listed_files(root: str, relpaths: Iterable[str]) -> int:
    """Delete the files ``relpaths`` (relative to ``root``); returns how many existed."""
    removed = 0
    for rel in relpaths:
        if not is_inside(root, rel):
            raise DataError(f"duplicate list entry {rel!r} points outside {root}")
        path = os.path.join(root, rel)
        if os.path.isfile(path):
            os.remove(path)
            removed += 1
    return removed
