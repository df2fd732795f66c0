"""Decode cache (domainbed/datasets/decode_cache.py), the v2 uint8 pipeline
(tensor_transforms.py, colour_ops.py) and the loaders that finish uint8 batches."""

import hashlib
import logging
import math
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as v1
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F2

from domainbed.datasets import colour_ops, decode_cache, get_dataset_class
from domainbed.datasets import image_folder as imf
from domainbed.datasets import tensor_transforms as TT
from domainbed.datasets import transforms as T
from domainbed.errors import DataError
from domainbed.lib.fast_data_loader import (SeededDataset, StepBatchSampler, eval_loader,
                                            infinite_loader)
from tests.fixtures.data import make_image_folder_fixture

from tests.fixtures.paths import REPO
SIDE_32 = decode_cache.cache_side(32, T.CROP_SCALE[0], T.CROP_RATIO[0])  # 45


def smooth_image(width: int, height: int, seed: int) -> Image.Image:
    """A photo-like RGB image: colour gradients, a disc, mild noise."""
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    colours = rng.uniform(0, 255, (3, 3))
    field = (colours[:, 0] * (xx / width)[..., None] + colours[:, 1] * (yy / height)[..., None]
             + colours[:, 2] * 0.3)
    disc = ((xx - width / 2) ** 2 + (yy - height / 3) ** 2) < (min(width, height) / 4) ** 2
    field[disc] = rng.uniform(0, 255, 3)
    field += rng.normal(0, 4, field.shape)
    return Image.fromarray(np.clip(field / 1.3, 0, 255).astype(np.uint8))


def build_folder(root, sizes=((8, 8),), envs=("e0", "e1"), classes=("a", "b")):
    """``<root>/<env>/<class>/img_<k>.png`` with one image per entry of ``sizes``."""
    paths = []
    for e, env in enumerate(envs):
        for c, cls in enumerate(classes):
            for k, (w, h) in enumerate(sizes):
                path = os.path.join(root, env, cls, f"img_{k}.png")
                os.makedirs(os.path.dirname(path), exist_ok=True)
                smooth_image(w, h, 1000 * e + 100 * c + k).save(path)
                paths.append(path)
    return paths


def folder_dataset(root, **hparams):
    return get_dataset_class("ImageFolder")(str(root), [], dict(hparams))


def stores(root):
    folder = os.path.join(str(root), decode_cache.CACHE_FOLDER)
    return sorted(n for n in os.listdir(folder) if n.endswith(".u8")) if os.path.isdir(
        folder) else []


# -- geometry of the stored images ---------------------------------------------------------

def test_cache_side_keeps_every_training_crop_at_least_the_output_size():
    assert decode_cache.cache_side(224, 0.7, 3 / 4) == 310
    assert SIDE_32 == 45
    assert decode_cache.stored_size(100, 40, 45) == (100, 40)  # shorter side <= 45: as is
    assert decode_cache.stored_size(500, 400, 310) == (388, 310)
    assert decode_cache.stored_size(400, 500, 310) == (310, 388)
    crop = v2.RandomResizedCrop(224, scale=T.CROP_SCALE, ratio=T.CROP_RATIO)
    torch.manual_seed(0)
    for width, height in [(388, 310), (310, 310), (310, 700), (1000, 310)]:
        image = torch.zeros(3, height, width, dtype=torch.uint8)
        for _ in range(300):
            p = crop.make_params([image])
            assert min(p["height"], p["width"]) >= 224


# -- the cache reproduces the decoded pixels ----------------------------------------------

