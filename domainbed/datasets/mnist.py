"""RotatedMNIST and ColoredMNIST, built from MNIST's idx files in torchvision's layout.

The files are read from ``<root>/MNIST/raw/`` (as ``torchvision.datasets.MNIST`` stores them,
plain or ``.gz``); nothing is downloaded here. Train and test images are concatenated, shuffled
with ``np.random.RandomState(0).permutation`` and dealt into interleaved shards
(``shuffle[i::n_envs]``), one per environment. Every random draw uses a local generator, so
the data are identical in every process whatever the global seeds.
"""

import gzip
import os
from typing import Tuple

import numpy as np
import torch
from torch.utils.data import TensorDataset

from domainbed.datasets.base import MultipleDomainDataset, register_dataset
from domainbed.errors import DataError
from domainbed.lib.seeds import seed_hash

MNIST_SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
DOWNLOAD_HINT = ("download it with "
                 "`python -m domainbed.scripts.download --data_dir {root} --datasets MNIST`")

# idx type code -> numpy big-endian dtype
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str) -> np.ndarray:
    """The array stored in the idx file ``path`` (gzip-compressed if it ends in ``.gz``)."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read MNIST file {path!r} ({exc}); delete it and download "
                        f"MNIST again") from exc
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise DataError(f"{path!r} is not an idx file; delete it and download MNIST again")
    dtype, ndim = np.dtype(_IDX_DTYPES[data[2]]), data[3]
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(data[4:header], dtype=">u4"))
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(shape) != ndim or len(data) != expected:
        raise DataError(f"{path!r} is truncated or malformed ({len(data)} bytes, expected "
                        f"{expected}); delete it and download MNIST again")
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def mnist_raw_dir(root: str) -> str:
    return os.path.join(root, "MNIST", "raw")


def _idx_path(raw_dir: str, name: str, root: str) -> str:
    for candidate in (name, name + ".gz"):
        path = os.path.join(raw_dir, candidate)
        if os.path.isfile(path):
            return path
    raise DataError(f"MNIST file {os.path.join(raw_dir, name)!r} not found; "
                    + DOWNLOAD_HINT.format(root=root))


def load_mnist(root: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """MNIST train then test: uint8 images ``[N, 28, 28]`` and int64 labels ``[N]``."""
    if root is None:
        raise DataError("MNIST datasets read the MNIST files: pass --data_dir")
    raw_dir = mnist_raw_dir(root)
    if not os.path.isdir(raw_dir):
        raise DataError(f"MNIST folder {raw_dir!r} does not exist; "
                        + DOWNLOAD_HINT.format(root=root))
    images, labels = [], []
    for image_name, label_name in MNIST_SPLITS.values():
        x = read_idx(_idx_path(raw_dir, image_name, root))
        y = read_idx(_idx_path(raw_dir, label_name, root))
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DataError(f"MNIST files {image_name}/{label_name} in {raw_dir!r} do not match "
                            f"(shapes {x.shape}, {y.shape}); delete them and download MNIST again")
        images.append(torch.from_numpy(x.astype(np.uint8)))
        labels.append(torch.from_numpy(y.astype(np.int64)))
    return torch.cat(images), torch.cat(labels)


class MNISTEnvironment(TensorDataset):
    """``TensorDataset(x, y)`` that also exposes the labels as ``targets``."""

    @property
    def targets(self) -> torch.Tensor:
        return self.tensors[1]


class MultipleEnvironmentMNIST(MultipleDomainDataset):
    N_STEPS = 5001
    CHECKPOINT_FREQ = 100

    def __init__(self, root, test_envs, hparams):
        super().__init__()
        images, labels = load_mnist(root)
        n_envs = len(self.ENVIRONMENTS)
        if len(images) < n_envs:
            raise DataError(f"MNIST in {root!r} has {len(images)} images, fewer than the "
                            f"{n_envs} environments of {type(self).__name__}")
        shuffle = torch.from_numpy(np.random.RandomState(0).permutation(len(images)))
        images, labels = images[shuffle], labels[shuffle]
        self.datasets = [self.make_environment(images[i::n_envs], labels[i::n_envs], i)
                         for i in range(n_envs)]
        self.input_shape = self.INPUT_SHAPE

    def make_environment(self, images: torch.Tensor, labels: torch.Tensor,
                         env_index: int) -> MNISTEnvironment:
        raise NotImplementedError


@register_dataset(environments=("0", "15", "30", "45", "60", "75"))
class RotatedMNIST(MultipleEnvironmentMNIST):
    """Environment ``i`` is its shard rotated by ``ENVIRONMENTS[i]`` degrees; 10 classes."""

    INPUT_SHAPE = (1, 28, 28)

    def __init__(self, root, test_envs, hparams):
        super().__init__(root, test_envs, hparams)
        self.num_classes = 10
        from domainbed.datasets.input_spec import InputSpec
        # an image file as these tensors are: grey, 28 x 28, pixels / 255
        self.input_spec = InputSpec(28, 1, (0.0,), (1.0,), source="MNIST pixels in [0, 1]")

    def make_environment(self, images, labels, env_index):
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as TF
        x = images.unsqueeze(1).float().div_(255.0)
        x = TF.rotate(x, float(self.ENVIRONMENTS[env_index]),
                      interpolation=InterpolationMode.BILINEAR, fill=[0.0])
        return MNISTEnvironment(x, labels.clone())


@register_dataset(environments=("+90%", "+80%", "-90%"))
class ColoredMNIST(MultipleEnvironmentMNIST):
    """Binary label ``digit < 5`` flipped with probability 0.25; colour = label XOR
    Bernoulli(p_env); the channel that is not the colour is zeroed. 2 classes.

    Unlike upstream (2 x 14 x 14), the images keep their 28 x 28 resolution.
    """

    INPUT_SHAPE = (2, 28, 28)
    COLOR_FLIP_PROBS = {"+90%": 0.1, "+80%": 0.2, "-90%": 0.9}
    LABEL_FLIP_PROB = 0.25

    def __init__(self, root, test_envs, hparams):
        super().__init__(root, test_envs, hparams)
        self.num_classes = 2

    def make_environment(self, images, labels, env_index):
        name = self.ENVIRONMENTS[env_index]
        generator = torch.Generator().manual_seed(seed_hash("ColoredMNIST", env_index))
        n = len(labels)

        def bernoulli(p):
            return (torch.rand(n, generator=generator) < p).long()

        y = (labels < 5).long() ^ bernoulli(self.LABEL_FLIP_PROB)
        colors = y ^ bernoulli(self.COLOR_FLIP_PROBS[name])
        x = torch.stack([images, images], dim=1).float().div_(255.0)
        x[torch.arange(n), 1 - colors] = 0.0
        return MNISTEnvironment(x, y)
