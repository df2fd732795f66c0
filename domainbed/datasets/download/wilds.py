"""The WILDS datasets: the codalab bundles that wilds' own downloader fetches, installed in
wilds' layout (``<name>_v<version>/`` with its release marker)."""

import logging
import os
import shutil
from typing import Dict, Tuple

from domainbed.datasets.download.install import DownloadJob
from domainbed.datasets.download.registry import register_download
from domainbed.datasets.wilds import WILDSCamelyon, WILDSFMoW, WILDSiWildCam, WILDSRxRx1
from domainbed.errors import DataError
from domainbed.lib.archives import extract_archive
from domainbed.lib.atomic import atomic_write_text
from domainbed.lib.fetch import Source

log = logging.getLogger("domainbed.download")

CODALAB_URL = "https://worksheets.codalab.org/rest/bundles/{bundle}/contents/blob/"
# dataset class -> (codalab bundle, size in bytes as wilds lists it; informative only)
CODALAB_BUNDLES: Dict[type, Tuple[str, int]] = {
    WILDSCamelyon: ("0xe45e15f39fb54e9d9e919556af67aabe", 10_658_709_504),
    WILDSFMoW: ("0xaec91eb7c9d548ebb15e1b5e60f966ab", 53_893_324_800),
    WILDSRxRx1: ("0x6b7a05a3056a434498f0bb1252eb8440", 7_413_123_845),
    WILDSiWildCam: ("0x6313da2b204647e79a14b468131fcd64", 11_957_420_032),
}
# dataset -> (folder, version, bundle, size), the folder and version from the class
WILDS_BUNDLES: Dict[str, Tuple[str, str, str, int]] = {
    cls.__name__: (cls.FOLDER, cls.VERSION, bundle, size)
    for cls, (bundle, size) in CODALAB_BUNDLES.items()}


def wilds_source(dataset: str) -> Source:
    folder, _, bundle, _ = WILDS_BUNDLES[dataset]
    return Source(f"{folder}.tar.gz", urls=(CODALAB_URL.format(bundle=bundle),))


def _metadata_folder(staging: str, folder: str, metadata: str) -> str:
    """The extracted folder holding ``metadata``: the archive's top or ``folder`` in it."""
    for candidate in (staging, os.path.join(staging, folder)):
        if os.path.isfile(os.path.join(candidate, metadata)):
            return candidate
    raise DataError(f"the archive has no {metadata} at its top or in {folder}/ "
                    f"(found {sorted(os.listdir(staging))})")


def _into_folder(staging: str, folder: str) -> str:
    """Move the archive's contents (extracted at ``staging``'s top) into ``staging/folder``."""
    inner = os.path.join(staging, folder)
    os.makedirs(inner)
    for name in os.listdir(staging):
        if name != folder:
            os.replace(os.path.join(staging, name), os.path.join(inner, name))
    return inner


def prepare_wilds(job: DownloadJob, dataset: str) -> str:
    """A WILDS dataset into ``data_dir/<name>_v<version>/`` (wilds' own layout and release
    marker, so the wilds package accepts the folder too); its metadata is checked."""
    from domainbed.datasets import get_dataset_class
    folder, version, _, size = WILDS_BUNDLES[dataset]
    source = wilds_source(dataset)
    log.info("%s: about %.1f GB from codalab", dataset, size / 1e9)
    archive = job.fetch(source)
    staging = job.staging(folder)
    extract_archive(archive, staging)
    cls = get_dataset_class(dataset)
    found = _metadata_folder(staging, folder, cls.METADATA)
    cls.cached_examples(found)  # the metadata parse (DataError if not)
    marker = os.path.join(found, f"RELEASE_v{version}.txt")
    if not os.path.exists(marker):
        atomic_write_text(marker, f"{dataset} v{version}\n")
    if found == staging:  # the archive held the folder's contents
        found = _into_folder(staging, folder)
    target = job.install(found, folder, dataset, [source], [archive])
    shutil.rmtree(staging, ignore_errors=True)
    return target


def _register(dataset: str, folder: str) -> None:
    @register_download(dataset, folder)
    def prepare(job: DownloadJob) -> str:
        return prepare_wilds(job, dataset)


for _dataset, (_folder, *_) in WILDS_BUNDLES.items():
    _register(_dataset, _folder)