def test_cache_reproduces_decoded_pixels_and_resizes_only_large_images(tmp_path):
    paths = build_folder(tmp_path, sizes=((8, 8), (40, 30), (120, 90)))
    ds = folder_dataset(tmp_path, decode_cache=True, image_size=32)
    loader = ds[0].loader
    assert isinstance(loader, decode_cache.CachedLoader) and len(stores(tmp_path)) == 1
    for path in paths:
        decoded = imf.pil_loader(path)
        cached = loader(path)
        assert cached.dtype == torch.uint8 and cached.shape[0] == 3
        if min(decoded.size) <= SIDE_32:  # stored as decoded
            expected = np.asarray(decoded)
        else:  # shorter side SIDE_32, aspect ratio kept, Lanczos
            size = decode_cache.stored_size(*decoded.size, SIDE_32)
            assert size == (60, 45)
            expected = np.asarray(decoded.resize(size, Image.Resampling.LANCZOS))
        assert np.array_equal(cached.permute(1, 2, 0).numpy(), expected)
    assert ds.eval_view(0).loader is loader  # eval views read the same store


def test_cached_and_uncached_batches_are_identical_for_images_within_the_side(tmp_path):
    build_folder(tmp_path, sizes=((8, 8), (40, 30), (20, 44)))
    plain = folder_dataset(tmp_path, image_size=32)
    cached = folder_dataset(tmp_path, image_size=32, decode_cache=True)
    for env in range(2):
        a = infinite_loader(plain[env], 4, 7, env, 3, 0)
        b = infinite_loader(cached[env], 4, 7, env, 3, 0)
        for _ in range(3):
            (xa, ya), (xb, yb) = next(a), next(b)
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
        va = torch.cat([x for x, _ in eval_loader(plain.eval_view(env), 5, 0)])
        vb = torch.cat([x for x, _ in eval_loader(cached.eval_view(env), 5, 0)])
        assert torch.equal(va, vb)


# -- invalidation, corruption, concurrency --------------------------------------------------

def test_store_is_rebuilt_when_a_file_changes_and_the_stale_one_removed(tmp_path):
    paths = build_folder(tmp_path)
    folder_dataset(tmp_path, decode_cache=True, image_size=32)
    first = stores(tmp_path)
    assert len(first) == 1
    folder_dataset(tmp_path, decode_cache=True, image_size=32)  # unchanged: reused
    assert stores(tmp_path) == first
    Image.new("RGB", (8, 8), (10, 200, 30)).save(paths[0])
    os.utime(paths[0], ns=(1, 10 ** 18))  # a distinct mtime even on coarse clocks
    ds = folder_dataset(tmp_path, decode_cache=True, image_size=32)
    second = stores(tmp_path)
    assert len(second) == 1 and second != first
    assert ds[0].loader(paths[0])[:, 0, 0].tolist() == [10, 200, 30]
    # another image size is another store; both stay
    folder_dataset(tmp_path, decode_cache=True, image_size=16)
    assert len(stores(tmp_path)) == 2


def test_a_store_with_a_bad_header_or_size_is_rebuilt(tmp_path, caplog):
    paths = build_folder(tmp_path)
    ds = folder_dataset(tmp_path, decode_cache=True, image_size=32)
    store_path = ds[0].loader.store.path
    expected = ds[0].loader(paths[0]).clone()
    for damage in ("truncate", "magic", "header"):
        with open(store_path, "r+b") as f:
            if damage == "truncate":
                f.truncate(os.path.getsize(store_path) - 7)
            elif damage == "magic":
                f.write(b"NOTACACH")
            else:
                f.seek(-3, os.SEEK_END)
                f.write(b"}}}")
        with caplog.at_level(logging.WARNING, logger="domainbed.datasets.decode_cache"):
            rebuilt = folder_dataset(tmp_path, decode_cache=True, image_size=32)
        assert "invalid" in caplog.text and "rebuilding" in caplog.text
        caplog.clear()
        assert torch.equal(rebuilt[0].loader(paths[0]), expected)
        rebuilt[0].loader.store.verify()


