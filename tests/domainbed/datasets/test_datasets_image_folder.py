"""Image-folder datasets (VLCS, PACS, OfficeHome, TerraIncognita, DomainNet, ImageFolder)
built from tiny PNG/JPEG trees."""

import os
import subprocess
import sys

import pytest
import torch

from domainbed.datasets import get_dataset_class, num_environments
from domainbed.datasets import image_folder as imf
from domainbed.errors import DataError
from domainbed.lib.misc import dataset_labels, seed_hash, split_dataset
from tests.fixtures.data import make_dataset_fixture, make_image_folder_fixture, write_image

from tests.fixtures.paths import REPO

BENCHMARKS = {  # name: (sub-folder, upstream's labels, domain folders, steps, checkpoint freq)
    "VLCS": ("VLCS", ["C", "L", "S", "V"], ["Caltech101", "LabelMe", "SUN09", "VOC2007"],
             5001, 300),
    "PACS": ("PACS", ["A", "C", "P", "S"], ["art_painting", "cartoon", "photo", "sketch"],
             5001, 300),
    "OfficeHome": ("office_home", ["A", "C", "P", "R"],
                   ["Art", "Clipart", "Product", "Real World"], 5001, 300),
    "TerraIncognita": ("terra_incognita", ["L100", "L38", "L43", "L46"],
                       ["location_100", "location_38", "location_43", "location_46"], 5001, 300),
    "DomainNet": ("domain_net", ["clip", "info", "paint", "quick", "real", "sketch"],
                  ["clipart", "infograph", "painting", "quickdraw", "real", "sketch"], 5001, 1000),
}


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_benchmark_dataset_builds_from_its_folder(tmp_path, name):
    subdir, labels, folders, steps, freq = BENCHMARKS[name]
    cls = get_dataset_class(name)
    assert (cls.SUBDIR, cls.ENVIRONMENTS, cls.N_STEPS, cls.CHECKPOINT_FREQ) == (subdir, labels,
                                                                               steps, freq)
    assert cls.environment_folders() == folders
    assert list(cls.ENVIRONMENT_FOLDERS) == folders
    assert cls.INPUT_SHAPE == (3, 224, 224) and cls.N_WORKERS == 8
    assert num_environments(name) == len(labels)
    make_image_folder_fixture(str(tmp_path), subdir, folders, ["b_cls", "a_cls"], n_per_class=1)
    ds = cls(str(tmp_path), [0], {})
    assert len(ds) == len(labels) and ds.num_classes == 2 and ds.classes == ["a_cls", "b_cls"]
    assert ds.ENVIRONMENTS == labels
    assert [os.path.basename(os.path.dirname(os.path.dirname(env.samples[0][0])))
            for env in ds] == folders
    assert tuple(ds.input_shape) == (3, 224, 224)
    x, y = ds[1][0]
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32 and y == 0


def test_a_class_missing_from_one_domain_keeps_global_labels(tmp_path):
    classes = ["dog", "elephant", "giraffe"]
    make_dataset_fixture(str(tmp_path), "PACS", classes, n_per_class=2,
                         missing=[("cartoon", "elephant"), ("sketch", "dog")])
    ds = get_dataset_class("PACS")(str(tmp_path), [], {})
    assert ds.classes == classes and ds.num_classes == 3
    by_env = dict(zip(ds.environment_folders(), ds))
    assert by_env["art_painting"].targets == [0, 0, 1, 1, 2, 2]
    assert by_env["cartoon"].targets == [0, 0, 2, 2]
    assert by_env["sketch"].targets == [1, 1, 2, 2]
    for path, label in by_env["cartoon"].samples:
        assert os.path.basename(os.path.dirname(path)) == classes[label]


