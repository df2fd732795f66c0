"""Tiny on-disk dataset fixtures: MNIST idx files and image-folder trees (PNG and JPEG).

Importable by any test run from the repository root:
``from tests.fixtures_data import make_mnist_fixture``.
"""

import gzip
import os
import struct
from typing import Iterable, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def write_idx(path: str, array: np.ndarray, compress: bool = False) -> str:
    """Write a uint8 ``array`` as an idx file (``path`` + ``.gz`` when ``compress``)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    payload = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload += array.tobytes()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if compress:
        path += ".gz"
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        with open(path, "wb") as f:
            f.write(payload)
    return path


def make_mnist_fixture(root: str, n_train: int = 60, n_test: int = 12, seed: int = 0,
                       compress: bool = False) -> Tuple[np.ndarray, np.ndarray]:
    """Write fake MNIST (random 28x28 digits, labels cycling 0..9) to ``<root>/MNIST/raw``.

    Returns ``(images [n_train + n_test, 28, 28] uint8, labels [n_train + n_test] int64)``,
    train first, as the dataset classes concatenate them.
    """
    rng = np.random.RandomState(seed)
    n = n_train + n_test
    images = rng.randint(0, 256, size=(n, 28, 28)).astype(np.uint8)
    images[:, :4] = 0  # a dark band, so that rotation visibly moves pixels
    labels = (np.arange(n) % 10).astype(np.uint8)
    raw = os.path.join(root, "MNIST", "raw")
    for (image_name, label_name), sl in zip(MNIST_FILES.values(),
                                            (slice(0, n_train), slice(n_train, n))):
        write_idx(os.path.join(raw, image_name), images[sl], compress)
        write_idx(os.path.join(raw, label_name), labels[sl], compress)
    return images, labels.astype(np.int64)


def write_image(path: str, seed: int, size: int = 8) -> str:
    """A random RGB image in the format given by the extension of ``path``."""
    rng = np.random.RandomState(seed % (2 ** 31))
    pixels = rng.randint(0, 256, size=(size, size, 3)).astype(np.uint8)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    ext = os.path.splitext(path)[1].lower()
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".gif": "GIF",
           ".webp": "WEBP"}[ext]
    Image.fromarray(pixels).save(path, format=fmt)
    return path


def make_image_folder_fixture(root: str, dataset_subdir: Optional[str], envs: Sequence[str],
                              classes: Sequence[str], n_per_class: int = 2,
                              missing: Iterable[Tuple[str, str]] = (), size: int = 8) -> str:
    """Build ``<root>/<dataset_subdir>/<env>/<class>/img_<k>.{png,jpg}`` (PNG and JPEG
    alternate); ``missing`` lists ``(env, class)`` pairs left out. Returns the dataset dir.
    """
    dataset_dir = os.path.join(root, dataset_subdir) if dataset_subdir else root
    missing = {tuple(m) for m in missing}
    for e, env in enumerate(envs):
        for c, cls in enumerate(classes):
            if (env, cls) in missing:
                continue
            for k in range(n_per_class):
                ext = ".png" if k % 2 == 0 else ".jpg"
                path = os.path.join(dataset_dir, env, cls, f"img_{k}{ext}")
                write_image(path, seed=10007 * e + 101 * c + k, size=size)
    return dataset_dir


def make_dataset_fixture(data_dir: str, dataset: str, classes: Sequence[str] = ("a", "b"),
                         n_per_class: int = 2, missing: Iterable[Tuple[str, str]] = (),
                         size: int = 8) -> str:
    """An image-folder fixture laid out as the registered ``dataset`` (e.g. "PACS") expects
    it under ``data_dir``: its sub-folder and its environment names."""
    from domainbed.datasets import get_dataset_class
    cls = get_dataset_class(dataset)
    return make_image_folder_fixture(data_dir, cls.SUBDIR, cls.environment_folders(), classes,
                                     n_per_class, missing, size)
