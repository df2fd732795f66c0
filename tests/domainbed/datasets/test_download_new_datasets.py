"""The download command for SVIRO, Spawrious and the WILDS datasets on a local fake server,
and DomainNet's shipped duplicate list."""

import os
import shutil

import pytest

from domainbed.datasets import download as downloads
from domainbed.datasets import get_dataset_class
from domainbed.datasets.download import domainnet as dl_domainnet
from domainbed.datasets.download import spawrious as dl_spawrious
from domainbed.datasets.download import sviro as dl_sviro
from domainbed.datasets.download import wilds as dl_wilds
from tests.fixtures import datasets_extra as fx
from tests.fixtures.data import make_image_folder_fixture
from tests.fixtures.http import run_main, zip_tree


def _serve(server, route, archive_path):
    server.routes[route] = open(archive_path, "rb").read()


def test_sviro(server, tmp_path, monkeypatch):
    envs = get_dataset_class("SVIRO").ENVIRONMENTS
    make_image_folder_fixture(str(tmp_path / "src"), "SVIRO_DOMAINBED", envs, ["adult", "empty"],
                              n_per_class=1)
    archive = zip_tree(tmp_path / "src", "SVIRO_DOMAINBED", tmp_path / "sviro")
    monkeypatch.setattr(dl_sviro, "SVIRO_URL", server.url + "/sviro?wpdmdl=1731")
    _serve(server, "/sviro", archive)
    data_dir = tmp_path / "data"
    assert run_main(data_dir, "SVIRO") == 0
    assert (data_dir / "sviro" / downloads.MARKER).exists()
    dataset = get_dataset_class("SVIRO")(str(data_dir), [0], {"image_size": 32})
    assert len(dataset) == 10 and dataset.num_classes == 2
    n_requests = len(server.requests)
    assert run_main(data_dir, "SVIRO") == 0 and len(server.requests) == n_requests


def test_spawrious_once_for_all_six_names(server, tmp_path, monkeypatch):
    fx.make_spawrious(str(tmp_path / "src"), n=1)
    archive = shutil.make_archive(str(tmp_path / "sp"), "gztar", root_dir=str(tmp_path / "src"),
                                  base_dir="spawrious224")
    monkeypatch.setattr(dl_spawrious, "SPAWRIOUS_URL", server.url + "/spawrious224.tar.gz?dl=1")
    _serve(server, "/spawrious224.tar.gz", archive)
    data_dir = tmp_path / "data"
    assert run_main(data_dir, "SpawriousO2O_easy", "SpawriousM2M_hard") == 0
    assert server.paths().count("/spawrious224.tar.gz") == 1
    assert (data_dir / "spawrious224" / downloads.MARKER).exists()
    monkeypatch.setattr(get_dataset_class("SpawriousM2M_hard"), "PER_BREED", 1)
    dataset = get_dataset_class("SpawriousM2M_hard")(str(data_dir), [0], {})
    assert [len(env) for env in dataset] == [8, 4, 4]


@pytest.mark.parametrize("name, nested", [("WILDSCamelyon", False), ("WILDSFMoW", True),
                                          ("WILDSRxRx1", False), ("WILDSiWildCam", True)])
def test_wilds_codalab_bundle(server, tmp_path, monkeypatch, name, nested):
    """The archive may hold the folder's contents (codalab's blob of a bundle) or the folder."""
    builder = {"WILDSCamelyon": fx.make_camelyon, "WILDSFMoW": fx.make_fmow,
               "WILDSRxRx1": fx.make_rxrx1, "WILDSiWildCam": fx.make_iwildcam}[name]
    folder = builder(str(tmp_path / "src"))
    release = [f for f in os.listdir(folder) if f.startswith("RELEASE")]
    for f in release:
        os.remove(os.path.join(folder, f))
    if nested:
        archive = shutil.make_archive(str(tmp_path / "b"), "gztar", root_dir=str(tmp_path / "src"),
                                      base_dir=os.path.basename(folder))
    else:
        archive = shutil.make_archive(str(tmp_path / "b"), "gztar", root_dir=folder)
    monkeypatch.setattr(dl_wilds, "CODALAB_URL", server.url + "/bundles/{bundle}/contents/blob/")
    bundle = dl_wilds.WILDS_BUNDLES[name][2]
    _serve(server, f"/bundles/{bundle}/contents/blob/", archive)
    server.faults[f"/bundles/{bundle}/contents/blob/"] = ["drop"]  # resumed after a cut
    data_dir = tmp_path / "data"
    assert run_main(data_dir, name) == 0
    target = data_dir / dl_wilds.WILDS_BUNDLES[name][0]
    version = dl_wilds.WILDS_BUNDLES[name][1]
    assert (target / downloads.MARKER).exists() and (target / f"RELEASE_v{version}.txt").exists()
    assert any(r and r.startswith("bytes=") for _, _, r in server.requests)  # a resume
    cls = get_dataset_class(name)
    reference = cls(str(tmp_path / "src"), [], {})
    dataset = cls(str(data_dir), [], {})
    assert [len(e) for e in dataset] == [len(e) for e in reference]
    assert dataset.ENVIRONMENTS == reference.ENVIRONMENTS


def test_wilds_archive_without_metadata_installs_nothing(server, tmp_path, monkeypatch):
    make_image_folder_fixture(str(tmp_path / "src"), "junk", ["a"], ["b"], n_per_class=1)
    archive = shutil.make_archive(str(tmp_path / "b"), "gztar", root_dir=str(tmp_path / "src"))
    monkeypatch.setattr(dl_wilds, "CODALAB_URL", server.url + "/bundles/{bundle}/contents/blob/")
    _serve(server, f"/bundles/{dl_wilds.WILDS_BUNDLES['WILDSRxRx1'][2]}/contents/blob/", archive)
    assert run_main(tmp_path / "data", "WILDSRxRx1") == 1
    assert not (tmp_path / "data" / "rxrx1_v1.0").exists()


def test_shipped_domainnet_duplicate_list():
    entries = downloads.shipped_domainnet_duplicates()
    assert len(entries) == 9431 and len(set(entries)) == 9431
    assert {e.split("/")[0] for e in entries} <= set(dl_domainnet.DOMAINNET_DOMAINS)
    assert all(e.count("/") == 2 for e in entries)


def test_domainnet_drops_the_shipped_duplicates_by_default(server, tmp_path, monkeypatch):
    monkeypatch.setattr(dl_domainnet, "DOMAINNET_URL", server.url + "/visda/")
    listed = downloads.shipped_domainnet_duplicates()
    src = tmp_path / "src"
    for domain in dl_domainnet.DOMAINNET_DOMAINS:
        make_image_folder_fixture(str(src), None, [domain], ["ant"], n_per_class=1)
        duplicate = next((e for e in listed if e.startswith(domain + "/")), None)
        if duplicate:
            fx.write_image(str(src / duplicate), 7)
        archive = zip_tree(src, domain, tmp_path / domain)
        prefix = "groundtruth/" if domain in dl_domainnet.DOMAINNET_GROUNDTRUTH else ""
        _serve(server, f"/visda/{prefix}{domain}.zip", archive)
    for flag, kept in (((), False), (("--keep_domainnet_duplicates",), True)):
        data_dir = tmp_path / ("kept" if kept else "data")
        assert run_main(data_dir, "DomainNet", extra=list(flag)) == 0
        root = data_dir / "domain_net"
        first = next(e for e in listed if e.startswith("clipart/"))
        assert (root / first).exists() == kept
        assert (root / "clipart" / "ant" / "img_0.png").exists()
