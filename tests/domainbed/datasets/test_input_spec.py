"""The backbone's own input pipeline: timm backbones read their pretrained config's
normalisation and interpolation; every other backbone keeps ImageNet's (ResNet runs are
unchanged)."""

import numpy as np
import pytest
import timm  # the test extra installs it: these tests run in CI
import torch
from PIL import Image
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from domainbed import datasets
from domainbed.datasets import transforms as T
from domainbed.datasets.embedded.dataset import PIXEL_MEAN, PIXEL_STD, to_tensor
from domainbed.datasets.input_spec import InputSpec, image_input_spec
from domainbed.errors import DataError, DomainBedError
from tests.fixtures.data import make_image_folder_fixture

VIT = "test_vit"  # timm's tiny ViT: pretrained config mean = std = (0.5, 0.5, 0.5), bicubic


def _manual(path, size, mean, std, interpolation):
    """Resize the whole image (antialiased) and normalise, written out by hand."""
    pixels = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)
    resized = F.resize(pixels, [size, size], interpolation=interpolation, antialias=True)
    x = resized.float() / 255.0
    return (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


@pytest.fixture
def folder(tmp_path):
    return make_image_folder_fixture(str(tmp_path / "data"), None, ["d0", "d1"], ["a", "b"],
                                     n_per_class=1, size=40)


def test_a_timm_backbone_uses_its_pretrained_configs_statistics(folder):
    config = timm.data.resolve_data_config(pretrained_cfg=timm.models.get_pretrained_cfg(
        VIT).to_dict())
    assert config["mean"] != T.IMAGENET_MEAN  # the point of the test
    hparams = {"backbone": f"timm:{VIT}", "image_size": 32}
    dataset = datasets.get_dataset_class("ImageFolder")(folder, [0], hparams)
    spec = dataset.input_spec
    assert spec == InputSpec(32, 3, tuple(config["mean"]), tuple(config["std"]),
                             config["interpolation"], f"timm pretrained config of {VIT}")
    path = dataset.datasets[0].samples[0][0]
    expected = _manual(path, 32, config["mean"], config["std"],
                       v2.InterpolationMode.BICUBIC)
    # evaluation and test domains read it so; training ends in the same normalisation
    assert torch.allclose(dataset.eval_view(0)[0][0], expected, atol=1e-5)
    assert torch.allclose(dataset.eval_view(1)[0][0], _manual(
        dataset.datasets[1].samples[0][0], 32, config["mean"], config["std"],
        v2.InterpolationMode.BICUBIC), atol=1e-5)
    train_finish = dataset.datasets[1].transform.finish
    assert (train_finish.mean, train_finish.std) == (tuple(config["mean"]),
                                                     tuple(config["std"]))


def test_a_timm_backbone_without_image_size_takes_the_configs_size():
    spec = image_input_spec({"backbone": f"timm:{VIT}"})
    assert spec.image_size == 160  # test_vit's pretrained input size
    grey = image_input_spec({"backbone": f"timm:{VIT}", "image_channels": 1, "image_size": 32})
    assert grey.mean == (0.5,) and grey.std == (0.5,) and grey.channels == 1


@pytest.mark.parametrize("backbone", ["resnet50", "resnet18", "tiny_cnn", None])
def test_other_backbones_keep_imagenet_statistics_and_bilinear(folder, backbone):
    hparams = {"image_size": 24, **({"backbone": backbone} if backbone else {})}
    dataset = datasets.get_dataset_class("ImageFolder")(folder, [0], hparams)
    assert dataset.input_spec == InputSpec(24, 3, T.IMAGENET_MEAN, T.IMAGENET_STD)
    path = dataset.datasets[0].samples[0][0]
    expected = _manual(path, 24, T.IMAGENET_MEAN, T.IMAGENET_STD,
                       v2.InterpolationMode.BILINEAR)
    assert torch.allclose(dataset.eval_view(0)[0][0], expected, atol=1e-5)
    # the same tensors as the transforms every run used before (ResNet records unchanged)
    old_eval = T.tensor_eval_transform(24, 3)
    assert torch.equal(dataset.eval_view(0)[0][0], old_eval(Image.open(path)))
    torch.manual_seed(5)
    augmented = dataset.datasets[1][0][0]
    torch.manual_seed(5)
    old_train = T.tensor_train_transform(24, 3)(Image.open(dataset.datasets[1].samples[0][0]))
    assert torch.equal(augmented, old_train)


def test_the_embedded_benchmark_declares_how_its_pixels_become_tensors():
    spec = InputSpec(32, 3, (PIXEL_MEAN,) * 3, (PIXEL_STD,) * 3)
    pixels = np.random.RandomState(0).randint(0, 256, (1, 3, 32, 32)).astype(np.uint8)
    image = Image.fromarray(pixels[0].transpose(1, 2, 0))
    assert torch.allclose(spec.eval_transform()(image), to_tensor(pixels)[0], atol=1e-6)


def test_a_spec_round_trips_through_json_and_refuses_bad_values():
    spec = InputSpec(64, 1, (0.5,), (0.25,), "bicubic", "x")
    assert InputSpec.from_json(spec.to_json()) == spec
    with pytest.raises(DomainBedError, match="one value per channel"):
        InputSpec(64, 3, (0.5,), (0.25,))
    with pytest.raises(DomainBedError, match="interpolation"):
        InputSpec(64, 1, (0.5,), (0.25,), "lanczos9")
    with pytest.raises(DomainBedError, match="image_size"):
        InputSpec.from_json({"channels": 3})
    with pytest.raises(DataError, match="image_size"):
        image_input_spec({"image_size": 2})
