"""``merge`` (and ``inference --save``, ``report --save_models``): the soup that was scored,
saved as a model folder that a fresh process, importing nothing from domainbed_aux,
predicts with exactly as inference scored it."""

import csv
import json
import os
import subprocess
import sys

import pytest
import torch

from domainbed.lib.weights import read_metadata
from domainbed.model_folder import CONFIG_FILE, FILES, MERGE_FILE, MODEL_FILE
from domainbed.lib.digests import sha256_file
from domainbed_aux.scoring.evaluation import EvaluatorCache
from domainbed_aux.scoring.inference import infer
from domainbed_aux.scoring.runs import best_run, find_runs
from domainbed_aux.scripts import inference as inference_cli
from domainbed_aux.scripts import merge as merge_cli
from domainbed_aux.scripts import report as report_cli
from tests.fixtures.model_runs import CLASSES, N_RUNS, folder_files
from tests.fixtures.paths import REPO


def _merge(sweep, out, rule, *extra):
    assert merge_cli.main(["--dataset", "ImageFolder", "--test_env", "0", "--input_dir",
                           sweep, "--weight_selection", rule, "--output_dir", str(out),
                           "--no_progress", *extra]) == 0
    return str(out)


@pytest.fixture(scope="module")
def merged(image_sweep, tmp_path_factory):
    """The uniform, greedy and best-run model folders of the image sweep."""
    out = tmp_path_factory.mktemp("merged")
    return {rule: _merge(image_sweep.sweep, out / rule, rule)
            for rule in ("uniform", "greedy", "best_run")}


def _load_json(folder, name):
    with open(os.path.join(folder, name), encoding="utf-8") as f:
        return json.load(f)


def test_a_merge_writes_the_four_files_of_a_model_folder(merged, image_sweep):
    folder = merged["greedy"]
    assert sorted(os.listdir(folder)) == sorted(FILES)
    config = _load_json(folder, CONFIG_FILE)
    assert config["class_names"] == CLASSES and config["num_classes"] == 3
    assert config["environments"] == ["d0", "d1", "d2"] and config["test_envs"] == [0]
    assert config["network"]["backbone"] == "tiny_cnn"
    assert config["network"]["input_shape"] == [3, 16, 16]
    assert config["input"]["image_size"] == 16 and config["input"]["source"] == "imagenet"
    assert config["splits"] == {"trial_seeds": [0], "holdout_fraction": 0.2,
                                "uda_holdout_fraction": 0.0, "class_balanced": False}
    assert config["provenance"]["torch"] == torch.__version__
    merge = _load_json(folder, MERGE_FILE)
    assert merge["rule"] == "greedy" and len(merge["runs"]) == N_RUNS
    # members are named relative to the input dir, with the hash of the file averaged
    for run in merge["runs"]:
        path = os.path.join(image_sweep.sweep, run["run"], run["weights_file"])
        assert run["weights_file"] == "model_best.safetensors"
        assert run["sha256"] == sha256_file(path)
        assert run["provenance"]["torch"] == torch.__version__
    assert [t["member"] for t in merge["trace"]] == [
        r["run"] for r in sorted(merge["runs"], key=lambda r: -r["id_val_acc"])]
    assert set(merge["members"]) == {r["run"] for r in merge["runs"] if r["kept"]}
    assert merge["scores"]["test_in"]["split"] == "env0_in"
    assert not any(os.path.isabs(r["run"]) for r in merge["runs"])
    meta = read_metadata(os.path.join(folder, MODEL_FILE))
    assert meta["model_folder"] == config and meta["provenance"] == config["provenance"]


def test_two_merges_of_the_same_runs_are_byte_identical(merged, image_sweep, tmp_path):
    again = _merge(image_sweep.sweep, tmp_path / "elsewhere" / "greedy", "greedy")
    first, second = folder_files(merged["greedy"]), folder_files(again)
    assert sorted(first) == sorted(FILES)
    assert first == second


def _inference_predictions(image_sweep, rule):
    """Per-image predictions, their probabilities and the accuracy of inference's
    evaluation of the same weights on env0_in, in the split's order."""
    evaluators = EvaluatorCache()
    if rule == "best_run":
        run = best_run(find_runs([image_sweep.sweep]))
        from domainbed_aux.averaging.base import load_member
        state, reference = load_member(run.model_path), evaluators(run)
        accuracy = reference.accuracy(state, "test_in")
    else:
        result, state, runs = infer("ImageFolder", 0, [image_sweep.sweep], rule, 0,
                                    progress=False, evaluators=evaluators)
        reference, accuracy = evaluators(runs[0]), result["accuracies"]["test_in"]
    model = reference.model(state)
    (_, split, _), = reference.eval_sets("test_in")
    with torch.no_grad():
        logits = torch.cat([model.predict(x) for x, _ in reference._loader(split)])
    return logits.argmax(1).tolist(), torch.softmax(logits, 1).max(1).values.tolist(), accuracy


