"""Backbones by name: timm models from local weight files or caches (never downloaded),
ViTs at other sizes, frozen batch norm, Wide ResNet for 32x32, one-line errors."""

import os
import sys

import numpy as np
import pytest
import timm  # the test extra installs it: these tests run in CI
import torch
from PIL import Image
  # the test extra installs it: these tests run in CI

from domainbed import algorithms, datasets, hparams_registry, networks
from domainbed.errors import DomainBedError, WeightFileError
from domainbed.lib.weights import save_weights
from domainbed.networks import timm_weights
from domainbed.scripts import train as train_script


VIT, CNN = "test_vit", "test_resnet"  # timm's tiny test models (ViT-16 at 160 px, ResNet)


@pytest.fixture(autouse=True)
def _offline_caches(tmp_path, monkeypatch, one_thread):
    """Empty caches: a weight found here was put there by the test."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))


def _reference(name, seed=1, **kwargs):
    """A timm model with random weights and its classifier, as a pretrained file has it."""
    torch.manual_seed(seed)
    return timm.create_model(name, pretrained=False, **kwargs)


def _write_weights(model, path):
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if path.endswith(".safetensors"):
        save_weights(path, state)
    else:
        torch.save(state, path)
    return path


def _hparams(dataset="Debug224", **changes):
    hp = hparams_registry.default_hparams("ERM", dataset)
    hp.update(batch_size=2, **changes)
    return hp


def _train_and_predict(dataset, hp, n=2):
    algorithm = algorithms.get_algorithm_class("ERM")(dataset.input_shape, dataset.num_classes,
                                                      len(dataset) - 1, hp)
    minibatches = []
    for env in list(dataset)[1:]:
        xs, ys = zip(*[env[i] for i in range(n)])
        minibatches.append((torch.stack(xs), torch.as_tensor(ys)))
    before = [p.detach().clone() for p in algorithm.parameters()]
    for _ in range(3):
        values = algorithm.update(minibatches)
        assert np.isfinite(values["loss"])
    assert any(not torch.equal(b, p) for b, p in zip(before, algorithm.parameters()))
    algorithm.eval()
    logits = algorithm.predict(minibatches[0][0])
    assert logits.shape == (n, dataset.num_classes) and torch.isfinite(logits).all()
    return algorithm


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
@pytest.mark.parametrize("name", [VIT, CNN])
def test_timm_backbone_loads_a_local_weight_file(tmp_path, name, suffix):
    reference = _reference(name)
    path = _write_weights(reference, str(tmp_path / f"w{suffix}"))
    backbone = networks.Featurizer((3, 160, 160), {"backbone": f"timm:{name}",
                                                   "pretrained_path": path})
    loaded = backbone.model.state_dict()
    expected = {k: v for k, v in reference.state_dict().items() if k in loaded}
    assert set(expected) == set(loaded)  # the classifier of the file is dropped
    assert all(torch.equal(loaded[k], v) for k, v in expected.items())
    assert backbone.n_outputs == reference.num_features
    features = backbone(torch.randn(2, 3, 160, 160))
    assert features.shape == (2, backbone.n_outputs)


@pytest.mark.parametrize("name", [VIT, CNN])
def test_timm_backbone_trains_and_predicts_on_debug224(tmp_path, name):
    path = _write_weights(_reference(name), str(tmp_path / "w.safetensors"))
    hp = _hparams(backbone=f"timm:{name}", pretrained_path=path)
    _train_and_predict(datasets.get_dataset_class("Debug224")("", [0], hp), hp)


@pytest.mark.parametrize("image_size", [32, 224])
@pytest.mark.parametrize("name", [VIT, CNN])
def test_timm_backbone_on_an_image_folder_at_image_size(tmp_path, name, image_size):
    from tests.fixtures.data import make_image_folder_fixture
    root = make_image_folder_fixture(str(tmp_path / "data"), None, ["d0", "d1", "d2"],
                                     ["cat", "dog"], n_per_class=1, size=40)
    path = _write_weights(_reference(name), str(tmp_path / "w.safetensors"))
    hp = _hparams("ImageFolder", backbone=f"timm:{name}", pretrained_path=path,
                  image_size=image_size)
    dataset = datasets.get_dataset_class("ImageFolder")(root, [0], hp)
    assert dataset.input_shape == (3, image_size, image_size)
    assert dataset[1][0][0].shape == (3, image_size, image_size)
    algorithm = _train_and_predict(dataset, hp)
    if name == VIT:  # the patch grid follows the image; position embeddings interpolated
        grid = image_size // 16
        assert algorithm.featurizer.model.pos_embed.shape[1] == grid * grid + 1


def test_vit_position_embeddings_are_interpolated_from_the_file(tmp_path):
    reference = _reference(VIT)  # 160 px: a 10x10 grid
    path = _write_weights(reference, str(tmp_path / "w.safetensors"))
    backbone = networks.Featurizer((3, 64, 64), {"backbone": f"timm:{VIT}",
                                                 "pretrained_path": path})
    pos = backbone.model.pos_embed
    assert pos.shape == (1, 4 * 4 + 1, reference.embed_dim)
    assert torch.equal(pos[:, 0], reference.pos_embed[:, 0])  # the class token's is kept
    assert torch.equal(backbone.model.cls_token, reference.cls_token)


def test_vit_input_size_not_a_multiple_of_the_patch_is_a_clear_error():
    with pytest.raises(DomainBedError, match="multiple of it.*image_size"):
        networks.Featurizer((3, 40, 40), {"backbone": f"timm:{VIT}", "pretrained": False})


def test_weights_from_the_hugging_face_cache(tmp_path):
    reference = _reference(CNN)
    repo = reference.pretrained_cfg["hf_hub_id"]  # timm/test_resnet.r160_in1k
    folder = tmp_path / "hf" / ("models--" + repo.replace("/", "--"))
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("abc123")
    (folder / "snapshots" / "abc123").mkdir(parents=True)
    _write_weights(reference, str(folder / "snapshots" / "abc123" / "model.safetensors"))
    backbone = networks.Featurizer((3, 64, 64), {"backbone": f"timm:{CNN}"})
    assert backbone.weights_file.endswith("model.safetensors")
    assert torch.equal(backbone.model.conv1[0].weight, reference.conv1[0].weight)


def test_weights_from_the_torch_hub_cache(tmp_path):
    url = "https://example.org/weights/net-0123.pth"
    with pytest.raises(WeightFileError):
        timm_weights.locate_weights("net", None, url)
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (hub / "net-0123.pth").write_bytes(b"x")
    assert timm_weights.locate_weights("net", None, url) == str(hub / "net-0123.pth")


def test_missing_weights_fail_with_one_line_naming_each_way():
    with pytest.raises(WeightFileError) as info:
        networks.Featurizer((3, 64, 64), {"backbone": f"timm:{CNN}"})
    message = str(info.value)
    assert "\n" not in message
    for way in ("pretrained_path", "HF cache", "HF_HUB_CACHE", "timm/test_resnet.r160_in1k",
                '"pretrained": false'):
        assert way in message, way


def test_a_weight_file_of_another_model_is_refused(tmp_path):
    path = _write_weights(_reference(VIT), str(tmp_path / "vit.safetensors"))
    with pytest.raises(WeightFileError, match="does not fit.*missing"):
        networks.Featurizer((3, 64, 64), {"backbone": f"timm:{CNN}", "pretrained_path": path})


def test_greyscale_input_reuses_the_rgb_filters(tmp_path):
    reference = _reference(CNN)
    path = _write_weights(reference, str(tmp_path / "w.pth"))
    backbone = networks.Featurizer((1, 64, 64), {"backbone": f"timm:{CNN}",
                                                 "pretrained_path": path})
    conv = backbone.model.conv1[0].weight
    assert conv.shape[1] == 1 and torch.equal(conv[:, 0], reference.conv1[0].weight[:, 0])
    assert backbone(torch.randn(2, 1, 64, 64)).shape == (2, backbone.n_outputs)


@pytest.mark.parametrize("freeze", [True, False])
def test_timm_cnn_batch_norm_follows_freeze_bn(freeze):
    hp = _hparams(backbone=f"timm:{CNN}", pretrained=False, freeze_bn=freeze)
    algorithm = algorithms.get_algorithm_class("ERM")((3, 64, 64), 2, 2, hp)
    algorithm.train()
    bns = [m for m in algorithm.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(m.training != freeze for m in bns)
    mean = bns[0].running_mean.clone()
    x = torch.randn(2, 3, 64, 64) * 5 + 3
    algorithm.update([(x, torch.tensor([0, 1])), (x, torch.tensor([1, 0]))])
    assert torch.equal(mean, bns[0].running_mean) == freeze
    affine = bns[0].weight
    assert affine.requires_grad  # frozen statistics, trained affine parameters


def test_vit_layer_norm_is_left_alone_and_attn_tune_trains_only_attention():
    hp = {"backbone": f"timm:{VIT}", "pretrained": False, "freeze_bn": True,
          "vit_attn_tune": True, "vit_dropout": 0.5}
    backbone = networks.Featurizer((3, 32, 32), hp).train()
    norms = [m for m in backbone.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert norms and all(m.training for m in norms)
    trainable = [n for n, p in backbone.named_parameters() if p.requires_grad]
    assert trainable and all("attn" in n for n in trainable)
    assert backbone.dropout.p == 0.5


def test_dinov2_features_are_four_class_tokens_and_the_mean_patch_token(tmp_path):
    # upstream's DINOv2 features on a tiny ViT; its file carries DINOv2's mask token
    reference = _reference(VIT)
    state = dict(reference.state_dict(), mask_token=torch.zeros(1, reference.embed_dim))
    path = str(tmp_path / "dino.pth")
    torch.save(state, path)
    dino = networks.DinoV2((3, 32, 32), {"pretrained_path": path}, model_name=VIT).eval()
    assert dino.n_outputs == 5 * reference.embed_dim
    x = torch.randn(2, 3, 32, 32)
    features = dino(x)
    assert features.shape == (2, dino.n_outputs)
    m = dino.model  # the last block's class token after the final norm, as timm computes it
    last = m.forward_features(x)
    assert torch.allclose(features[:, 3 * m.embed_dim:4 * m.embed_dim], last[:, 0], atol=1e-5)
    assert torch.allclose(features[:, 4 * m.embed_dim:], last[:, 1:].mean(1), atol=1e-5)
    with pytest.raises(DomainBedError, match="3-channel"):
        networks.DinoV2((1, 32, 32), {"pretrained": False}, model_name=VIT)


def test_upstream_switches_select_their_backbones():
    name = networks.backbone_name
    assert name((3, 224, 224), {"vit": True, "dinov2": True}) == "dinov2"
    assert name((3, 224, 224), {"resnet50_augmix": True, "resnet18": True}) == "resnet50_augmix"
    assert name((3, 224, 224), {"resnet18": True}) == "resnet18"
    assert name((3, 96, 96), {}) == "resnet50"  # any other image size: the 224 rule
    assert name((3, 28, 28), {}) == "small_cnn" and name((3, 32, 32), {}) == "wide_resnet"
    assert name((3, 32, 32), hparams_registry.default_hparams("ERM", "EmbeddedShapes")) \
        == "tiny_cnn"  # a dataset that names its backbone keeps it
    with pytest.raises(DomainBedError, match="dinov2"):
        name((3, 224, 224), {"vit": True})


def test_resnet50_augmix_is_timm_resnet50_ram():
    backbone = networks.Featurizer((3, 64, 64), {"resnet50_augmix": True, "pretrained": False})
    assert backbone.model_name == "resnet50.ram_in1k" and backbone.n_outputs == 2048


def test_wide_resnet_16_2_for_32x32():
    backbone = networks.Featurizer((3, 32, 32), {})
    assert isinstance(backbone, networks.Wide_ResNet) and backbone.n_outputs == 128
    n_blocks = sum(isinstance(m, networks.wide_resnet.WideBasicBlock) for m in backbone.modules())
    assert n_blocks == 6  # depth 16 = 6 * 2 + 4: two blocks in each of three stages
    assert backbone(torch.randn(2, 3, 32, 32)).shape == (2, 128)


def _train_cli(tmp_path, hparams, dataset="Debug28", data_dir=None):
    argv = ["--dataset", dataset, "--steps", "2", "--output_dir", str(tmp_path / "run"),
            "--hparams", hparams]
    return train_script.main(argv + (["--data_dir", data_dir] if data_dir else []))


def _errors(capsys):
    captured = capsys.readouterr()
    lines = (captured.out + captured.err).splitlines()
    return [line for line in lines if line.startswith("error:")], lines


def test_unknown_backbone_stops_with_one_line(tmp_path, capsys):
    assert _train_cli(tmp_path, '{"backbone": "resnet51"}') != 0
    errors, lines = _errors(capsys)
    assert len(errors) == 1 and "unknown backbone 'resnet51'" in errors[0], lines
    assert "resnet50" in errors[0] and "timm:" in errors[0]
    assert not any("Traceback" in line for line in lines)


def test_timm_backbone_without_timm_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm now raises ImportError
    assert _train_cli(tmp_path, '{"backbone": "timm:resnet18"}') != 0
    errors, lines = _errors(capsys)
    assert len(errors) == 1 and "pip install timm" in errors[0], lines


def test_image_folder_of_28px_greyscale_pngs_trains_at_32_rgb(tmp_path):
    root = tmp_path / "data"
    rng = np.random.RandomState(0)
    for d in ("d0", "d1", "d2"):
        for c in ("a", "b"):
            os.makedirs(root / d / c)
            for k in range(3):
                pixels = rng.randint(0, 256, size=(28, 28)).astype(np.uint8)
                Image.fromarray(pixels, mode="L").save(root / d / c / f"{k}.png")
    hp = {"image_size": 32, "backbone": "small_cnn"}
    dataset = datasets.get_dataset_class("ImageFolder")(str(root), [0], hp)
    assert dataset.input_shape == (3, 32, 32)
    assert dataset[0][0][0].shape == (3, 32, 32) and dataset[1][0][0].shape == (3, 32, 32)
    grey = datasets.get_dataset_class("ImageFolder")(str(root), [0], dict(hp, image_channels=1))
    assert grey.input_shape == (1, 32, 32) and grey[1][0][0].shape == (1, 32, 32)
    assert _train_cli(tmp_path, '{"image_size": 32, "backbone": "small_cnn", "batch_size": 2}',
                      dataset="ImageFolder", data_dir=str(root)) == 0
    assert (tmp_path / "run" / "done").exists()


def test_feature_dropout_given_at_a_reference_width():
    """``dropout_reference_width``: the rate keeps the paper's noise-to-signal ratio on the
    logits at another feature width; without it the rate is used as is."""
    from domainbed.networks.backbones import TinyCNN, feature_dropout
    assert feature_dropout({"resnet_dropout": 0.5}, 64) == 0.5
    scaled = feature_dropout({"resnet_dropout": 0.5, "dropout_reference_width": 2048}, 64)
    assert scaled / (1 - scaled) == pytest.approx(1.0 * 64 / 2048)  # odds 1 -> 1/32
    assert feature_dropout({"resnet_dropout": 0.1, "dropout_reference_width": 2048},
                           2048) == pytest.approx(0.1)
    assert feature_dropout({"resnet_dropout": 0.0, "dropout_reference_width": 2048}, 64) == 0.0
    net = networks.Featurizer((3, 32, 32), {"backbone": "tiny_cnn", "resnet_dropout": 0.5,
                                            "dropout_reference_width": 2048})
    assert isinstance(net, TinyCNN) and net.feature_dropout == pytest.approx(1 / 33)
    hparams_registry.check_hparams_keys("ERM", "EmbeddedShapes",
                                        {"dropout_reference_width": 2048}, space="mild")
