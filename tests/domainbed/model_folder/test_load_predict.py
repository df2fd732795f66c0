"""``domainbed.load_model`` / ``domainbed.predict`` and the predict command (core only)."""

import csv
import json
import os

import pytest
import torch
from PIL import Image

import domainbed
from domainbed import algorithms, datasets, hparams_registry
from domainbed.errors import DomainBedError
from domainbed.lib.fast_data_loader import eval_loader
from domainbed.lib.weights import load_file
from domainbed.model_folder import CONFIG_FILE, MODEL_FILE, ModelFolderError
from domainbed.model_folder.layout import json_text
from domainbed.scripts import predict as predict_cli
from tests.fixtures.model_runs import CLASSES, FOLDER_HPARAMS, make_model_folder


@pytest.fixture(scope="module")
def model_dir(image_sweep, tmp_path_factory):
    return make_model_folder(tmp_path_factory.mktemp("model") / "m", image_sweep.data,
                             FOLDER_HPARAMS, seed=3)


def _reference_logits(image_sweep, model_dir, env=0):
    """The logits an ERM algorithm with the folder's weights gives on environment ``env``
    as the training run's evaluation reads it."""
    hparams = dict(hparams_registry.default_hparams("ERM", "ImageFolder"), **FOLDER_HPARAMS)
    dataset = datasets.get_dataset_class("ImageFolder")(image_sweep.data, [0], hparams)
    algorithm = algorithms.get_algorithm_class("ERM")(dataset.input_shape, 3, 2, hparams)
    state, _ = load_file(os.path.join(model_dir, MODEL_FILE))
    algorithm.load_state_dict(state, strict=False)
    algorithm.eval()
    view = dataset.eval_view(env)
    with torch.no_grad():
        logits = torch.cat([algorithm.predict(x) for x, _ in eval_loader(view, 64, 0)])
    return logits, [path for path, _ in view.samples], [y for _, y in view.samples]


def test_load_model_gives_an_eval_network_with_transform_and_class_names(model_dir):
    model = domainbed.load_model(model_dir, device="cpu")
    assert isinstance(model, torch.nn.Module) and not model.training
    assert model.class_names == CLASSES
    assert model.input_spec.image_size == 16 and model.input_spec.mean == (0.485, 0.456, 0.406)
    x = model.transform(Image.new("RGB", (30, 20), (200, 10, 10)))
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32
    assert domainbed.load_model(os.path.join(model_dir, MODEL_FILE), "cpu").class_names == \
        CLASSES


def test_predict_on_a_class_folder_equals_the_evaluation_and_gives_accuracy(
        model_dir, image_sweep):
    logits, paths, labels = _reference_logits(image_sweep, model_dir)
    model = domainbed.load_model(model_dir, "cpu")
    predictions = domainbed.predict(model, os.path.join(image_sweep.data, "d0"))
    assert predictions.items == paths
    assert torch.allclose(predictions.logits, logits, atol=1e-6)
    assert predictions.indices.tolist() == logits.argmax(1).tolist()
    assert predictions.labels.tolist() == labels
    assert predictions.accuracy == pytest.approx(
        float(logits.argmax(1).eq(torch.tensor(labels)).float().mean()))
    # PIL images and a uint8 batch go through the same transform
    pictures = [Image.open(p) for p in paths[:4]]
    assert torch.allclose(domainbed.predict(model, pictures).logits, logits[:4], atol=1e-6)
    batch = torch.stack([model.transform.steps(p) for p in pictures])
    assert torch.allclose(domainbed.predict(model, batch).logits, logits[:4], atol=1e-6)


def test_the_cli_lists_and_counts_unreadable_files(model_dir, image_sweep, tmp_path, capsys):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    good = os.path.join(image_sweep.data, "d1", "dog", "img_0.png")
    output = tmp_path / "preds.csv"
    code = predict_cli.main(["--model", model_dir, "--images", good, str(bad), "--output",
                             str(output), "--topk", "2", "--no_progress"])
    captured = capsys.readouterr()
    assert code == 2
    assert "1 unreadable file(s)" in captured.err and str(bad) in captured.err
    assert "1 images predicted" in captured.out
    with open(output, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["item"] for r in rows] == [good, str(bad)]
    assert rows[0]["prediction_1"] in CLASSES and rows[0]["error"] == ""
    assert float(rows[0]["probability_1"]) >= float(rows[0]["probability_2"])
    assert rows[1]["prediction_1"] == "" and rows[1]["error"]


def test_the_cli_scores_a_dataset_split_as_the_training_split_it(model_dir, image_sweep,
                                                                 capsys):
    from domainbed.lib import misc
    from domainbed.training.setup import make_splits
    dataset = datasets.get_dataset_class("ImageFolder")(image_sweep.data, [0],
                                                        dict(FOLDER_HPARAMS))
    splits = make_splits(dataset, [0], 0, 0.2, 0.0, False)
    model = domainbed.load_model(model_dir, "cpu")
    for env, split, view in ((0, "in", splits.eval_in[0]), (1, "out", splits.eval_out[1])):
        expected = misc.accuracy(model, eval_loader(view, 64, 0))
        assert predict_cli.main(["--model", model_dir, "--data_dir", image_sweep.data,
                                 "--env", str(env), "--split", split, "--no_progress"]) == 0
        out = capsys.readouterr().out
        assert f"{100 * expected:.2f}%" in out and f"{split} split of trial seed 0" in out
    assert predict_cli.main(["--model", model_dir, "--data_dir", image_sweep.data, "--env",
                             "d2", "--split", "all", "--no_progress"]) == 0
    out = capsys.readouterr().out
    assert f"{len(dataset.eval_view(2))} images predicted" in out and "every example" in out


@pytest.mark.parametrize("change, message", [
    (lambda c: (c.update(num_classes=4, class_names=CLASSES + ["x"]),
                c["network"].update(num_classes=4)), "do not belong together"),
    (lambda c: c["network"]["hparams"].update(backbone="small_cnn"), "do not belong together"),
    (lambda c: c.update(num_classes=4, class_names=CLASSES + ["x"]), "4 classes"),
    (lambda c: c.update(format_version=99), "format_version 99"),
    (lambda c: c.pop("network"), "lacks"),
])
def test_a_folder_that_does_not_fit_is_refused(model_dir, tmp_path, change, message):
    import shutil
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    with open(broken / CONFIG_FILE) as f:
        config = json.load(f)
    change(config)
    (broken / CONFIG_FILE).write_text(json_text(config))
    with pytest.raises(ModelFolderError, match=message):
        domainbed.load_model(str(broken), "cpu")


def test_not_a_model_folder_names_the_fix(tmp_path, capsys):
    with pytest.raises(ModelFolderError, match="merge"):
        domainbed.load_model(str(tmp_path), "cpu")
    assert predict_cli.main(["--model", str(tmp_path / "none"), "--images", str(tmp_path)]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_a_model_file_holding_code_is_never_run(model_dir, tmp_path):
    """The weights are read as safetensors; a pickle in their place is refused unread."""
    import shutil
    folder = tmp_path / "m"
    shutil.copytree(model_dir, folder)
    torch.save({"x": torch.zeros(1), "f": os.system}, folder / MODEL_FILE)
    with pytest.raises(DomainBedError, match="refused"):
        domainbed.load_model(str(folder), "cpu")
