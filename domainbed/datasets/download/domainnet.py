"""DomainNet: six zip archives (one per domain) from the VisDA 2019 server, minus the
duplicate files listed by the dataset's maintainers."""

import logging
import os
import shutil
from typing import List, Tuple

from domainbed.datasets.download.files import drop_listed_files, read_file_list
from domainbed.datasets.download.install import DownloadJob, check_layout
from domainbed.datasets.download.registry import register_download
from domainbed.datasets.image_folder import DomainNet
from domainbed.lib.archives import extract_archive
from domainbed.lib.fetch import Source

log = logging.getLogger("domainbed.download")

DOMAINNET_URL = "http://csr.bu.edu/ftp/visda/2019/multi-source/"
DOMAINNET_DOMAINS: Tuple[str, ...] = tuple(DomainNet.environment_folders())
DOMAINNET_GROUNDTRUTH = ("clipart", "painting")  # these two come from groundtruth/

# DomainNet's duplicate files (9,431 paths relative to domain_net/, a fact list from the
# dataset's maintainers), shipped with the package and removed by default
DOMAINNET_DUPLICATES_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data",
                                         "domain_net_duplicates.txt")


def shipped_domainnet_duplicates() -> Tuple[str, ...]:
    """The shipped DomainNet duplicate list (paths relative to ``domain_net/``)."""
    return tuple(read_file_list(DOMAINNET_DUPLICATES_FILE, strip_prefix="domain_net/"))


def domainnet_sources() -> List[Source]:
    return [Source(f"domainnet_{d}.zip", urls=(
        DOMAINNET_URL + ("groundtruth/" if d in DOMAINNET_GROUNDTRUTH else "") + f"{d}.zip",))
        for d in DOMAINNET_DOMAINS]


@register_download("DomainNet", DomainNet.SUBDIR)
def prepare_domainnet(job: DownloadJob) -> str:
    sources = domainnet_sources()
    archives = [job.fetch(s) for s in sources]
    staging = job.staging(DomainNet.SUBDIR)
    folder = os.path.join(staging, DomainNet.SUBDIR)
    for archive in archives:
        extract_archive(archive, folder)
    check_layout(folder, "DomainNet")
    duplicates = shipped_domainnet_duplicates() if job.duplicates is None else job.duplicates
    if duplicates:
        removed = drop_listed_files(folder, duplicates)
        log.info("DomainNet: removed %d of %d listed duplicate files", removed, len(duplicates))
    else:
        log.warning("DomainNet: duplicate files are kept (--keep_domainnet_duplicates)")
    target = job.install(folder, DomainNet.SUBDIR, "DomainNet", sources, archives)
    shutil.rmtree(staging, ignore_errors=True)
    return target
