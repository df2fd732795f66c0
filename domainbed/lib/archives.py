"""Safe extraction of zip and tar(.gz) archives (members may not escape the destination)."""

import os
import tarfile
import zipfile
import zlib

from domainbed.errors import DataError


def is_inside(root: str, name: str) -> bool:
    """Whether ``root/name`` stays inside ``root`` (after resolving links and ``..``)."""
    root = os.path.realpath(root)
    return os.path.commonpath([root, os.path.realpath(os.path.join(root, name))]) == root


def extract_archive(path: str, dest: str) -> None:
    """Extract a zip or tar(.gz) into ``dest``; members escaping ``dest`` are refused.

    A corrupt archive is deleted and raises DataError (re-running downloads it again).
    """
    os.makedirs(dest, exist_ok=True)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                bad = [m for m in archive.namelist() if not is_inside(dest, m)]
                if bad:
                    raise DataError(f"{path}: unsafe member path {bad[0]!r}; not extracted")
                archive.extractall(dest)
        elif tarfile.is_tarfile(path):
            with tarfile.open(path) as archive:
                if hasattr(tarfile, "data_filter"):
                    archive.extractall(dest, filter="data")
                else:
                    members = archive.getmembers()
                    bad = [m.name for m in members if not is_inside(dest, m.name)
                           or m.issym() or m.islnk() or m.isdev()]
                    if bad:
                        raise DataError(f"{path}: unsafe member {bad[0]!r}; not extracted")
                    archive.extractall(dest, members=members)
        else:
            raise zipfile.BadZipFile("neither a zip nor a tar archive")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error) as exc:
        os.remove(path)
        raise DataError(f"archive {path} is corrupt ({exc}); deleted it, run the command "
                        f"again to download it again") from exc
