"""The download command against a local fake server: resume, retry, Google Drive's
confirmation page, extraction, renaming, TerraIncognita's reorganisation, duplicates."""

import hashlib
import io
import json
import os
import shutil
import zipfile

import pytest

from domainbed.datasets import download as downloads
from domainbed.datasets import get_dataset_class
from domainbed.datasets.download import domainnet as dl_domainnet
from domainbed.datasets.download import terra_incognita as dl_terra_incognita
from domainbed.datasets.download.gdrive_archives import (OFFICE_HOME_SOURCE, PACS_SOURCE,
                                                         VLCS_SOURCE)
from domainbed.errors import DataError
from domainbed.lib import archives, fetch
from domainbed.scripts import download as dl
from tests.fixtures.data import make_image_folder_fixture, make_mnist_fixture, write_image
from tests.fixtures.http import fetcher, run_main, zip_tree


PAYLOAD = bytes(range(256)) * 40  # 10240 bytes


# ---------------------------------------------------------------- resumable downloads


def test_resumes_a_partial_file_with_a_range_request(server, tmp_path):
    server.routes["/f.bin"] = PAYLOAD
    dest = tmp_path / "f.bin"
    (tmp_path / "f.bin.part").write_bytes(PAYLOAD[:4000])
    fetcher().fetch(server.url + "/f.bin", str(dest))
    assert dest.read_bytes() == PAYLOAD
    assert server.requests[-1][2] == "bytes=4000-"
    assert not (tmp_path / "f.bin.part").exists()


def test_complete_part_file_answered_416_is_accepted(server, tmp_path):
    server.routes["/f.bin"] = PAYLOAD
    (tmp_path / "f.bin.part").write_bytes(PAYLOAD)
    fetcher().fetch(server.url + "/f.bin", str(tmp_path / "f.bin"))
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD


def test_server_ignoring_range_restarts_instead_of_appending(server, tmp_path):
    server.routes["/f.bin"] = PAYLOAD
    server.faults["/f.bin"] = ["norange"]
    (tmp_path / "f.bin.part").write_bytes(PAYLOAD[:3000])
    fetcher().fetch(server.url + "/f.bin", str(tmp_path / "f.bin"))
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD


def test_retries_with_backoff_after_server_errors(server, tmp_path):
    server.routes["/f.bin"] = PAYLOAD
    server.faults["/f.bin"] = ["503", "503"]
    f = fetcher(backoff=0.5)
    f.fetch(server.url + "/f.bin", str(tmp_path / "f.bin"))
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD
    assert f.sleeps == [0.5, 1.0]
    assert len(server.requests) == 3


def test_dropped_connection_resumes_where_it_stopped(server, tmp_path):
    server.routes["/f.bin"] = PAYLOAD
    server.faults["/f.bin"] = ["drop", "drop"]
    f = fetcher()
    f.fetch(server.url + "/f.bin", str(tmp_path / "f.bin"))
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD
    ranges = [r for _, _, r in server.requests]
    assert ranges[0] is None and ranges[1] == f"bytes={len(PAYLOAD) // 2}-"
    assert len(f.sleeps) == 2


def test_gives_up_after_the_retries_and_keeps_the_partial_file(server, tmp_path):
    server.routes["/f.bin"] = PAYLOAD
    server.faults["/f.bin"] = ["drop"] + ["503"] * 10
    with pytest.raises(DataError, match="after 3 attempts") as info:
        fetcher(retries=2).fetch(server.url + "/f.bin", str(tmp_path / "f.bin"))
    assert "partial file kept" in str(info.value)
    assert (tmp_path / "f.bin.part").stat().st_size == len(PAYLOAD) // 2
    assert not (tmp_path / "f.bin").exists()


def test_client_errors_are_not_retried(server, tmp_path):
    f = fetcher()
    with pytest.raises(DataError, match="HTTP 404"):
        f.fetch(server.url + "/missing.bin", str(tmp_path / "x"))
    assert len(server.requests) == 1 and f.sleeps == []