def test_a_store_with_corrupt_pixels_is_refused_with_the_fix(tmp_path):
    paths = build_folder(tmp_path)
    ds = folder_dataset(tmp_path, decode_cache=True, image_size=32)
    store = ds[0].loader.store
    offset = int(store.index[0][0])
    with open(store.path, "r+b") as f:
        f.seek(offset + 5)
        byte = f.read(1)
        f.seek(offset + 5)
        f.write(bytes([byte[0] ^ 0xFF]))
    fresh = folder_dataset(tmp_path, decode_cache=True, image_size=32)  # header still valid
    with pytest.raises(DataError) as info:
        fresh[0].loader(store.paths[0])
    message = str(info.value)
    assert store.path in message and "corrupt" in message and "delete the file" in message
    assert "\n" not in message
    with pytest.raises(DataError):
        fresh[0].loader.store.verify()
    os.unlink(store.path)  # the fix the message names
    again = folder_dataset(tmp_path, decode_cache=True, image_size=32)
    again[0].loader.store.verify()
    assert np.array_equal(again[0].loader(paths[0]).permute(1, 2, 0).numpy(),
                          np.asarray(imf.pil_loader(paths[0])))


def _read_in_child(store, i):
    store.view(i)


def test_store_views_are_read_only_copies_are_not_and_forked_readers_share_verification(
        tmp_path):
    import multiprocessing
    paths = build_folder(tmp_path, sizes=((20, 16), (30, 40)))
    ds = folder_dataset(tmp_path, decode_cache=True, image_size=32)
    loader, store = ds[0].loader, ds[0].loader.store
    view = loader.view(store.paths[1])
    assert not view.flags.writeable and view.shape == (40, 30, 3)
    assert np.array_equal(view, np.asarray(imf.pil_loader(store.paths[1])))
    copy = loader(store.paths[1])
    assert copy.numpy().flags.writeable and torch.equal(copy.permute(1, 2, 0),
                                                        torch.from_numpy(view.copy()))
    with pytest.raises(DataError, match="not in the decode cache"):
        loader.view(str(tmp_path / "elsewhere.png"))
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork on this platform")
    child = multiprocessing.get_context("fork").Process(target=_read_in_child,
                                                        args=(store, 3))
    child.start()
    child.join(30)
    assert child.exitcode == 0 and bool(store._verified[3])  # verified by the child
    # a spawned reader (a pickled store) verifies for itself
    clone = pickle.loads(pickle.dumps(store))
    clone.view(0)
    assert clone._verified.tolist() == [True] + [False] * (clone.count - 1)
    assert len(paths) == clone.count


BUILD_SCRIPT = """
import logging, os, sys, time
from domainbed.datasets import get_dataset_class
root, start = sys.argv[1], sys.argv[2]
logging.basicConfig(level=logging.INFO, format="%(message)s")
while not os.path.exists(start):
    time.sleep(0.005)
ds = get_dataset_class("ImageFolder")(root, [], {"decode_cache": True, "image_size": 32})
ds[0].loader.store.verify()
print("STORE", ds[0].loader.store.path)
"""


