"""MNIST, read by RotatedMNIST and ColoredMNIST, through torchvision's downloader."""

import os

from domainbed.datasets.download.install import DownloadJob, write_marker
from domainbed.datasets.download.registry import register_download
from domainbed.datasets.mnist import MultipleEnvironmentMNIST, load_mnist
from domainbed.errors import DataError
from domainbed.lib.fetch import Source


@register_download("MNIST", "MNIST", serves=MultipleEnvironmentMNIST)
def prepare_mnist(job: DownloadJob) -> str:
    """MNIST through torchvision (its own mirrors and checksums) into ``data_dir/MNIST``."""
    from torchvision.datasets import MNIST
    for train in (True, False):
        try:
            MNIST(job.data_dir, train=train, download=True)
        except (OSError, RuntimeError) as exc:
            raise DataError(f"MNIST download failed ({exc}); run the command again") from exc
    load_mnist(job.data_dir)  # checks the files parse
    folder = os.path.join(job.data_dir, "MNIST")
    write_marker(folder, "MNIST", [Source("MNIST", urls=("torchvision",))])
    return folder
