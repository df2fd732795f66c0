"""RotatedMNIST and ColoredMNIST from tiny MNIST idx fixtures."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from domainbed.datasets import get_dataset_class, num_environments
from domainbed.datasets.mnist import ColoredMNIST, RotatedMNIST, load_mnist, read_idx
from domainbed.errors import DataError
from domainbed.lib.misc import dataset_labels, seed_hash, split_dataset
from tests.fixtures.data import make_mnist_fixture

from tests.fixtures.paths import REPO


@pytest.fixture(scope="module")
def mnist_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("mnist")
    images, labels = make_mnist_fixture(str(root), n_train=50, n_test=22)
    return str(root), images, labels


def test_registered_with_their_environments():
    assert get_dataset_class("RotatedMNIST") is RotatedMNIST
    assert get_dataset_class("ColoredMNIST") is ColoredMNIST
    assert num_environments("RotatedMNIST") == 6 and num_environments("ColoredMNIST") == 3
    assert ColoredMNIST.INPUT_SHAPE == (2, 28, 28) and RotatedMNIST.INPUT_SHAPE == (1, 28, 28)


def test_read_idx_plain_and_gzip(tmp_path):
    images, labels = make_mnist_fixture(str(tmp_path / "plain"), 5, 3)
    gz_images, _ = make_mnist_fixture(str(tmp_path / "gz"), 5, 3, compress=True)
    x, y = load_mnist(str(tmp_path / "plain"))
    xg, yg = load_mnist(str(tmp_path / "gz"))
    assert torch.equal(x, torch.from_numpy(images)) and torch.equal(xg, x)
    assert y.tolist() == labels.tolist() and yg.tolist() == labels.tolist()
    assert x.dtype == torch.uint8 and y.dtype == torch.int64


def test_rotated_mnist_environments_are_rotated_shards(mnist_root):
    root, images, labels = mnist_root
    ds = RotatedMNIST(root, [0], {})
    assert len(ds) == 6 and ds.num_classes == 10 and tuple(ds.input_shape) == (1, 28, 28)
    perm = np.random.RandomState(0).permutation(len(images))
    assert sum(len(env) for env in ds) == len(images)
    for i, env in enumerate(ds):
        shard = perm[i::6]
        assert env.targets.tolist() == labels[shard].tolist()
        x, y = env.tensors
        assert x.shape == (len(shard), 1, 28, 28) and x.dtype == torch.float32
        assert 0.0 <= x.min() and x.max() <= 1.0
        original = torch.from_numpy(images[shard]).float().div(255).unsqueeze(1)
        expected = TF.rotate(original, 15.0 * i, interpolation=InterpolationMode.BILINEAR,
                             fill=[0.0])
        assert torch.allclose(x, expected, atol=1e-5)
        if i == 0:
            assert torch.allclose(x, original, atol=1e-5)
        else:
            assert not torch.allclose(x, original, atol=1e-2)
    assert ds.eval_view(2) is ds[2]


def test_colored_mnist_labels_and_colors(tmp_path):
    images, digits = make_mnist_fixture(str(tmp_path), n_train=2400, n_test=600)
    ds = ColoredMNIST(str(tmp_path), [2], {})
    assert len(ds) == 3 and ds.num_classes == 2 and tuple(ds.input_shape) == (2, 28, 28)
    perm = np.random.RandomState(0).permutation(len(images))
    for i, (env, p_color) in enumerate(zip(ds, [0.1, 0.2, 0.9])):
        x, y = env.tensors
        shard = perm[i::3]
        assert x.shape == (len(shard), 2, 28, 28) and set(y.tolist()) <= {0, 1}
        # exactly one channel carries the digit, the other is zero
        red, green = x[:, 0].flatten(1).sum(1), x[:, 1].flatten(1).sum(1)
        assert torch.all((red == 0) ^ (green == 0))
        color = (green > 0).long()  # index of the lit channel
        kept = torch.from_numpy(images[shard]).float().div(255)
        lit = x[torch.arange(len(y)), color]
        assert torch.allclose(lit, kept)
        flipped_label = (y != torch.from_numpy((digits[shard] < 5).astype(np.int64))).float()
        color_differs = (color != y).float()
        assert abs(flipped_label.mean().item() - 0.25) < 0.05
        assert abs(color_differs.mean().item() - p_color) < 0.05


def test_colored_mnist_ignores_the_global_seed(mnist_root):
    root, _, _ = mnist_root
    torch.manual_seed(1)
    a = ColoredMNIST(root, [], {})
    torch.manual_seed(2)
    np.random.seed(2)
    b = ColoredMNIST(root, [], {})
    for ea, eb in zip(a, b):
        assert torch.equal(ea.tensors[0], eb.tensors[0]) and torch.equal(ea.targets, eb.targets)


DIGEST_CODE = """
import hashlib, sys, torch
from domainbed.datasets import get_dataset_class
from domainbed.lib.misc import seed_hash, split_dataset

def digest(name, root):
    ds = get_dataset_class(name)(root, [0], {})
    h = hashlib.sha256()
    for i, env in enumerate(ds):
        out, in_ = split_dataset(env, int(len(env) * 0.2), seed_hash(0, i))
        h.update(str(out.keys).encode()); h.update(str(in_.keys).encode())
        h.update(env.tensors[0].numpy().tobytes()); h.update(env.targets.numpy().tobytes())
    return h.hexdigest()
"""


@pytest.mark.slow
def test_data_and_splits_are_identical_across_processes(mnist_root):
    root, _, _ = mnist_root
    script = DIGEST_CODE + ("torch.manual_seed(123)\n"
                            "for name in sys.argv[2:]: print(digest(name, sys.argv[1]))\n")
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    names = ["ColoredMNIST", "RotatedMNIST"]
    result = subprocess.run([sys.executable, "-c", script, root, *names],
                            capture_output=True, text=True, env=env, check=True)
    namespace = {}
    exec(DIGEST_CODE, namespace)
    torch.manual_seed(7)
    here = [namespace["digest"](name, root) for name in names]
    assert result.stdout.split() == here and len(set(here)) == 2


def test_split_sizes(mnist_root):
    root, _, _ = mnist_root
    ds = RotatedMNIST(root, [0], {})
    env = ds[1]
    out, in_ = split_dataset(env, int(len(env) * 0.2), seed_hash(0, 1))
    assert len(out) == int(len(env) * 0.2) and len(out) + len(in_) == len(env)
    assert sorted(out.keys + in_.keys) == list(range(len(env)))
    assert dataset_labels(out) == [int(env.targets[k]) for k in out.keys]


def test_missing_mnist_names_the_download_command(tmp_path):
    with pytest.raises(DataError) as info:
        RotatedMNIST(str(tmp_path), [0], {})
    message = str(info.value)
    assert "python -m domainbed.scripts.download --data_dir" in message
    assert "--datasets MNIST" in message and str(tmp_path) in message


def test_missing_file_and_truncated_file(tmp_path):
    make_mnist_fixture(str(tmp_path), 10, 4)
    raw = tmp_path / "MNIST" / "raw"
    path = raw / "t10k-labels-idx1-ubyte"
    data = path.read_bytes()
    path.write_bytes(data[:-2])
    with pytest.raises(DataError, match="truncated"):
        ColoredMNIST(str(tmp_path), [], {})
    path.unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.*not found"):
        ColoredMNIST(str(tmp_path), [], {})


def test_read_idx_rejects_other_files(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(b"PK\x03\x04junk")
    with pytest.raises(DataError, match="not an idx file"):
        read_idx(str(path))
