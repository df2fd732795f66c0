"""Export for timm and torchvision (weights created by the tests, loaded by the library
alone, the same logits as ``load_model``), and the Hugging Face hub layout, offline."""

import json
import os

import pytest
import timm  # the test extra installs it: these tests run in CI
import torch
import torchvision
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

import domainbed
from domainbed.model_folder import CARD_FILE, CONFIG_FILE, FILES, MODEL_FILE, ModelFolderError
from domainbed.model_folder.export import export
from domainbed.scripts import export as export_cli
from tests.fixtures.model_runs import CLASSES, FOLDER_HPARAMS, make_model_folder

VIT = "test_vit"


def _batch(model, data_dir):
    paths = [os.path.join(data_dir, "d0", c, "img_0.png") for c in CLASSES]
    return torch.stack([model.transform(Image.open(p)) for p in paths])


@pytest.fixture(autouse=True)
def _offline(tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))


def test_a_timm_model_exports_to_timm_alone_with_the_same_logits(image_sweep, tmp_path):
    folder = make_model_folder(tmp_path / "vit", image_sweep.data,
                               {"backbone": f"timm:{VIT}", "pretrained": False,
                                "image_size": 32}, seed=1)
    ours = domainbed.load_model(folder, "cpu")
    x = _batch(ours, image_sweep.data)
    info = export(folder, "timm")
    assert info["model"] == VIT and info["kwargs"] == {"img_size": [32, 32]}
    # what the JSON beside the file says, run with timm alone
    model = timm.create_model(VIT, pretrained=True, num_classes=3, img_size=[32, 32],
                              pretrained_cfg_overlay=dict(file=info["path"], num_classes=3))
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model(x), ours(x), atol=1e-5)
    # and strictly: no missing or unexpected key
    plain = timm.create_model(VIT, pretrained=False, num_classes=3, img_size=[32, 32])
    result = plain.load_state_dict(load_file(info["path"]), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    with open(os.path.splitext(info["path"])[0] + ".json") as f:
        written = json.load(f)
    assert written["class_names"] == CLASSES and "pretrained_cfg_overlay" in written["load"]


def test_a_torchvision_resnet50_exports_with_the_same_logits(image_sweep, tmp_path, capsys):
    folder = make_model_folder(tmp_path / "r50", image_sweep.data,
                               {"backbone": "resnet50", "pretrained": False, "image_size": 32},
                               seed=2)
    ours = domainbed.load_model(folder, "cpu")
    x = _batch(ours, image_sweep.data)
    output = tmp_path / "tv.safetensors"
    assert export_cli.main(["--model", folder, "--to", "torchvision", "--output",
                            str(output)]) == 0
    assert "torchvision.models.resnet50(num_classes=3)" in capsys.readouterr().out
    model = torchvision.models.resnet50(num_classes=3)
    model.load_state_dict(load_file(str(output)), strict=True)
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model(x), ours(x), atol=1e-5)


def test_export_refuses_what_the_library_cannot_hold(image_sweep, tmp_path, capsys):
    folder = make_model_folder(tmp_path / "tiny", image_sweep.data, FOLDER_HPARAMS)
    with pytest.raises(ModelFolderError, match="not a timm model"):
        export(folder, "timm")
    assert export_cli.main(["--model", folder, "--to", "torchvision"]) == 1
    assert "not a torchvision ResNet" in capsys.readouterr().err


def test_a_model_folder_is_a_hugging_face_hub_model_repository(image_sweep, tmp_path):
    """What ``huggingface_hub.upload_folder`` would publish, checked offline: the files at
    the top level, a config.json, a safetensors file, a card whose metadata the hub
    parses."""
    from huggingface_hub import ModelCard
    folder = make_model_folder(tmp_path / "m", image_sweep.data, FOLDER_HPARAMS)
    assert sorted(os.listdir(folder)) == sorted(FILES)
    assert all(os.path.isfile(os.path.join(folder, f)) and
               not os.path.islink(os.path.join(folder, f)) for f in FILES)
    card = ModelCard.load(os.path.join(folder, CARD_FILE))
    assert card.data.library_name == "domainbed-ratatouille"
    assert card.data.pipeline_tag == "image-classification"
    assert "# ERM single model of ImageFolder" in card.text and "@inproceedings" in card.text
    with open(os.path.join(folder, CONFIG_FILE)) as f:
        assert json.load(f)["class_names"] == CLASSES
    with safe_open(os.path.join(folder, MODEL_FILE), framework="pt") as f:
        keys = list(f.keys())
    assert keys and all(k.startswith(("featurizer.", "classifier.")) for k in keys)
