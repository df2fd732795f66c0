"""Spawrious (six variants) and SVIRO from tiny fixtures of their layouts."""

import os

import pytest

from domainbed import datasets
from domainbed.datasets import spawrious
from domainbed.errors import DataError
from tests.fixtures import datasets_extra as fx
from tests.fixtures.data import make_image_folder_fixture

VARIANTS = ["SpawriousO2O_easy", "SpawriousO2O_medium", "SpawriousO2O_hard",
            "SpawriousM2M_easy", "SpawriousM2M_medium", "SpawriousM2M_hard"]


@pytest.fixture
def spawrious_root(tmp_path, monkeypatch):
    # 10 images per breed and group: O2O keeps int(0.97*10)=9 (+1 filler) and
    # int(0.87*10)=8 (+2 filler) per breed; the fixture holds 12 per folder
    monkeypatch.setattr(spawrious.SpawriousBenchmark, "PER_BREED", 10)
    fx.make_spawrious(str(tmp_path), n=12)
    return str(tmp_path)


def _where(sample):
    path, label = sample
    parts = path.split(os.sep)
    return parts[-4], parts[-3], parts[-2], label  # combination, location, breed, label


@pytest.mark.parametrize("name", VARIANTS)
def test_spawrious_variant_builds(spawrious_root, name):
    cls = datasets.get_dataset_class(name)
    dataset = cls(spawrious_root, [0], {"image_size": 32})
    assert cls.ENVIRONMENTS == ["Test", "SC_group_1", "SC_group_2"] and len(dataset) == 3
    assert dataset.num_classes == 4 and dataset.input_shape == (3, 32, 32)
    assert [len(env) for env in dataset] == [4 * 2 * 12, 40, 40]
    for env in dataset:  # every label is the index of its breed folder in the class list
        assert all(spawrious.CLASSES[label] == breed for _, _, breed, label in
                   map(_where, env.samples))
    assert dataset[1][0][0].shape == (3, 32, 32)
    assert cls.CHECKPOINT_FREQ == 100


def test_o2o_easy_groups_and_filler(spawrious_root):
    dataset = datasets.get_dataset_class("SpawriousO2O_easy")(spawrious_root, [0], {})
    group_1 = [_where(s)[:3] for s in dataset[1].samples]
    # bulldog, dachshund, labrador, corgi at desert, jungle, dirt, snow; then the beach filler
    assert group_1[:9] == [("0", "desert", "bulldog")] * 9
    assert group_1[9:18] == [("0", "jungle", "dachshund")] * 9
    assert group_1[36:] == [("0", "beach", b) for b in spawrious.BREEDS]
    group_2 = [_where(s)[:3] for s in dataset[2].samples]
    assert group_2[:8] == [("1", "desert", "bulldog")] * 8
    assert group_2[32:] == [("1", "beach", b) for b in spawrious.BREEDS for _ in range(2)]
    assert dataset[1].samples[0][0].endswith("00.png")  # sorted files, the first ones
    test = [_where(s)[:3] for s in dataset[0].samples]
    assert test[0] == ("0", "dirt", "bulldog") and test[-1] == ("1", "jungle", "corgi")


def test_m2m_groups_swap_the_pairs(spawrious_root):
    dataset = datasets.get_dataset_class("SpawriousM2M_hard")(spawrious_root, [0], {})
    first = {_where(s)[2]: _where(s)[1] for s in dataset[1].samples}
    second = {_where(s)[2]: _where(s)[1] for s in dataset[2].samples}
    assert first == {"bulldog": "dirt", "dachshund": "jungle", "labrador": "snow",
                     "corgi": "beach"}
    assert second == {"bulldog": "jungle", "dachshund": "dirt", "labrador": "beach",
                      "corgi": "snow"}
    assert {_where(s)[0] for env in dataset for s in env.samples} == {"0"}
    test = [_where(s)[1:3] for s in dataset[0].samples]
    assert test[0] == ("snow", "bulldog") and test[12 * 4] == ("beach", "bulldog")


def test_upstream_layout_with_data_dir_inside_spawrious224(spawrious_root):
    inner = os.path.join(spawrious_root, "spawrious224")
    dataset = datasets.get_dataset_class("SpawriousM2M_easy")(inner, [0], {})
    assert [len(env) for env in dataset] == [96, 40, 40]


def test_spawrious_missing_names_the_download(tmp_path):
    with pytest.raises(DataError, match="--datasets Spawrious"):
        datasets.get_dataset_class("SpawriousO2O_easy")(str(tmp_path), [0], {})


def test_sviro_builds_from_its_layout(tmp_path):
    cls = datasets.get_dataset_class("SVIRO")
    make_image_folder_fixture(str(tmp_path), "sviro", cls.ENVIRONMENTS,
                              ["adult", "empty", "infant_seat"], n_per_class=1)
    dataset = cls(str(tmp_path), [0], {"image_size": 32})
    assert len(dataset) == 10 and dataset.num_classes == 3
    assert [len(env) for env in dataset] == [3] * 10 and cls.CHECKPOINT_FREQ == 300
    assert dataset.input_shape == (3, 32, 32)