@pytest.mark.slow
def test_concurrent_builders_build_one_valid_store(tmp_path):
    root = tmp_path / "data"
    build_folder(root, sizes=[(64, 48)] * 12, envs=("e0", "e1", "e2"))
    start = tmp_path / "go"
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    procs = [subprocess.Popen([sys.executable, "-c", BUILD_SCRIPT, str(root), str(start)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=env) for _ in range(3)]
    start.write_text("go")
    outputs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    store_lines = {line for out in outputs for line in out.splitlines()
                   if line.startswith("STORE")}
    assert len(store_lines) == 1
    assert sum(out.count("decode cache: built") for out in outputs) == 1
    cache_dir = root / decode_cache.CACHE_FOLDER
    assert [n for n in os.listdir(cache_dir) if ".tmp-" in n] == []
    folder_dataset(root, decode_cache=True, image_size=32)[0].loader.store.verify()


def test_a_store_built_by_several_processes_equals_one_built_by_one(tmp_path):
    paths = build_folder(tmp_path / "data", sizes=[(8, 8), (50, 40)] * 9,
                         envs=("e0", "e1"))  # 72 images: enough for the decoding pool
    one = decode_cache.open_store(paths, str(tmp_path / "data"), SIDE_32,
                                  imf.checked_pil_loader, str(tmp_path / "one"), workers=1)
    two = decode_cache.open_store(paths, str(tmp_path / "data"), SIDE_32,
                                  imf.checked_pil_loader, str(tmp_path / "two"), workers=2)
    assert one.paths == two.paths == sorted(paths)
    assert np.array_equal(one.index, two.index)
    for i in range(len(paths)):
        assert np.array_equal(one[i], two[i])


def test_store_pickles_for_spawned_workers_and_detects_a_replaced_file(tmp_path):
    paths = build_folder(tmp_path)
    loader = folder_dataset(tmp_path, decode_cache=True, image_size=32)[0].loader
    clone = pickle.loads(pickle.dumps(loader))
    assert torch.equal(clone(paths[1]), loader(paths[1]))
    other = pickle.loads(pickle.dumps(loader))
    os.replace(loader.store.path, loader.store.path + ".moved")
    with open(loader.store.path, "wb") as f:
        f.write(open(loader.store.path + ".moved", "rb").read())
    with pytest.raises(DataError, match="replaced while in use"):
        other(paths[1])


def test_cache_dir_from_the_environment_and_option_errors(tmp_path, monkeypatch):
    data = tmp_path / "data"
    build_folder(data)
    monkeypatch.setenv(decode_cache.CACHE_DIR_ENV, str(tmp_path / "cache"))
    ds = folder_dataset(data, decode_cache=True, image_size=32)
    assert ds[0].loader.store.path.startswith(str(tmp_path / "cache" / "data-"))
    assert not os.path.exists(data / decode_cache.CACHE_FOLDER)
    with pytest.raises(DataError, match="decode_cache' must be true or false"):
        folder_dataset(data, decode_cache="yes")
    with pytest.raises(DataError, match="drop the custom loader"):
        get_dataset_class("ImageFolder")(str(data), [], {"decode_cache": True},
                                         loader=imf.pil_loader)


# -- the v2 pipeline: shapes, ranges, distributions ---------------------------------------

@pytest.mark.parametrize("size,channels", [(224, 3), (32, 3), (32, 1)])
def test_v2_pipelines_give_the_shapes_and_value_ranges_of_v1(size, channels):
    image = smooth_image(500, 400, 3)
    mean, std = (T.IMAGENET_MEAN, T.IMAGENET_STD) if channels == 3 else (T.GREY_MEAN,
                                                                          T.GREY_STD)
    low = torch.tensor([-m / s for m, s in zip(mean, std)]).view(-1, 1, 1)
    high = torch.tensor([(1 - m) / s for m, s in zip(mean, std)]).view(-1, 1, 1)
    torch.manual_seed(0)
    for ours, ref in [(T.tensor_train_transform(size, channels), T.train_transform(size,
                                                                                   channels)),
                      (T.tensor_eval_transform(size, channels), T.eval_transform(size,
                                                                                 channels))]:
        for inpt in (image, TT.to_uint8_chw(image)):
            x = ours(inpt)
            assert type(x) is torch.Tensor and x.dtype == torch.float32 and x.is_contiguous()
            assert x.shape == ref(image).shape == (channels, size, size)
            assert bool(((x >= low - 1e-5) & (x <= high + 1e-5)).all())


def test_v2_eval_transform_matches_the_pil_one_within_a_grey_level():
    image = smooth_image(300, 200, 5)
    ours = T.tensor_eval_transform()(image)
    ref = T.eval_transform()(image)
    std = torch.tensor(T.IMAGENET_STD).view(3, 1, 1)
    levels = ((ours - ref) * std * 255).abs()
    assert levels.max() <= 1.5 and levels.mean() < 0.1


def _crop_boxes(transform, image, seeds):
    """Relative (area, aspect ratio, flipped) of each output, read from pixels that encode
    their source row (channel 0) and column (channel 1)."""
    out = []
    for seed in seeds:
        torch.manual_seed(seed)
        x = transform(image)
        x = torch.as_tensor(np.array(x)).permute(2, 0, 1) if isinstance(x, Image.Image) \
            else x
        rows, cols = x[0].float(), x[1].float()
        n = x.shape[-1]  # nearest sampling at pixel centres spans (n - 1) / n of the box
        h = (rows.max() - rows.min()) * n / (n - 1)
        w = (cols.max() - cols.min()) * n / (n - 1)
        flipped = bool(cols[:, 0].mean() > cols[:, -1].mean())
        out.append(((h * w / (200 * 250)).item(), (w / h).item(), flipped))
    return np.array(out)


def _ks(a, b) -> float:
    """Two-sample Kolmogorov-Smirnov statistic."""
    grid = np.sort(np.concatenate([a, b]))
    cdf = lambda s: np.searchsorted(np.sort(s), grid, side="right") / len(s)  # noqa: E731
    return float(np.abs(cdf(a) - cdf(b)).max())


def test_v2_crop_and_flip_distribution_matches_v1():
    yy, xx = np.mgrid[0:200, 0:250]
    pixels = np.stack([yy, xx, np.full_like(xx, 128)], -1).astype(np.uint8)
    image = Image.fromarray(pixels)
    ref = v1.Compose([v1.RandomResizedCrop(64, scale=T.CROP_SCALE, ratio=T.CROP_RATIO,
                                           interpolation=v1.InterpolationMode.NEAREST),
                      v1.RandomHorizontalFlip()])
    ours = v2.Compose([TT.to_uint8_chw,
                       TT.RandomResizedCrop(64, scale=T.CROP_SCALE, ratio=T.CROP_RATIO,
                                            interpolation=v2.InterpolationMode.NEAREST),
                       v2.RandomHorizontalFlip()])
    n = 300
    a = _crop_boxes(ref, image, range(n))
    b = _crop_boxes(ours, image, range(10 ** 6, 10 ** 6 + n))  # independent draws
    critical = 1.95 * math.sqrt(2 / n)  # KS two-sample test at alpha = 0.001
    assert _ks(a[:, 0], b[:, 0]) < critical and _ks(a[:, 1], b[:, 1]) < critical
    # crops that do not fit are redrawn, so the mean area is below 0.85, alike for both
    assert abs(a[:, 0].mean() - b[:, 0].mean()) < 0.02
    for boxes in (a, b):
        assert 0.68 <= boxes[:, 0].min() and boxes[:, 0].max() <= 1.02
        assert abs(boxes[:, 2].mean() - 0.5) < 0.1
    # the channels-last copy does not change the bilinear output
    torch.manual_seed(4)
    fast = TT.RandomResizedCrop(64, scale=T.CROP_SCALE, ratio=T.CROP_RATIO)
    params = fast.make_params([TT.to_uint8_chw(image)])
    assert torch.equal(fast.transform(TT.to_uint8_chw(image), params),
                       v2.RandomResizedCrop.transform(fast, TT.to_uint8_chw(image), params))


def test_normalize_equals_v2_to_dtype_and_normalize_with_or_without_a_buffer():
    norm = TT.Normalize(T.IMAGENET_MEAN, T.IMAGENET_STD)
    torch.manual_seed(0)
    batch = torch.randint(0, 256, (4, 3, 20, 24), dtype=torch.uint8)
    ref = v2.Normalize(T.IMAGENET_MEAN, T.IMAGENET_STD)(
        v2.ToDtype(torch.float32, scale=True)(batch))
    for inpt in (batch, batch.contiguous(memory_format=torch.channels_last), batch[1]):
        x = norm(inpt)
        assert x.dtype == torch.float32 and x.is_contiguous()
        assert (x - (ref if inpt.dim() == 4 else ref[1])).abs().max() < 1e-5
        out = torch.full(inpt.shape, float("nan"))
        assert norm(inpt, out=out) is out and torch.equal(out, x)
        # whole-plane factors, multiply then add: the numbers of (C, 1, 1) factors
        assert torch.equal(x, inpt.float() * norm.scale + norm.shift)
    other = torch.randint(0, 256, (2, 3, 9, 7), dtype=torch.uint8)  # another size next
    assert torch.equal(norm(other), other.float() * norm.scale + norm.shift)


def test_colour_kernels_match_torchvision():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 24, 32)
    x[0, :, :4] = 0.5  # grey pixels
    x[1, 1, :4] = x[1, 0, :4]  # ties between the maximal channels
    for factor in (0.7, 1.0, 1.3):
        for ours, ref in [(colour_ops.adjust_brightness_, F2.adjust_brightness),
                          (colour_ops.adjust_contrast_, F2.adjust_contrast),
                          (colour_ops.adjust_saturation_, F2.adjust_saturation)]:
            assert (ours(x.clone(), factor) - ref(x, factor)).abs().max() < 1e-6
            scaled = ours(x.clone() * 255, factor, 255.0) / 255
            assert (scaled - ref(x, factor)).abs().max() < 1e-5
    for hue in (-0.5, -0.3, -0.01, 0.0, 0.2, 0.5):
        assert (colour_ops.adjust_hue(x, hue) - F2.adjust_hue(x, hue)).abs().max() < 1e-5
        assert (colour_ops.adjust_hue(x * 255, hue) / 255 - F2.adjust_hue(x, hue)).abs().max() \
            < 1e-5
    with pytest.raises(ValueError, match="hue_factor"):
        colour_ops.adjust_hue(x, 0.6)