def test_generic_image_folder_reads_domains_from_disk(tmp_path):
    root = tmp_path / "mydata"
    make_image_folder_fixture(str(root), None, ["zeta", "alpha", "mid"], ["cat", "dog"],
                              n_per_class=1)
    write_image(str(root / "alpha" / "cat" / "upper.JPG"), seed=5)
    write_image(str(root / "alpha" / "cat" / "nested" / "deep.webp"), seed=6)
    write_image(str(root / "alpha" / "dog" / ".hidden.png"), seed=7)
    (root / "alpha" / "dog" / "notes.txt").write_text("not an image")
    os.makedirs(root / ".cache" / "cat")
    write_image(str(root / ".cache" / "cat" / "x.png"), seed=8)
    (root / "README.md").write_text("a file, not a domain")

    cls = get_dataset_class("ImageFolder")
    assert cls.environments(str(root)) == ["alpha", "mid", "zeta"]
    assert num_environments("ImageFolder", str(root)) == 3
    assert (cls.N_STEPS, cls.CHECKPOINT_FREQ) == (5001, 300)
    ds = cls(str(root), [2], {})
    assert ds.ENVIRONMENTS == ["alpha", "mid", "zeta"] and ds.num_classes == 2
    names = sorted(os.path.relpath(p, root) for p, _ in ds[0].samples)
    assert names == sorted(["alpha/cat/img_0.png", "alpha/cat/upper.JPG",
                            "alpha/cat/nested/deep.webp", "alpha/dog/img_0.png"])
    assert ds[0][2][0].shape == (3, 224, 224)


def test_split_sizes_and_labels(tmp_path):
    make_dataset_fixture(str(tmp_path), "VLCS", ["a", "b", "c"], n_per_class=4)
    ds = get_dataset_class("VLCS")(str(tmp_path), [0], {})
    for i, env in enumerate(ds):
        out, in_ = split_dataset(env, int(len(env) * 0.2), seed_hash(0, i))
        assert (len(out), len(in_)) == (2, 10)
        assert sorted(out.keys + in_.keys) == list(range(12))
        assert dataset_labels(in_) == [env.targets[k] for k in in_.keys]


SPLIT_SCRIPT = """
import os, sys
from domainbed.datasets import get_dataset_class
from domainbed.lib.misc import seed_hash, split_dataset
root = sys.argv[1]
ds = get_dataset_class("OfficeHome")(root, [0], {})
for i, env in enumerate(ds):
    out, in_ = split_dataset(env, int(len(env) * 0.25), seed_hash(3, i))
    print([(os.path.relpath(env.samples[k][0], root), env.samples[k][1]) for k in out.keys])
"""


@pytest.mark.slow
def test_splits_are_identical_in_another_process(tmp_path):
    make_dataset_fixture(str(tmp_path), "OfficeHome", ["x", "y"], n_per_class=4,
                         missing=[("Product", "x")])
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
               PYTHONHASHSEED="99")
    result = subprocess.run([sys.executable, "-c", SPLIT_SCRIPT, str(tmp_path)],
                            capture_output=True, text=True, env=env, check=True)
    ds = get_dataset_class("OfficeHome")(str(tmp_path), [0], {})
    here = []
    for i, e in enumerate(ds):
        out, _ = split_dataset(e, int(len(e) * 0.25), seed_hash(3, i))
        here.append(str([(os.path.relpath(e.samples[k][0], str(tmp_path)), e.samples[k][1])
                         for k in out.keys]))
    assert result.stdout.splitlines() == here
    assert len(here) == 4 and "Real World" in here[3]


def test_augmentation_on_training_envs_and_eval_view_is_deterministic(tmp_path):
    make_dataset_fixture(str(tmp_path), "PACS", ["a"], n_per_class=1, size=32)
    ds = get_dataset_class("PACS")(str(tmp_path), [3], {})
    torch.manual_seed(0)
    train_a, train_b = ds[0][0][0], ds[0][0][0]
    assert not torch.equal(train_a, train_b)  # random crop / flip / jitter
    view = ds.eval_view(0)
    assert view.samples == ds[0].samples and view.targets == ds[0].targets
    assert torch.equal(view[0][0], view[0][0])
    assert ds.eval_view(0) is view
    # the test environment is never augmented, and is its own eval view
    assert torch.equal(ds[3][0][0], ds[3][0][0]) and ds.eval_view(3) is ds[3]
    assert torch.equal(ds.eval_view(3)[0][0], ds[3][0][0])


