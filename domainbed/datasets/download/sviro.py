"""SVIRO: DomainBed's ``SVIRO_DOMAINBED`` archive from the DFKI server."""

from domainbed.datasets.download.install import DownloadJob, install_archive
from domainbed.datasets.download.registry import register_download
from domainbed.datasets.sviro import SVIRO
from domainbed.lib.fetch import Source

SVIRO_URL = "https://sviro.kl.dfki.de/?wpdmdl=1731"


@register_download("SVIRO", SVIRO.SUBDIR)
def prepare_sviro(job: DownloadJob) -> str:
    source = Source("sviro_grayscale_rectangle_classification.zip", urls=(SVIRO_URL,))
    return install_archive(job, "SVIRO", SVIRO.SUBDIR, source, "SVIRO_DOMAINBED")