def test_color_jitter_to_float_draws_as_v2_and_computes_as_its_kernels():
    u8 = TT.to_uint8_chw(smooth_image(40, 30, 9))
    ours = TT.ColorJitterToFloat(0.3, 0.3, 0.3, 0.3)
    ref = v2.ColorJitter(0.3, 0.3, 0.3, 0.3)
    for seed in range(20):
        torch.manual_seed(seed)
        a = ours(u8)
        torch.manual_seed(seed)
        b = ref(u8.float() / 255)
        assert a.dtype == torch.float32 and (a / 255 - b).abs().max() < 1e-4
    assert ours(u8.float() / 255).dtype == torch.float32  # other inputs: v2's kernels


@pytest.mark.parametrize("size,channels", [(224, 3), (32, 1)])
def test_train_steps_equal_their_v2_composition_for_every_input_kind(size, channels):
    steps = T.tensor_train_transform(size, channels).steps
    assert isinstance(steps, TT.TrainSteps)
    reference = v2.Compose(steps.v2_steps())
    image = smooth_image(300, 220, 7)
    array = np.array(image)
    array.setflags(write=False)  # as a view of the decode cache's memory map
    inputs = (image, TT.to_uint8_chw(image), array)
    for seed in range(40):
        torch.manual_seed(seed)
        expected = reference(image)
        for inpt in inputs:
            torch.manual_seed(seed)
            x = steps(inpt)
            assert x.dtype == torch.uint8 and x.shape == (channels, size, size)
            levels = (x.int() - expected.int()).abs()
            # the same draws and kernels: equal, up to a grey level from the contrast mean
            assert levels.max() <= 1 and (levels > 0).float().mean() < 1e-4
        assert torch.rand(1).item() == reference_draw_after(reference, image, seed)


