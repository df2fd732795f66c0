"""Spawrious: one archive holding every benchmark's images (``spawrious224/{0,1,...}``)."""

import os
import shutil
from typing import Tuple

from domainbed.datasets.download.install import DownloadJob, find_folder
from domainbed.datasets.download.registry import register_download
from domainbed.datasets.spawrious import SPAWRIOUS_DIR, SpawriousBenchmark
from domainbed.errors import DataError
from domainbed.lib.archives import extract_archive
from domainbed.lib.fetch import Source

SPAWRIOUS_URL = "https://www.dropbox.com/s/e40j553480h3f3s/spawrious224.tar.gz?dl=1"


def part_folders() -> Tuple[str, ...]:
    """The top folders that the Spawrious benchmarks read their images from ("0", "1")."""
    return tuple(sorted({folder for cls in SpawriousBenchmark.__subclasses__()
                         for environment in cls.parts() for part in environment
                         for folder, _, _ in part.values()}))


@register_download("Spawrious", SPAWRIOUS_DIR, serves=SpawriousBenchmark)
def prepare_spawrious(job: DownloadJob) -> str:
    """Spawrious's entire dataset: ``spawrious224/{0,1,domain_adaptation_ds}/...``."""
    source = Source("spawrious224.tar.gz", urls=(SPAWRIOUS_URL,))
    archive = job.fetch(source)
    staging = job.staging(SPAWRIOUS_DIR)
    extract_archive(archive, staging)
    folder = find_folder(staging, SPAWRIOUS_DIR)
    missing = [c for c in part_folders() if not os.path.isdir(os.path.join(folder, c))]
    if missing:
        raise DataError(f"Spawrious: the archive lacks the folder(s) {missing} "
                        f"(found {sorted(os.listdir(folder))})")
    target = job.install(folder, SPAWRIOUS_DIR, "Spawrious", [source], [archive])
    shutil.rmtree(staging, ignore_errors=True)
    return target
