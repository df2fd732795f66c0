"""The registry of downloads takes its folders, domains and aliases from the dataset classes."""

import pytest

from domainbed.datasets import get_dataset_class
from domainbed.datasets import download as downloads
from domainbed.datasets.base import DATASET_REGISTRY
from domainbed.datasets.download import domainnet, spawrious, terra_incognita, wilds
from domainbed.datasets.download.registry import resolve
from domainbed.datasets.mnist import MultipleEnvironmentMNIST
from domainbed.scripts import download as cli

SPAWRIOUS = [f"Spawrious{kind}_{level}" for kind in ("O2O", "M2M")
             for level in ("easy", "medium", "hard")]


def test_downloads_in_their_order_with_the_dataset_classes_folders():
    assert downloads.DOWNLOADS.names() == [
        "MNIST", "PACS", "OfficeHome", "VLCS", "DomainNet", "TerraIncognita", "SVIRO",
        "Spawrious", "WILDSCamelyon", "WILDSFMoW", "WILDSRxRx1", "WILDSiWildCam"]
    for name in ("PACS", "OfficeHome", "VLCS", "DomainNet", "TerraIncognita", "SVIRO"):
        assert downloads.DOWNLOADS.get(name).subdir == get_dataset_class(name).SUBDIR
    for name in ("WILDSCamelyon", "WILDSFMoW", "WILDSRxRx1", "WILDSiWildCam"):
        cls = get_dataset_class(name)
        assert downloads.DOWNLOADS.get(name).subdir == cls.FOLDER
        assert wilds.WILDS_BUNDLES[name][:2] == (cls.FOLDER, cls.VERSION)
    assert downloads.DOWNLOADS.get("Spawrious").subdir == "spawrious224"
    assert downloads.DOWNLOADS.get("MNIST").subdir == "MNIST"


def test_domain_lists_come_from_the_dataset_classes():
    assert domainnet.DOMAINNET_DOMAINS == ("clipart", "infograph", "painting", "quickdraw",
                                           "real", "sketch")
    assert list(domainnet.DOMAINNET_DOMAINS) == get_dataset_class("DomainNet") \
        .environment_folders()
    assert sorted(terra_incognita.TERRA_LOCATIONS) == ["100", "38", "43", "46"]
    assert [f"location_{loc}" for loc in terra_incognita.TERRA_LOCATIONS] == \
        get_dataset_class("TerraIncognita").environment_folders()
    assert spawrious.part_folders() == ("0", "1")


def test_aliases_are_the_classes_a_download_serves(monkeypatch):
    assert downloads.aliases() == {"RotatedMNIST": "MNIST", "ColoredMNIST": "MNIST",
                                   **{name: "Spawrious" for name in SPAWRIOUS}}
    assert resolve(["ColoredMNIST", "PACS", "RotatedMNIST", "SpawriousM2M_hard"]) == \
        ["MNIST", "PACS", "Spawrious"]
    # a new MNIST dataset class is served by the MNIST download without naming it there
    extra = type("ShiftedMNIST", (MultipleEnvironmentMNIST,), {"ENVIRONMENTS": ["a", "b"]})
    monkeypatch.setitem(DATASET_REGISTRY._items, "ShiftedMNIST", extra)
    assert downloads.aliases()["ShiftedMNIST"] == "MNIST"


def test_the_command_accepts_every_download_and_alias_and_nothing_else(capsys):
    parser = cli.build_parser()
    for name in downloads.DOWNLOADS.names() + list(downloads.aliases()):
        assert parser.parse_args(["--data_dir", "d", "--datasets", name]).datasets == [name]
    with pytest.raises(SystemExit):
        parser.parse_args(["--data_dir", "d", "--datasets", "Debug28"])
    assert "invalid choice: 'Debug28'" in capsys.readouterr().err