def test_the_training_crop_is_resized_without_v2_dispatch(monkeypatch):
    # torch's antialiased bilinear kernel directly (equal pixels: the test above); v2
    # keeps the mode as a string, which the fast path must recognise
    steps = T.tensor_train_transform(64, 3).steps
    monkeypatch.setattr(TT.F, "resize", lambda *a, **k: pytest.fail("v2 resize called"))
    assert steps(np.array(smooth_image(90, 80, 3))).shape == (3, 64, 64)


def reference_draw_after(transform, image, seed: int) -> float:
    """The next draw of torch's generator after ``transform`` ran from ``seed``: both
    implementations consume the same random numbers."""
    torch.manual_seed(seed)
    transform(image)
    return torch.rand(1).item()


def test_train_steps_statistics_match_the_v1_augmentation():
    yy, xx = np.mgrid[0:200, 0:250]
    pixels = np.stack([yy, xx, np.full_like(xx, 128)], -1).astype(np.uint8)
    image = Image.fromarray(pixels)
    # no colour change: the output pixels still encode their source row and column
    ours = TT.TrainSteps(64, 3, T.CROP_SCALE, T.CROP_RATIO, jitter=0.0, grey_p=0.0)
    ref = v1.Compose([v1.RandomResizedCrop(64, scale=T.CROP_SCALE, ratio=T.CROP_RATIO),
                      v1.RandomHorizontalFlip()])
    n = 300
    a = _crop_boxes(ref, image, range(n))
    b = _crop_boxes(ours, np.array(image), range(10 ** 6, 10 ** 6 + n))
    critical = 1.95 * math.sqrt(2 / n)  # KS two-sample test at alpha = 0.001
    assert _ks(a[:, 0], b[:, 0]) < critical and _ks(a[:, 1], b[:, 1]) < critical
    assert 0.66 <= b[:, 0].min() and b[:, 0].max() <= 1.04
    assert abs(b[:, 2].mean() - 0.5) < 0.1 and abs(a[:, 2].mean() - b[:, 2].mean()) < 0.15
    # grey with p = 0.1 (saturation >= 0.7 never makes a colour image grey)
    steps = T.tensor_train_transform(32, 3).steps
    colour = smooth_image(60, 50, 2)
    grey = []
    for seed in range(400):
        torch.manual_seed(seed)
        x = steps(colour).int()
        grey.append(bool((x[0] == x[1]).all() and (x[1] == x[2]).all()))
    assert abs(np.mean(grey) - T.GREY_P) < 0.05
    # colour parameters: v1's ranges, a uniform random order of the four steps
    drawn = []
    for seed in range(400):
        torch.manual_seed(seed)
        drawn.append(steps.jitter.make_params([TT.to_uint8_chw(colour)]))
    for name, centre in [("brightness_factor", 1.0), ("contrast_factor", 1.0),
                         ("saturation_factor", 1.0), ("hue_factor", 0.0)]:
        values = np.array([d[name] for d in drawn])
        assert values.min() >= centre - T.JITTER and values.max() <= centre + T.JITTER
        assert abs(values.mean() - centre) < 0.03 and values.std() > 0.15
    first = np.bincount([int(d["fn_idx"][0]) for d in drawn], minlength=4) / len(drawn)
    assert np.abs(first - 0.25).max() < 0.08


