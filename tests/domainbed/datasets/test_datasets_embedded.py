"""The embedded benchmark: contract, label sets, determinism, cache, style shifts, preview."""

import hashlib
import itertools
import logging
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch

from domainbed import datasets
from domainbed.datasets import embedded
from domainbed.datasets.embedded import cache, specs
from domainbed.lib.misc import dataset_labels, split_dataset

EXPECTED_CLASSES = {
    "EmbeddedShapes": 7, "EmbeddedGlyphs": 10, "EmbeddedArrows": 8, "EmbeddedTextures": 7,
    "EmbeddedCounts": 5, "EmbeddedPretrain": 36,
}
ALL_NAMES = embedded.EMBEDDED_TARGET_FAMILY + [embedded.EMBEDDED_PRETRAIN]


def fingerprint(arrays) -> str:
    digest = hashlib.sha256()
    for key in ("x", "y", "env"):
        digest.update(np.ascontiguousarray(arrays[key]).tobytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def built(data_root):
    """Every embedded dataset, built once into a shared temporary data root."""
    return {name: datasets.get_dataset_class(name)(data_root, [0], {}) for name in ALL_NAMES}


def test_family_is_registered_with_fixed_order():
    assert len(embedded.EMBEDDED_TARGET_FAMILY) >= 5
    assert embedded.EMBEDDED_TARGET_FAMILY == ["EmbeddedShapes", "EmbeddedGlyphs",
                                               "EmbeddedArrows", "EmbeddedTextures",
                                               "EmbeddedCounts"]
    for name in ALL_NAMES:
        assert name in datasets.DATASETS
    for name in embedded.EMBEDDED_TARGET_FAMILY:
        assert datasets.num_environments(name) >= 3
    assert embedded.EMBEDDED_PRETRAIN not in embedded.EMBEDDED_TARGET_FAMILY


def test_pretraining_styles_are_never_target_domains():
    """Every held-out target domain is a style the foundation featurizer never saw."""
    target_styles = {d for name in embedded.EMBEDDED_TARGET_FAMILY
                     for d in specs.get_spec(name).domains}
    pretrain = specs.get_spec(embedded.EMBEDDED_PRETRAIN)
    assert len(pretrain.domains) >= 2 and not set(pretrain.domains) & target_styles
    # and it is the larger task: more classes and more images than any target
    for name in embedded.EMBEDDED_TARGET_FAMILY:
        spec = specs.get_spec(name)
        assert len(pretrain.classes) > len(spec.classes)
        assert pretrain.n_per_domain * len(pretrain.domains) > \
            spec.n_per_domain * len(spec.domains)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_dataset_contract(built, name):
    ds = built[name]
    cls = type(ds)
    assert cls.INPUT_SHAPE == (3, 32, 32) and tuple(ds.input_shape) == (3, 32, 32)
    assert cls.N_WORKERS == 0 and cls.N_STEPS > cls.CHECKPOINT_FREQ > 0
    assert ds.num_classes == EXPECTED_CLASSES[name] == len(cls.CLASSES)
    assert len(ds) == len(cls.ENVIRONMENTS) >= (2 if name == embedded.EMBEDDED_PRETRAIN else 3)
    sizes = []
    for i, env in enumerate(ds):
        x, y = env.tensors
        assert x.dtype == torch.float32 and tuple(x.shape[1:]) == (3, 32, 32)
        assert env[0][0].shape == (3, 32, 32)
        # every class, equally often, in every domain: domains differ by style, not labels
        counts = torch.bincount(y, minlength=ds.num_classes)
        assert len(counts) == ds.num_classes and counts.min() == counts.max() > 0
        assert ds.eval_view(i) is env
        sizes.append(len(env))
    if name == embedded.EMBEDDED_PRETRAIN:
        assert 5000 <= sum(sizes) <= 10000
    else:
        assert all(300 <= n <= 600 for n in sizes)


def test_pretraining_task_is_larger_than_every_target(built):
    pretrain = built[embedded.EMBEDDED_PRETRAIN]
    for name in embedded.EMBEDDED_TARGET_FAMILY:
        assert pretrain.num_classes > built[name].num_classes
        assert sum(map(len, pretrain)) > 2 * sum(map(len, built[name]))


def test_each_dataset_has_its_own_label_set():
    label_sets = {name: set(datasets.get_dataset_class(name).CLASSES) for name in ALL_NAMES}
    for a, b in itertools.combinations(ALL_NAMES, 2):
        assert not label_sets[a] & label_sets[b], (a, b)


def test_pixels_are_normalised(built):
    x = torch.cat([env.tensors[0] for env in built["EmbeddedShapes"]])
    lo = -embedded.PIXEL_MEAN / embedded.PIXEL_STD
    hi = (1 - embedded.PIXEL_MEAN) / embedded.PIXEL_STD
    assert x.min() >= lo and x.max() <= hi
    assert abs(x.mean().item()) < 1.0 and 0.5 < x.std().item() < 1.5


@pytest.mark.slow
def test_generation_is_identical_in_another_process(built, data_root):
    here = {name: fingerprint(cache.load_or_generate(name, data_root)) for name in ALL_NAMES}
    code = ("import hashlib, numpy as np\n"
            "from domainbed.datasets.embedded import specs\n"
            f"for name in {ALL_NAMES!r}:\n"
            "    a = specs.generate(name)\n"
            "    h = hashlib.sha256()\n"
            "    for k in ('x', 'y', 'env'):\n"
            "        h.update(np.ascontiguousarray(a[k]).tobytes())\n"
            "    print(name, h.hexdigest())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=300).stdout
    there = dict(line.split() for line in out.strip().splitlines())
    assert there == here


def test_generator_fingerprint_is_pinned():
    # the same bytes on every machine; a deliberate change of the generator must bump
    # specs.GENERATOR_VERSION (which renames the cache files) and update this fingerprint
    assert specs.GENERATOR_VERSION == 2
    # version 2 changed only the pretraining task: the targets' bytes are those of version 1
    assert fingerprint(specs.generate("EmbeddedCounts")) == COUNTS_FINGERPRINT_V1_V2
    assert fingerprint(specs.generate("EmbeddedPretrain")) == PRETRAIN_FINGERPRINT_V2


COUNTS_FINGERPRINT_V1_V2 = "c8d536198d89889ffbbff6f0c68992ed07c578d0bf96958c7ada356d641aa105"
PRETRAIN_FINGERPRINT_V2 = "810acbeeab3c832bf77bfa50c22fcae412b19e584b037d36d67a34dc3e7b77e5"


def test_cache_is_reused_without_regenerating(tmp_path, monkeypatch):
    first = datasets.get_dataset_class("EmbeddedCounts")(str(tmp_path), [0], {})
    path = tmp_path / "embedded" / f"EmbeddedCounts_v{specs.GENERATOR_VERSION}.npz"
    assert path.is_file()
    mtime = path.stat().st_mtime_ns

    def must_not_run(name):
        raise AssertionError(f"{name} was generated again instead of read from the cache")

    monkeypatch.setattr(specs, "generate", must_not_run)
    second = datasets.get_dataset_class("EmbeddedCounts")(str(tmp_path), [0], {})
    assert path.stat().st_mtime_ns == mtime
    for a, b in zip(first, second):
        assert torch.equal(a.tensors[0], b.tensors[0]) and torch.equal(a.tensors[1], b.tensors[1])


def test_cache_location(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV_VAR, str(tmp_path / "env_cache"))
    assert cache.cache_dir(str(tmp_path / "data")) == str(tmp_path / "data" / "embedded")
    assert cache.cache_dir(None) == cache.cache_dir("") == str(tmp_path / "env_cache")
    monkeypatch.delenv(cache.CACHE_ENV_VAR)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.cache_dir(None) == str(tmp_path / "home" / ".cache" / "domainbed" / "embedded")
    # the version is part of the file name: a new generator never reads an old cache
    now = cache.cache_path("EmbeddedCounts", "r")
    assert now.endswith(f"EmbeddedCounts_v{specs.GENERATOR_VERSION}.npz")
    monkeypatch.setattr(specs, "GENERATOR_VERSION", specs.GENERATOR_VERSION + 1)
    assert cache.cache_path("EmbeddedCounts", "r") != now


def test_no_root_uses_the_env_var_folder(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV_VAR, str(tmp_path))
    ds = datasets.get_dataset_class("EmbeddedTextures")(None, [0], {})
    assert len(ds) == 4
    assert (tmp_path / f"EmbeddedTextures_v{specs.GENERATOR_VERSION}.npz").is_file()


def test_corrupt_or_foreign_cache_is_regenerated(tmp_path, caplog):
    path = cache.cache_path("EmbeddedCounts", str(tmp_path))
    os.makedirs(os.path.dirname(path))
    with open(path, "wb") as f:
        f.write(b"not an npz file")
    with caplog.at_level(logging.WARNING):
        arrays = cache.load_or_generate("EmbeddedCounts", str(tmp_path))
    assert "invalid cache" in caplog.text
    assert fingerprint(cache.read_cache("EmbeddedCounts", path)) == fingerprint(arrays)
    # a readable file with another dataset's content is rejected too
    cache.write_cache("EmbeddedCounts", path, {k: arrays[k][:10] for k in ("x", "y", "env")})
    with pytest.raises(ValueError, match="images"):
        cache.read_cache("EmbeddedCounts", path)


def test_unwritable_cache_still_gives_data(tmp_path, caplog):
    blocker = tmp_path / "a_file"
    blocker.write_text("a file where the cache folder should be")
    with caplog.at_level(logging.WARNING):
        arrays = cache.load_or_generate("EmbeddedCounts", str(blocker))
    assert "cannot write the cache" in caplog.text
    assert arrays["x"].shape[1:] == (3, 32, 32)


def test_concurrent_generation_leaves_one_valid_file(tmp_path):
    results, errors = [], []

    def build():
        try:
            results.append(fingerprint(cache.load_or_generate("EmbeddedCounts", str(tmp_path))))
        except Exception as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 2 and results[0] == results[1]
    assert os.listdir(tmp_path / "embedded") == [f"EmbeddedCounts_v{specs.GENERATOR_VERSION}.npz"]
    path = cache.cache_path("EmbeddedCounts", str(tmp_path))
    assert fingerprint(cache.read_cache("EmbeddedCounts", path)) == results[0]


def style_features(x: torch.Tensor) -> np.ndarray:
    """Label-free low-level statistics: colour, contrast, edges, saturation, blockiness."""
    x = x.numpy()
    mean, std = x.mean((2, 3)), x.std((2, 3))
    grad_x = np.abs(np.diff(x, axis=3)).mean((1, 2, 3))
    grad_y = np.abs(np.diff(x, axis=2)).mean((1, 2, 3))
    saturation = (x.max(1) - x.min(1)).mean((1, 2))
    laplacian = np.abs(4 * x[..., 1:-1, 1:-1] - x[..., :-2, 1:-1] - x[..., 2:, 1:-1]
                       - x[..., 1:-1, :-2] - x[..., 1:-1, 2:]).mean((1, 2, 3))
    in_block = np.abs(x[..., 0::2] - x[..., 1::2]).mean((1, 2, 3))
    extra = np.stack([grad_x, grad_y, saturation, laplacian, in_block], 1)
    return np.concatenate([mean, std, extra], 1)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_domains_differ_in_style(built, name):
    """Every pair of domains is told apart from label-free image statistics alone.

    A nearest-centroid rule fitted on half of the images of two domains must name the
    domain of the other half with accuracy >= 0.75 (chance: 0.5); two domains drawn in the
    same style would fail this.
    """
    ds = built[name]
    features = [style_features(env.tensors[0]) for env in ds]
    for i, j in itertools.combinations(range(len(ds)), 2):
        f = np.concatenate([features[i], features[j]])
        f = (f - f.mean(0)) / (f.std(0) + 1e-8)
        domain = np.repeat([0, 1], [len(features[i]), len(features[j])])
        fit = np.arange(len(f)) % 2 == 0
        centroids = np.stack([f[fit & (domain == k)].mean(0) for k in (0, 1)])
        guess = ((f[~fit][:, None] - centroids[None]) ** 2).sum(-1).argmin(1)
        accuracy = (guess == domain[~fit]).mean()
        assert accuracy >= 0.75, (name, ds.ENVIRONMENTS[i], ds.ENVIRONMENTS[j], accuracy)


def test_domain_mean_images_differ(built):
    # the outline-only sketch domain is far brighter on average than the filled photo domain
    shapes = built["EmbeddedShapes"]
    means = {env: shapes[i].tensors[0].mean(0) for i, env in enumerate(shapes.ENVIRONMENTS)}
    assert (means["sketch"] - means["photo"]).abs().mean() > 1.0
    assert (means["sketch"] - means["cartoon"]).abs().mean() > 0.4


def test_split_dataset_works(built):
    env = built["EmbeddedArrows"][1]
    out, inn = split_dataset(env, int(len(env) * 0.2), seed=3)
    assert len(out) == int(len(env) * 0.2) and len(out) + len(inn) == len(env)
    assert not set(out.keys) & set(inn.keys)
    x, y = out[0]
    assert x.shape == (3, 32, 32) and 0 <= int(y) < 8
    assert dataset_labels(inn) == [int(env.tensors[1][k]) for k in inn.keys]


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(KeyError, match="EmbeddedShapes"):
        specs.get_spec("EmbeddedNope")


def test_preview_png(tmp_path):
    from PIL import Image

    path = embedded.save_preview(str(tmp_path / "p.png"), ["EmbeddedCounts"], per_domain=3,
                                 scale=2)
    with Image.open(path) as img:
        assert img.format == "PNG"
        assert img.size == (150 + 3 * 64, 4 * 64)
        pixels = np.asarray(img.convert("RGB"))
    # the tiles hold the images, not a blank sheet
    assert pixels[:, 150:].std() > 20


def test_a_process_reads_a_cache_file_once_until_it_changes(tmp_path, monkeypatch):
    arrays = cache.load_or_generate("EmbeddedCounts", str(tmp_path))
    path = cache.cache_path("EmbeddedCounts", str(tmp_path))
    loads = []
    real_load = np.load
    monkeypatch.setattr(np, "load", lambda *a, **k: loads.append(a[0]) or real_load(*a, **k))
    first = cache.read_cache("EmbeddedCounts", path)
    again = cache.read_cache("EmbeddedCounts", path)
    assert loads == [path] and again["x"] is first["x"]
    assert fingerprint(first) == fingerprint(arrays)
    assert not first["x"].flags.writeable  # shared between datasets: never written
    with pytest.raises(ValueError):
        first["x"][0, 0, 0, 0] = 1
    cache.write_cache("EmbeddedCounts", path, {k: arrays[k][:10] for k in ("x", "y", "env")})
    with pytest.raises(ValueError, match="images"):  # a replaced file is read again
        cache.read_cache("EmbeddedCounts", path)
    assert loads == [path, path]


def test_datasets_built_from_one_read_do_not_share_memory(tmp_path):
    from domainbed import datasets
    a = datasets.get_dataset_class("EmbeddedCounts")(str(tmp_path), [0], {})
    b = datasets.get_dataset_class("EmbeddedCounts")(str(tmp_path), [0], {})
    x_a, y_a = a[0].tensors
    x_b, y_b = b[0].tensors
    assert torch.equal(x_a, x_b) and torch.equal(y_a, y_b)
    x_a.add_(1.0)
    y_a.zero_()
    assert not torch.equal(x_a, x_b) and not torch.equal(y_a, y_b)
