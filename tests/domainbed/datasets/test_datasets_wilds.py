"""WILDS datasets (Camelyon17, FMoW, RxRx1, iWildCam) from fake metadata and images, read
without the wilds package; environments, classes, sizes, auxiliary use, determinism."""

import hashlib
import json
import subprocess
import sys

import pytest
import torch

from domainbed import datasets
from domainbed.errors import DataError
from tests.fixtures import datasets_extra as fx

BUILDERS = {"WILDSCamelyon": fx.make_camelyon, "WILDSFMoW": fx.make_fmow,
            "WILDSRxRx1": fx.make_rxrx1, "WILDSiWildCam": fx.make_iwildcam}
# environments, sizes, classes of each fixture
EXPECTED = {
    "WILDSCamelyon": ([f"hospital_{i}" for i in range(5)], [3] * 5, 2),
    # first appearance: USA(Americas)=0, KEN(Africa)=1, ZZZ(Other)=2, AUS=3, IND=4, FRA=5;
    # the seq row (USA) is left out
    "WILDSFMoW": ([f"region_{i}" for i in range(6)], [2, 2, 2, 1, 1, 2], 62),
    "WILDSRxRx1": (["HEPG2", "HUVEC"], [3, 6], 1139),
    "WILDSiWildCam": (["location_0", "location_2", "location_10"], [2, 2, 3], 182),
}


def _digest(dataset):
    h = hashlib.sha256()
    for env in dataset:
        h.update(json.dumps([(p.split("/", 1)[-1][-40:], y) for p, y in env.samples]).encode())
    return h.hexdigest()


@pytest.fixture(params=sorted(BUILDERS))
def built(request, tmp_path):
    name = request.param
    BUILDERS[name](str(tmp_path))
    return name, str(tmp_path)


def test_builds_from_the_fixture(built):
    name, root = built
    envs, sizes, n_classes = EXPECTED[name]
    cls = datasets.get_dataset_class(name)
    dataset = cls(root, [0], {"image_size": 32})
    assert dataset.ENVIRONMENTS == envs and cls.environments(root) == envs
    assert datasets.num_environments(name, root) == len(envs)
    assert [len(env) for env in dataset] == sizes
    assert dataset.num_classes == n_classes and dataset.input_shape == (3, 32, 32)
    x, y = dataset[1][0]
    assert x.shape == (3, 32, 32) and 0 <= y < n_classes
    assert torch.equal(dataset.eval_view(1)[0][0], dataset.eval_view(1)[0][0])
    assert cls.CHECKPOINT_FREQ == 100 and cls.N_STEPS == 5001


def test_labels_and_files_follow_the_metadata(tmp_path):
    fx.make_camelyon(str(tmp_path))
    dataset = datasets.get_dataset_class("WILDSCamelyon")(str(tmp_path), [], {})
    path, label = dataset[2].samples[1]
    assert path.endswith("patches/patient_024_node_1/patch_patient_024_node_1_x_101_y_201.png")
    assert label == (2 + 1) % 2
    fx.make_fmow(str(tmp_path))
    fmow = datasets.get_dataset_class("WILDSFMoW")(str(tmp_path), [], {})
    assert fmow[2].samples == [(str(tmp_path / "fmow_v1.1/images/rgb_img_2.png"), 12),
                               (str(tmp_path / "fmow_v1.1/images/rgb_img_8.png"), 61)]


def test_usable_as_auxiliary_task_and_as_target(built, tmp_path):
    """--test_envs -1 (every environment trains) and a held-out test environment."""
    from domainbed.scripts import train
    name, root = built
    for test_env, out in (("-1", "aux"), ("0", "target")):
        assert train.main(["--dataset", name, "--data_dir", root, "--test_envs", test_env,
                           "--steps", "2", "--output_dir", str(tmp_path / out), "--hparams",
                           '{"image_size": 32, "backbone": "tiny_cnn", "batch_size": 2}']) == 0
        assert (tmp_path / out / "done").exists()


def test_same_samples_in_another_process(tmp_path):
    for build in BUILDERS.values():
        build(str(tmp_path))
    names = sorted(BUILDERS)
    here = [_digest(datasets.get_dataset_class(n)(str(tmp_path), [], {})) for n in names]
    code = ("import sys; from domainbed import datasets; "
            "from tests.domainbed.datasets.test_datasets_wilds import _digest; "
            "print(' '.join(_digest(datasets.get_dataset_class(n)"
            "(sys.argv[1], [], {})) for n in sys.argv[2:]))")
    there = subprocess.run([sys.executable, "-c", code, str(tmp_path), *names],
                           capture_output=True, text=True, check=True).stdout.split()
    assert here == there


def test_missing_folder_names_the_download_command(tmp_path):
    with pytest.raises(DataError, match="--datasets WILDSRxRx1"):
        datasets.get_dataset_class("WILDSRxRx1")(str(tmp_path), [], {})


def test_malformed_metadata_is_a_data_error(tmp_path):
    folder = tmp_path / "camelyon17_v1.0"
    folder.mkdir()
    (folder / "metadata.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="not the expected metadata"):
        datasets.get_dataset_class("WILDSCamelyon")(str(tmp_path), [], {})