# -- loaders: batches finished in the main process, deterministic ------------------------

def test_loaders_finish_uint8_batches_to_the_items_of_the_dataset(tmp_path):
    make_image_folder_fixture(str(tmp_path), None, ["d0", "d1"], ["a", "b"], n_per_class=3,
                              size=12)
    ds = get_dataset_class("ImageFolder")(str(tmp_path), [1], {"image_size": 16})
    env = ds[0]
    items, finish = env.batch_split()
    assert items[0][0].dtype == torch.uint8 and finish is env.transform.finish
    seeded = SeededDataset(env)
    sampler = StepBatchSampler(len(env), 5, 3, 0, start_step=2)
    it = infinite_loader(env, 5, 3, 0, 2, 0)
    for step in range(2, 5):
        x, y = next(it)
        expected = seeded.__getitems__(sampler.batch_for_step(step))
        assert x.dtype == torch.float32
        assert torch.equal(x, torch.stack([e[0] for e in expected]))
        assert y.tolist() == [e[1] for e in expected]
    view = ds.eval_view(1)
    batches = list(eval_loader(view, 4, 0))
    assert torch.equal(torch.cat([x for x, _ in batches]),
                       torch.stack([view[i][0] for i in range(len(view))]))
    assert len(eval_loader(view, 4, 0)) == math.ceil(len(view) / 4)


