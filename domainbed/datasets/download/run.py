"""Download and install several datasets, skipping those already in place."""

import logging
import os
from typing import Dict, Optional, Sequence

from domainbed.datasets.download.install import MARKER, DownloadJob
from domainbed.datasets.download.registry import DOWNLOADS, resolve
from domainbed.errors import DomainBedError
from domainbed.lib.fetch import Fetcher

log = logging.getLogger("domainbed.download")


def download_datasets(data_dir: str, datasets: Optional[Sequence[str]] = None,
                      fetcher: Optional[Fetcher] = None, keep_archives: bool = False,
                      duplicates: Optional[Sequence[str]] = None) -> Dict[str, str]:
    """Download and install ``datasets`` (default: all) under ``data_dir``.

    Returns ``name -> "done" | "skipped" | error message``; one failure does not stop the
    others. A dataset whose folder exists is skipped (with its marker: finished here;
    without: someone else's copy, left untouched). ``duplicates``: DomainNet files to drop
    (None: the shipped list).
    """
    names = resolve(datasets or DOWNLOADS.names())
    for name in names:
        DOWNLOADS.get(name)  # unknown names fail before any download
    os.makedirs(data_dir, exist_ok=True)
    job = DownloadJob(data_dir, fetcher or Fetcher(), keep_archives, duplicates)
    outcome = {}
    for name in names:
        spec = DOWNLOADS.get(name)
        target = os.path.join(data_dir, spec.subdir)
        if os.path.exists(os.path.join(target, MARKER)):
            log.info("%s: already downloaded in %s", name, target)
            outcome[name] = "skipped"
            continue
        if os.path.isdir(target) and name != "MNIST":
            log.warning("%s: %s exists but was not written by this command; leaving it "
                        "untouched (delete it to download again)", name, target)
            outcome[name] = "skipped"
            continue
        log.info("%s: downloading into %s", name, target)
        try:
            spec.prepare(job)
        except DomainBedError as exc:
            log.error("%s: %s", name, exc)
            outcome[name] = str(exc)
            continue
        log.info("%s: done", name)
        outcome[name] = "done"
    return outcome