def test_falls_back_to_the_next_mirror(server, tmp_path):
    server.routes["/b/f.bin"] = PAYLOAD
    fetcher().fetch([server.url + "/a/f.bin", server.url + "/b/f.bin"], str(tmp_path / "f"))
    assert (tmp_path / "f").read_bytes() == PAYLOAD
    assert server.paths() == ["/a/f.bin", "/b/f.bin"]


def test_size_and_sha256_are_verified(server, tmp_path):
    server.routes["/f.bin"] = PAYLOAD
    good = hashlib.sha256(PAYLOAD).hexdigest()
    fetcher().fetch(server.url + "/f.bin", str(tmp_path / "ok"), sha256=good, size=len(PAYLOAD))
    assert (tmp_path / "ok").read_bytes() == PAYLOAD
    with pytest.raises(DataError, match="sha256"):
        fetcher().fetch(server.url + "/f.bin", str(tmp_path / "bad"), sha256="0" * 64)
    with pytest.raises(DataError, match="expected 5"):
        fetcher().fetch(server.url + "/f.bin", str(tmp_path / "bad2"), size=5)
    assert not any(p.name.startswith("bad") for p in tmp_path.iterdir())


def test_finished_file_is_not_downloaded_again(server, tmp_path):
    (tmp_path / "f.bin").write_bytes(b"done")
    fetcher().fetch(server.url + "/f.bin", str(tmp_path / "f.bin"))
    assert server.requests == []


# ---------------------------------------------------------------- Google Drive


def gdrive_routes(server, files, style="form"):
    """Google Drive imitation: /uc answers a warning page, the confirmed URL the file."""

    def uc(handler, query):
        file_id = query["id"]
        if style == "direct" or query.get("confirm") == "tok":
            return handler.send_file(files[file_id])
        if style == "quota":
            page = ("<html><body>Too many users have viewed or downloaded this file "
                    "recently.</body></html>")
        elif style == "form":
            page = (f'<html><form id="download-form" action="{server.url}/download" method="get">'
                    f'<input type="hidden" name="id" value="{file_id}">'
                    f'<input type="hidden" name="export" value="download">'
                    f'<input type="hidden" name="confirm" value="t">'
                    f'<input type="hidden" name="uuid" value="u-1"></form></html>')
        else:  # an older page: a link carrying the token
            page = f'<a href="/uc?export=download&amp;confirm=tok&amp;id={file_id}">Download</a>'
        handler.send_bytes(page.encode(), ctype="text/html; charset=utf-8")

    def confirmed(handler, query):
        assert query["confirm"] == "t" and query["uuid"] == "u-1"
        handler.send_file(files[query["id"]])

    server.routes["/uc"] = uc
    server.routes["/download"] = confirmed


@pytest.mark.parametrize("style", ["form", "link", "direct"])
def test_google_drive_confirmation_flow(server, tmp_path, monkeypatch, style):
    monkeypatch.setattr(fetch, "GDRIVE_URL", server.url + "/uc?export=download&id={id}")
    gdrive_routes(server, {"abc": PAYLOAD}, style)
    fetcher().fetch_google_drive("abc", str(tmp_path / "f.zip"))
    assert (tmp_path / "f.zip").read_bytes() == PAYLOAD


def test_google_drive_quota_page_names_the_manual_fix(server, tmp_path, monkeypatch):
    monkeypatch.setattr(fetch, "GDRIVE_URL", server.url + "/uc?export=download&id={id}")
    gdrive_routes(server, {"abc": PAYLOAD}, "quota")
    with pytest.raises(DataError, match="quota") as info:
        fetcher().fetch_google_drive("abc", str(tmp_path / "f.zip"))
    assert "in a browser" in str(info.value) and str(tmp_path / "f.zip") in str(info.value)


def test_confirm_url_from_cookie():
    class Cookie:
        name, value = "download_warning_123", "XYZ"
    url = fetch.google_drive_confirm_url("<html>no form</html>", "https://h/uc?id=1", [Cookie()])
    assert url == "https://h/uc?id=1&confirm=XYZ"
    assert fetch.google_drive_confirm_url("<html>nothing</html>", "https://h/uc?id=1") is None


# ---------------------------------------------------------------- archives