def test_data_augmentation_false_disables_augmentation(tmp_path):
    make_dataset_fixture(str(tmp_path), "PACS", ["a"], n_per_class=1, size=32)
    ds = get_dataset_class("PACS")(str(tmp_path), [3], {"data_augmentation": False})
    torch.manual_seed(0)
    assert torch.equal(ds[0][0][0], ds[0][0][0])
    assert torch.equal(ds[0][0][0], ds.eval_view(0)[0][0])


def test_eval_transform_normalises_with_imagenet_statistics(tmp_path):
    from PIL import Image
    path = tmp_path / "white.png"
    Image.new("RGB", (10, 6), (255, 255, 255)).save(path)
    x = imf.ImageEnvironment([(str(path), 0)], imf.T.eval_transform())[0][0]
    expected = [(1 - m) / s for m, s in zip(imf.T.IMAGENET_MEAN, imf.T.IMAGENET_STD)]
    assert x.shape == (3, 224, 224)
    assert torch.allclose(x.mean(dim=(1, 2)), torch.tensor(expected), atol=1e-5)


def test_corrupt_and_truncated_images_raise_data_error(tmp_path):
    make_dataset_fixture(str(tmp_path), "PACS", ["a"], n_per_class=2, size=64)
    bad = tmp_path / "PACS" / "photo" / "a" / "img_0.png"
    bad.write_bytes(b"this is not a png")
    ds = get_dataset_class("PACS")(str(tmp_path), [], {})
    photo = ds.environment_folders().index("photo")
    with pytest.raises(DataError) as info:
        ds[photo][0]
    message = str(info.value)
    assert str(bad) in message and "\n" not in message
    assert "delete" in message and "domainbed.scripts.download" in message
    jpeg = tmp_path / "PACS" / "photo" / "a" / "img_1.jpg"
    jpeg.write_bytes(jpeg.read_bytes()[:200])
    with pytest.raises(DataError, match="img_1.jpg"):
        ds.eval_view(photo)[1]


def test_missing_dataset_folder_names_the_download_command(tmp_path):
    with pytest.raises(DataError) as info:
        get_dataset_class("OfficeHome")(str(tmp_path), [0], {})
    message = str(info.value)
    assert os.path.join(str(tmp_path), "office_home") in message
    assert f"python -m domainbed.scripts.download --data_dir {tmp_path} --datasets OfficeHome" \
        in message


def test_missing_domain_folder_and_empty_domain(tmp_path):
    make_image_folder_fixture(str(tmp_path), "VLCS", ["Caltech101", "LabelMe", "SUN09"], ["a"], 1)
    with pytest.raises(DataError, match=r"\['VOC2007'\] missing"):
        get_dataset_class("VLCS")(str(tmp_path), [0], {})
    os.makedirs(tmp_path / "VLCS" / "VOC2007" / "a")
    (tmp_path / "VLCS" / "VOC2007" / "a" / "list.txt").write_text("no images here")
    with pytest.raises(DataError, match="VOC2007.*holds no images"):
        get_dataset_class("VLCS")(str(tmp_path), [0], {})


def test_generic_image_folder_errors(tmp_path):
    cls = get_dataset_class("ImageFolder")
    with pytest.raises(DataError, match="does not exist"):
        cls(str(tmp_path / "nope"), [0], {})
    with pytest.raises(DataError, match="no domain folders"):
        cls(str(tmp_path), [0], {})
    with pytest.raises(DataError, match="--data_dir"):
        cls.environments(None)


def test_pluggable_loader(tmp_path):
    from PIL import Image
    make_dataset_fixture(str(tmp_path), "PACS", ["a"], n_per_class=1)
    seen = []

    def gray_loader(path):
        seen.append(path)
        return Image.new("RGB", (4, 4), (128, 128, 128))

    ds = get_dataset_class("PACS")(str(tmp_path), [], {}, loader=gray_loader)
    ds[0][0]
    assert seen == [ds[0].samples[0][0]]
    assert ds.eval_view(0).loader is gray_loader
    imf.set_default_loader(gray_loader)
    try:
        ds2 = get_dataset_class("PACS")(str(tmp_path), [], {})
        ds2.eval_view(1)[0]
        assert seen[-1] == ds2[1].samples[0][0]
    finally:
        imf.set_default_loader(None)
    assert imf.get_default_loader() is imf.pil_loader