def test_loaders_reuse_a_batch_buffer_only_once_nothing_holds_it(tmp_path):
    make_image_folder_fixture(str(tmp_path), None, ["d0", "d1"], ["a", "b"], n_per_class=3,
                              size=12)
    env = get_dataset_class("ImageFolder")(str(tmp_path), [], {"image_size": 16})[0]
    fresh, reused = infinite_loader(env, 4, 3, 0, 0, 0), infinite_loader(env, 4, 3, 0, 0, 0)
    # every kind of holder of a batch's memory, and how to read the batch back through it
    holders = [(lambda t: t, lambda k: k), (lambda t: t[1:], lambda k: k),
               (lambda t: t.numpy(), torch.from_numpy), (lambda t: t.data, lambda k: k),
               (lambda t: t.view(-1), lambda k: k.view(4, 3, 16, 16)), (None, None)]
    held, graphs = [], []
    weight = torch.ones(1, 3, 1, 1, requires_grad=True)
    for step in range(18):
        expected, _ = next(fresh)
        x, _ = next(reused)
        assert torch.equal(x, expected)
        hold, read = holders[step % len(holders)]
        if hold is not None:
            kept = hold(x)
            held.append((kept, read, expected[1:] if step % len(holders) == 1 else expected))
        if step % 4 == 0:  # an autograd graph that saved the batch (for weight's gradient)
            graphs.append(((x * weight).sum(), expected.sum(dim=(0, 2, 3))))
        del x
    for kept, read, expected in held:  # nothing held was overwritten by a later batch
        assert torch.equal(read(kept), expected)
    for loss, expected_grad in graphs:
        weight.grad = None
        loss.backward()
        assert torch.allclose(weight.grad.view(3), expected_grad, rtol=1e-5)
    ptrs = set()
    for _ in range(6):  # dropped at once: the loader cycles through two buffers
        x, _ = next(reused)
        ptrs.add(x.data_ptr())
        del x
    assert len(ptrs) <= 2


DETERMINISM_SCRIPT = """
import hashlib, sys, torch
from domainbed.datasets import get_dataset_class
from domainbed.lib.fast_data_loader import infinite_loader
ds = get_dataset_class("ImageFolder")(sys.argv[1], [], {"decode_cache": True, "image_size": 32})
it = infinite_loader(ds[1], 6, 11, 1, 4, int(sys.argv[2]))
h = hashlib.sha256()
for _ in range(3):
    x, y = next(it)
    h.update(x.numpy().tobytes()); h.update(y.numpy().tobytes())
print(h.hexdigest())
"""


@pytest.mark.slow
def test_cached_batches_are_identical_across_processes_and_worker_counts(tmp_path):
    build_folder(tmp_path, sizes=((8, 8), (60, 50), (50, 90)))
    ds = folder_dataset(tmp_path, decode_cache=True, image_size=32)  # builds the store
    it = infinite_loader(ds[1], 6, 11, 1, 4, 0)
    h = hashlib.sha256()
    for _ in range(3):
        x, y = next(it)
        h.update(x.numpy().tobytes())
        h.update(y.numpy().tobytes())
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
               PYTHONHASHSEED="123")
    for workers in ("0", "2"):
        out = subprocess.run([sys.executable, "-c", DETERMINISM_SCRIPT, str(tmp_path), workers],
                             capture_output=True, text=True, env=env, check=True).stdout
        assert out.strip() == h.hexdigest()