def test_extract_refuses_paths_outside_the_destination(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("../evil.txt", "x")
    with pytest.raises(DataError, match="unsafe"):
        archives.extract_archive(str(archive), str(tmp_path / "out"))
    assert not (tmp_path / "evil.txt").exists()


def test_corrupt_archive_is_deleted_with_a_clear_error(tmp_path):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("top/x.bin", PAYLOAD)
    data = bytearray(archive.read_bytes())
    start = 30 + len("top/x.bin")  # the member's data follow its local header
    data[start + 100:start + 130] = bytes(30)  # damaged data: the CRC check fails
    archive.write_bytes(bytes(data))
    with pytest.raises(DataError, match="corrupt"):
        archives.extract_archive(str(archive), str(tmp_path / "out"))
    assert not archive.exists()


def test_truncated_tar_gz_is_corrupt(tmp_path):
    src = tmp_path / "src"
    make_image_folder_fixture(str(src), "top", ["e"], ["c"], n_per_class=4, size=32)
    archive = shutil.make_archive(str(tmp_path / "a"), "gztar", root_dir=str(src), base_dir="top")
    data = open(archive, "rb").read()
    open(archive, "wb").write(data[:len(data) // 2])
    with pytest.raises(DataError, match="corrupt"):
        archives.extract_archive(archive, str(tmp_path / "out"))


def test_drop_listed_files(tmp_path):
    root = tmp_path / "domain_net"
    make_image_folder_fixture(str(root), None, ["clipart"], ["ant", "bee"], n_per_class=2)
    listing = tmp_path / "dups.txt"
    listing.write_text("# duplicates\ndomain_net/clipart/ant/img_0.png\n\nclipart/bee/img_1.jpg\n"
                       "clipart/bee/not_there.jpg\n")
    entries = downloads.read_file_list(str(listing), strip_prefix="domain_net/")
    assert entries == ["clipart/ant/img_0.png", "clipart/bee/img_1.jpg",
                       "clipart/bee/not_there.jpg"]
    assert downloads.drop_listed_files(str(root), entries) == 2
    left = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.*"))
    assert left == ["clipart/ant/img_1.jpg", "clipart/bee/img_0.png"]
    with pytest.raises(DataError, match="outside"):
        downloads.drop_listed_files(str(root), ["../dups.txt"])
    assert listing.exists()


# ---------------------------------------------------------------- whole datasets


CLASSES = ["dog", "horse"]


def serve_gdrive_archive(server, monkeypatch, tmp_path, file_id, top, envs, fmt):
    src = tmp_path / "src"
    make_image_folder_fixture(str(src), top, envs, CLASSES, n_per_class=1)
    archive = shutil.make_archive(str(tmp_path / file_id), fmt, root_dir=str(src), base_dir=top)
    monkeypatch.setattr(fetch, "GDRIVE_URL", server.url + "/uc?export=download&id={id}")
    gdrive_routes(server, {file_id: open(archive, "rb").read()}, "form")


@pytest.mark.parametrize("name, source, top, fmt", [
    ("PACS", PACS_SOURCE, "kfold", "zip"),
    ("OfficeHome", OFFICE_HOME_SOURCE, "OfficeHomeDataset_10072016", "zip"),
    ("VLCS", VLCS_SOURCE, "VLCS", "gztar"),
])
def test_google_drive_datasets_are_laid_out_for_their_class(server, tmp_path, monkeypatch,
                                                            name, source, top, fmt):
    cls = get_dataset_class(name)
    serve_gdrive_archive(server, monkeypatch, tmp_path, source.gdrive_id, top,
                         cls.environment_folders(), fmt)
    data_dir = tmp_path / "data"
    assert run_main(data_dir, name) == 0
    target = data_dir / cls.SUBDIR
    assert (target / downloads.MARKER).exists()
    assert sorted(p.name for p in target.iterdir() if p.is_dir()) == sorted(cls.environment_folders())
    assert os.listdir(data_dir / "downloads") == []  # archive removed after success
    assert not any(p.name.endswith(".partial") for p in data_dir.iterdir())
    dataset = cls(str(data_dir), [0], {})
    assert dataset.num_classes == len(CLASSES) and len(dataset) == len(cls.ENVIRONMENTS)
    # idempotent: a second run asks the network for nothing
    n_requests = len(server.requests)
    assert run_main(data_dir, name) == 0
    assert len(server.requests) == n_requests


def test_keep_archives(server, tmp_path, monkeypatch):
    serve_gdrive_archive(server, monkeypatch, tmp_path, PACS_SOURCE.gdrive_id, "kfold",
                         get_dataset_class("PACS").environment_folders(), "zip")
    assert run_main(tmp_path / "data", "PACS", extra=["--keep_archives"]) == 0
    assert os.listdir(tmp_path / "data" / "downloads") == ["PACS.zip"]


def test_archive_without_the_expected_domains_fails_and_installs_nothing(
        server, tmp_path, monkeypatch, capsys, caplog):
    serve_gdrive_archive(server, monkeypatch, tmp_path, PACS_SOURCE.gdrive_id, "kfold",
                         ["art_painting", "photo"], "zip")
    assert run_main(tmp_path / "data", "PACS") == 1
    assert not (tmp_path / "data" / "PACS").exists()
    assert "failed: PACS" in capsys.readouterr().err
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "['cartoon', 'sketch']" in errors[0] and "\n" not in errors[0]


def test_existing_folder_without_marker_is_left_untouched(server, tmp_path):
    data_dir = tmp_path / "data"
    make_image_folder_fixture(str(data_dir), "PACS", ["photo"], ["dog"], n_per_class=1)
    assert run_main(data_dir, "PACS") == 0
    assert server.requests == []
    assert sorted(p.name for p in (data_dir / "PACS").iterdir()) == ["photo"]


def test_one_failure_does_not_stop_the_other_datasets(server, tmp_path, monkeypatch, capsys):
    serve_gdrive_archive(server, monkeypatch, tmp_path, VLCS_SOURCE.gdrive_id, "VLCS",
                         get_dataset_class("VLCS").environment_folders(), "gztar")
    # PACS's id is unknown to the fake Drive: its download fails, VLCS still installs
    uc = server.routes["/uc"]
    server.routes["/uc"] = lambda h, q: (uc(h, q) if q["id"] == VLCS_SOURCE.gdrive_id
                                         else h.send_bytes(b"gone", status=404))
    data_dir = tmp_path / "data"
    assert run_main(data_dir, "PACS", "VLCS") == 1
    assert (data_dir / "VLCS" / downloads.MARKER).exists() and not (data_dir / "PACS").exists()
    assert "failed: PACS" in capsys.readouterr().err


def test_domainnet_six_archives_and_duplicate_removal(server, tmp_path, monkeypatch):
    monkeypatch.setattr(dl_domainnet, "DOMAINNET_URL", server.url + "/visda/")
    src = tmp_path / "src"
    for domain in dl_domainnet.DOMAINNET_DOMAINS:
        make_image_folder_fixture(str(src), None, [domain], ["ant", "bee"], n_per_class=2)
        archive = zip_tree(src, domain, tmp_path / domain)
        prefix = "groundtruth/" if domain in ("clipart", "painting") else ""
        server.routes[f"/visda/{prefix}{domain}.zip"] = open(archive, "rb").read()
    listing = tmp_path / "duplicates.txt"
    listing.write_text("domain_net/real/ant/img_0.png\nsketch/bee/img_1.jpg\n")
    data_dir = tmp_path / "data"
    assert run_main(data_dir, "DomainNet", extra=["--domainnet_duplicates", str(listing)]) == 0
    root = data_dir / "domain_net"
    assert not (root / "real/ant/img_0.png").exists()
    assert not (root / "sketch/bee/img_1.jpg").exists()
    assert (root / "real/ant/img_1.jpg").exists() and (root / "clipart/ant/img_0.png").exists()
    assert "/visda/groundtruth/clipart.zip" in server.paths()
    assert "/visda/infograph.zip" in server.paths()
    dataset = get_dataset_class("DomainNet")(str(data_dir), [], {})
    assert [len(env) for env in dataset] == [4, 4, 4, 4, 3, 3]


def terra_fixture(tmp_path):
    """A LILA-like images tarball and annotation zip; returns (images, json, expected)."""
    images = tmp_path / "terra_src" / "eccv_18_all_images_sm"
    records, annotations = [], []
    categories = [{"id": 1, "name": "bobcat"}, {"id": 2, "name": "coyote"},
                  {"id": 3, "name": "empty"}, {"id": 4, "name": "car"}]
    plan = [  # id, location, category ids
        ("i1", 38, [1]), ("i2", "43", [2]), ("i3", 46, [3]), ("i4", 100, [1, 2]),
        ("i5", 100, [4]),  # category not kept
        ("i6", 7, [1]),  # location not kept
        ("i7", 38, [2]),  # listed but its file is missing
        ("i8", 38, [1, 1]),  # two boxes of one category
    ]
    for image_id, location, cats in plan:
        records.append({"id": image_id, "file_name": f"{image_id}.jpg", "location": location})
        annotations.extend({"image_id": image_id, "category_id": c} for c in cats)
        if image_id != "i7":
            write_image(str(images / f"{image_id}.jpg"), seed=len(records))
    data = {"images": records, "annotations": annotations, "categories": categories}
    expected = {"location_38/bobcat/i1.jpg", "location_38/bobcat/i8.jpg",
                "location_43/coyote/i2.jpg", "location_46/empty/i3.jpg",
                "location_100/bobcat/i4.jpg", "location_100/coyote/i4.jpg"}
    return images, data, expected


def test_organize_terra_incognita(tmp_path):
    images, data, expected = terra_fixture(tmp_path)
    annotations = tmp_path / "ann.json"
    annotations.write_text(json.dumps(data))
    out = tmp_path / "out"
    counts = downloads.organize_terra_incognita(str(images), str(annotations), str(out))
    found = {p.relative_to(out).as_posix() for p in out.rglob("*.jpg")}
    assert found == expected
    assert counts == {"location_100": 1, "location_38": 2, "location_43": 1, "location_46": 1}


def test_terra_incognita_end_to_end(server, tmp_path, monkeypatch):
    images, data, expected = terra_fixture(tmp_path)
    tarball = shutil.make_archive(str(tmp_path / "imgs"), "gztar", root_dir=str(images.parent),
                                  base_dir=images.name)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("caltech_images_20210113.json", json.dumps(data))
    monkeypatch.setattr(dl_terra_incognita, "LILA_MIRRORS",
                        (server.url + "/down/", server.url + "/lila/"))
    server.routes["/lila/" + dl_terra_incognita.TERRA_IMAGES_PATH] = open(tarball, "rb").read()
    server.routes["/lila/" + dl_terra_incognita.TERRA_ANNOTATIONS_PATH] = buf.getvalue()
    data_dir = tmp_path / "data"
    assert run_main(data_dir, "TerraIncognita") == 0
    root = data_dir / "terra_incognita"
    assert {p.relative_to(root).as_posix() for p in root.rglob("*.jpg")} == expected
    dataset = get_dataset_class("TerraIncognita")(str(data_dir), [0], {})
    assert dataset.classes == ["bobcat", "coyote", "empty"]
    assert [len(env) for env in dataset] == [2, 2, 1, 1]  # location_100, 38, 43, 46


def test_mnist_through_torchvision(tmp_path, monkeypatch):
    calls = []

    class FakeMNIST:
        def __init__(self, root, train, download):
            calls.append((train, download))
            if not os.path.exists(os.path.join(root, "MNIST", "raw", "t10k-images-idx3-ubyte")):
                make_mnist_fixture(root, n_train=12, n_test=6)

    import torchvision.datasets
    monkeypatch.setattr(torchvision.datasets, "MNIST", FakeMNIST)
    data_dir = tmp_path / "data"
    assert run_main(data_dir, "RotatedMNIST", "ColoredMNIST") == 0
    assert calls == [(True, True), (False, True)]  # the aliases name one download
    assert (data_dir / "MNIST" / downloads.MARKER).exists()
    assert len(get_dataset_class("RotatedMNIST")(str(data_dir), [0], {})) == 6
    assert run_main(data_dir, "MNIST") == 0 and len(calls) == 2


def test_unknown_dataset_name_lists_the_known_ones(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        dl.main(["--data_dir", str(tmp_path), "--datasets", "Imagenet"])
    assert info.value.code == 2
    assert "PACS" in capsys.readouterr().err