PREDICT_IN_A_FRESH_PROCESS = """
import sys
from domainbed.scripts import predict
data, outputs = sys.argv[1], sys.argv[2:]
for output in outputs:
    folder = output[:-len(".csv")]
    assert predict.main(["--model", folder, "--data_dir", data, "--env", "0", "--split", "in",
                         "--output", output, "--no_progress"]) == 0
loaded = sorted(m for m in sys.modules if m.split(".")[0] == "domainbed_aux")
print("DOMAINBED_AUX_MODULES", loaded)
"""


def test_predict_in_a_fresh_process_equals_inference_image_for_image(merged, image_sweep):
    outputs = [merged[rule] + ".csv" for rule in ("uniform", "greedy", "best_run")]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", PREDICT_IN_A_FRESH_PROCESS, image_sweep.data,
                           *outputs], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "DOMAINBED_AUX_MODULES []" in done.stdout
    printed = [l for l in done.stdout.splitlines() if l.startswith("accuracy on")]
    for rule, output, line in zip(("uniform", "greedy", "best_run"), outputs, printed):
        expected, probabilities, accuracy = _inference_predictions(image_sweep, rule)
        with open(output, newline="") as f:
            rows = list(csv.DictReader(f))
        assert [CLASSES.index(r["prediction"]) for r in rows] == expected, rule
        # the same numbers, not only the same classes (the CSV has 6 decimals)
        assert [float(r["probability"]) for r in rows] == pytest.approx(probabilities,
                                                                       abs=1e-6), rule
        assert f"{100 * accuracy:.2f}%" in line, (rule, line)
        assert sum(int(r["correct"]) for r in rows) / len(rows) == pytest.approx(accuracy)


def test_inference_save_writes_the_folder_merge_writes(merged, image_sweep, tmp_path,
                                                       capsys):
    assert inference_cli.main(["--dataset", "ImageFolder", "--test_env", "0", "--input_dir",
                               image_sweep.sweep, "--weight_selection", "greedy",
                               "--output", str(tmp_path / "inference.json"),
                               "--save", str(tmp_path / "saved"), "--no_progress"]) == 0
    assert "model folder:" in capsys.readouterr().out
    assert folder_files(tmp_path / "saved")[MODEL_FILE] == \
        folder_files(merged["greedy"])[MODEL_FILE]
    assert _load_json(tmp_path / "saved", MERGE_FILE)["members"] == \
        _load_json(merged["greedy"], MERGE_FILE)["members"]


def test_report_save_models_writes_each_soup_cell(merged, image_sweep, tmp_path, capsys):
    out = tmp_path / "models"
    assert report_cli.main(["--input_dir", image_sweep.sweep, "--no_cache", "--no_progress",
                            "--save_models", str(out)]) == 0
    cells = out / "ImageFolder" / "test0"
    assert sorted(os.listdir(cells)) == ["model_soups_greedy", "model_soups_uniform"]
    for rule in ("uniform", "greedy"):
        folder = cells / f"model_soups_{rule}" / "trial0"
        # the cell's soup is the weights merge averages, to the byte
        assert _load_json(folder, CONFIG_FILE) == _load_json(merged[rule], CONFIG_FILE)
        assert folder_files(folder)[MODEL_FILE] == folder_files(merged[rule])[MODEL_FILE]
        merge = _load_json(folder, MERGE_FILE)
        assert merge["selection"]["table1_row"] == f"Model soups {rule}"
        assert merge["scores"]["test_in"]["accuracy"] == pytest.approx(
            _load_json(merged[rule], MERGE_FILE)["scores"]["test_in"]["accuracy"])


def test_best_run_is_the_single_run_validation_selects(merged, image_sweep):
    merge = _load_json(merged["best_run"], MERGE_FILE)
    chosen = best_run(find_runs([image_sweep.sweep]))
    assert merge["rule"] == "single" and merge["members"] == [os.path.basename(chosen.run_dir)]
    assert merge["scores"]["id_val"]["accuracy"] == pytest.approx(chosen.id_val_acc)


