"""Download the benchmark datasets and lay them out as the dataset classes read them.

``download_datasets(data_dir, names)`` fetches each dataset into ``data_dir/downloads/``
(resumable, with retries: ``domainbed.lib.fetch``), extracts it into a staging folder,
checks and reorganises it, and moves it into place with a completion marker
(``install``). ``DOWNLOADS`` (``registry``) holds one entry per source module, registered
here in this order; folder names and domain lists come from the dataset classes.
"""

# importing a source module registers its downloads (the default download order)
from domainbed.datasets.download import mnist, gdrive_archives, domainnet  # noqa: F401
from domainbed.datasets.download import terra_incognita, sviro, spawrious, wilds  # noqa: F401
from domainbed.datasets.download.domainnet import shipped_domainnet_duplicates
from domainbed.datasets.download.files import drop_listed_files, read_file_list
from domainbed.datasets.download.install import MARKER, DownloadJob
from domainbed.datasets.download.registry import DOWNLOADS, aliases, register_download
from domainbed.datasets.download.run import download_datasets
from domainbed.datasets.download.terra_incognita import organize_terra_incognita

__all__ = ["DOWNLOADS", "DownloadJob", "MARKER", "aliases", "download_datasets",
           "drop_listed_files", "organize_terra_incognita", "read_file_list",
           "register_download", "shipped_domainnet_duplicates"]
