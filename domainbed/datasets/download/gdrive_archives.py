"""PACS, OfficeHome and VLCS: one Google Drive archive each, holding the domain folders.

No checksum is published for these files, so none is checked; a Source takes a sha256
where one becomes known.
"""

from typing import Dict, Tuple

from domainbed.datasets.download.install import DownloadJob, install_archive
from domainbed.datasets.download.registry import register_download
from domainbed.datasets.image_folder import VLCS, OfficeHome, PACS
from domainbed.lib.fetch import Source


def gdrive(filename: str, file_id: str) -> Source:
    return Source(filename, gdrive_id=file_id)


PACS_SOURCE = gdrive("PACS.zip", "1JFr8f805nMUelQWWmfnJR3y4_SYoN5Pd")
OFFICE_HOME_SOURCE = gdrive("office_home.zip", "1uY0pj7oFsjMxRwaD3Sxy0jgel0fsYXLC")
VLCS_SOURCE = gdrive("VLCS.tar.gz", "1skwblH1_okBwxWxmRsp9_qi15hyPpxg8")

# dataset class -> its archive and the archive's folder that holds the domain folders
ARCHIVES: Dict[type, Tuple[Source, str]] = {
    PACS: (PACS_SOURCE, "kfold"),
    OfficeHome: (OFFICE_HOME_SOURCE, "OfficeHomeDataset_10072016"),
    VLCS: (VLCS_SOURCE, "VLCS"),
}


def _register(cls: type, source: Source, inner: str) -> None:
    name = cls.__name__

    @register_download(name, cls.SUBDIR)
    def prepare(job: DownloadJob) -> str:
        return install_archive(job, name, cls.SUBDIR, source, inner)


for _cls, (_source, _inner) in ARCHIVES.items():
    _register(_cls, _source, _inner)