def test_a_given_run_is_exported_as_is(image_sweep, tmp_path):
    assert merge_cli.main(["--run_dir", image_sweep.runs[1], "--output_dir",
                           str(tmp_path / "one"), "--weights", "final"]) == 0
    merge = _load_json(tmp_path / "one", MERGE_FILE)
    assert merge["runs"][0]["weights_file"] == "model.safetensors"
    assert merge["runs"][0]["sha256"] == sha256_file(
        os.path.join(image_sweep.runs[1], "model.safetensors"))


@pytest.mark.parametrize("argv, message", [
    (["--dataset", "ImageFolder"], "--test_env, --input_dir"),
    (["--dataset", "ImageFolder", "--test_env", "0", "--input_dir", "{sweep}",
      "--weight_selection", "greedy", "--algorithms", "CORAL"], "no finished run"),
])
def test_merge_errors_name_the_fix(image_sweep, tmp_path, capsys, argv, message):
    argv = [a.format(sweep=image_sweep.sweep) for a in argv]
    assert merge_cli.main(argv + ["--output_dir", str(tmp_path / "m")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not os.path.exists(tmp_path / "m")


def test_a_folder_holding_other_files_is_not_overwritten(image_sweep, tmp_path, capsys):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "notes.txt").write_text("mine")
    assert merge_cli.main(["--dataset", "ImageFolder", "--test_env", "0", "--input_dir",
                           image_sweep.sweep, "--output_dir", str(tmp_path / "m")]) == 1
    assert "not a model folder" in capsys.readouterr().err
    assert os.listdir(tmp_path / "m") == ["notes.txt"]


def test_inference_refuses_to_save_an_ensemble(image_sweep, tmp_path, capsys):
    assert inference_cli.main(["--dataset", "ImageFolder", "--test_env", "0", "--input_dir",
                               image_sweep.sweep, "--weight_selection", "ensemble",
                               "--save", str(tmp_path / "e"), "--no_progress"]) == 1
    assert "one network" in capsys.readouterr().err


def test_a_timm_backbone_trains_evaluates_and_predicts_with_its_own_statistics(
        image_sweep, tmp_path, monkeypatch):
    """test_vit's pretrained config normalises with mean = std = 0.5, not ImageNet's."""
    import timm
    from domainbed.datasets import transforms as T
    from domainbed.model_folder import load_model, predict
    from domainbed_aux.scoring.runs import read_run
    from tests.fixtures.model_runs import train_run
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = timm.data.resolve_data_config(pretrained_cfg=timm.models.get_pretrained_cfg(
        "test_vit").to_dict())
    mean, std = list(config["mean"]), list(config["std"])
    assert mean != list(T.IMAGENET_MEAN)
    hparams = {"backbone": "timm:test_vit", "pretrained": False, "image_size": 32,
               "batch_size": 4}
    run_dir = train_run(image_sweep.data, tmp_path / "vit_run", hparams, steps=3)
    meta = read_metadata(os.path.join(run_dir, "model.safetensors"))
    assert meta["model_input"]["mean"] == mean and meta["model_input"]["std"] == std
    assert merge_cli.main(["--run_dir", run_dir, "--output_dir", str(tmp_path / "vit")]) == 0
    saved = _load_json(tmp_path / "vit", CONFIG_FILE)["input"]
    assert (saved["mean"], saved["std"]) == (mean, std)
    assert saved["interpolation"] == config["interpolation"]
    assert saved["source"] == "timm pretrained config of test_vit"
    # predict on the files = the run's evaluation of the whole test domain, image for image
    evaluators = EvaluatorCache()
    run = read_run(run_dir)
    reference = evaluators(run)
    from domainbed_aux.averaging.base import load_member
    model = reference.model(load_member(run.model_path))
    (_, view, _), = reference.eval_sets("test_full")
    assert view.transform.finish.mean == tuple(mean)  # evaluation normalised the same way
    assert reference.dataset.datasets[1].transform.finish.mean == tuple(mean)  # and training
    with torch.no_grad():
        expected = torch.cat([model.predict(x) for x, _ in reference._loader(view)])
    predictions = predict(load_model(str(tmp_path / "vit"), "cpu"),
                          os.path.join(image_sweep.data, "d0"))
    assert torch.allclose(predictions.logits, expected, atol=1e-5)
    assert predictions.indices.tolist() == expected.argmax(1).tolist()
