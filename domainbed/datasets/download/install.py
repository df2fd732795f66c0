"""Where one dataset is downloaded, staged and installed, and the completion marker.

A dataset is fetched into ``data_dir/downloads/``, extracted into a staging folder
``data_dir/.<subdir>.partial``, checked, marked complete and moved to ``data_dir/<subdir>``.
"""

import json
import os
import shutil
from datetime import datetime, timezone
from typing import Optional, Sequence

from domainbed.errors import DataError
from domainbed.lib.archives import extract_archive
from domainbed.lib.atomic import atomic_write_text
from domainbed.lib.fetch import Fetcher, Source

MARKER = ".domainbed_download.json"


class DownloadJob:
    """Where one dataset is downloaded, staged and installed inside ``data_dir``.

    ``duplicates``: DomainNet files to drop (None: the shipped list; empty: keep them)."""

    def __init__(self, data_dir: str, fetcher: Fetcher, keep_archives: bool = False,
                 duplicates: Optional[Sequence[str]] = None):
        self.data_dir = data_dir
        self.fetcher = fetcher
        self.keep_archives = keep_archives
        self.duplicates = None if duplicates is None else tuple(duplicates)
        self.downloads = os.path.join(data_dir, "downloads")

    def fetch(self, source: Source) -> str:
        return self.fetcher.fetch_source(source, self.downloads)

    def staging(self, name: str) -> str:
        """A fresh staging folder (removing a previous run's leftovers)."""
        path = os.path.join(self.data_dir, f".{name}.partial")
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path)
        return path

    def install(self, folder: str, subdir: str, dataset: str, sources: Sequence[Source],
                archives: Sequence[str] = ()) -> str:
        """Mark ``folder`` complete and move it to ``data_dir/subdir``."""
        write_marker(folder, dataset, sources)
        target = os.path.join(self.data_dir, subdir)
        os.replace(folder, target)
        if not self.keep_archives:
            for archive in archives:
                os.remove(archive)
        return target


def write_marker(folder: str, dataset: str, sources: Sequence[Source]) -> None:
    record = {"dataset": dataset,
              "sources": [s.gdrive_id and f"gdrive:{s.gdrive_id}" or s.urls[0] for s in sources],
              "completed": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    atomic_write_text(os.path.join(folder, MARKER), json.dumps(record, indent=1) + "\n")


def find_folder(root: str, name: str) -> str:
    """``root/name`` or ``root/<one folder>/name``."""
    for candidate in [os.path.join(root, name)] + [
            os.path.join(root, d, name) for d in sorted(os.listdir(root))]:
        if os.path.isdir(candidate):
            return candidate
    raise DataError(f"the archive has no folder {name!r} (found {sorted(os.listdir(root))})")


def check_layout(folder: str, dataset: str) -> None:
    """``folder`` holds the domain folder of each environment of the dataset class."""
    from domainbed.datasets import get_dataset_class
    environments = get_dataset_class(dataset).environment_folders()  # folder names
    missing = [e for e in environments if not os.path.isdir(os.path.join(folder, e))]
    if missing:
        raise DataError(f"{dataset}: the downloaded data lack the domain folder(s) {missing} "
                        f"(found {sorted(os.listdir(folder))})")


def install_archive(job: DownloadJob, dataset: str, subdir: str, source: Source,
                    inner: str) -> str:
    """One archive whose folder ``inner`` holds the dataset's domain folders."""
    archive = job.fetch(source)
    staging = job.staging(subdir)
    extract_archive(archive, staging)
    folder = find_folder(staging, inner)
    check_layout(folder, dataset)
    target = job.install(folder, subdir, dataset, [source], [archive])
    shutil.rmtree(staging, ignore_errors=True)
    return target
