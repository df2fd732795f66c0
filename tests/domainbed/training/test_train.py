"""The training run: outputs, resume after SIGKILL, --init_from, and bad-input errors."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from domainbed.lib import run_dir
from domainbed.lib.weights import load_file, save_weights
from domainbed.scripts import train as train_script

FAST = json.dumps({"batch_size": 8, "backbone": "tiny_cnn"})


def _read_records(path):
    with open(os.path.join(path, run_dir.RESULTS)) as f:
        return [json.loads(line) for line in f]


def _cmd(out, *extra):
    return [sys.executable, "-m", "domainbed.scripts.train", "--dataset", "Debug28",
            "--output_dir", str(out), "--hparams", FAST, *extra]


def test_train_writes_upstream_outputs(tmp_path):
    out = tmp_path / "run"
    assert train_script.main(["--dataset", "Debug28", "--steps", "7", "--checkpoint_freq", "3",
                              "--output_dir", str(out), "--hparams", FAST]) == 0
    for name in ("results.jsonl", "out.txt", "err.txt", "model.safetensors", "done"):
        assert (out / name).exists(), name
    assert not (out / "checkpoint.safetensors").exists()
    progress = json.loads((out / "progress.json").read_text())
    assert (progress["step"], progress["n_steps"]) == (7, 7)  # written at the last step
    records = _read_records(out)
    assert [r["step"] for r in records] == [0, 3, 6]
    keys = set(records[-1])
    expected = {"step", "epoch", "loss", "step_time", "mem_gb", "hparams", "args"}
    expected |= {f"env{i}_{s}_acc" for i in range(3) for s in ("in", "out")}
    assert expected <= keys
    assert records[-1]["args"]["dataset"] == "Debug28"
    assert records[-1]["hparams"]["batch_size"] == 8
    content, meta = load_file(str(out / "model.safetensors"))
    assert meta["model_num_classes"] == 2 and meta["args"]["dataset"] == "Debug28"
    assert "featurizer.features.0.weight" in content and "network.0.features.0.weight" in content


def test_done_run_is_left_alone(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--dataset", "Debug28", "--steps", "2", "--output_dir", str(out), "--hparams", FAST]
    assert train_script.main(args) == 0
    before = (out / "results.jsonl").read_bytes()
    assert train_script.main(args) == 0
    capsys.readouterr()
    # relaunched with other arguments: it says so (nothing run) instead of "already done"
    assert train_script.main(args + ["--steps", "50"]) == 2
    errors = [l for l in capsys.readouterr().out.splitlines() if l.startswith("error:")]
    assert len(errors) == 1 and "already done, with other arguments" in errors[0]
    assert "steps: 2 there, 50 here" in errors[0] and "--restart" in errors[0]
    assert (out / "results.jsonl").read_bytes() == before


def _accs(records):
    return [{k: v for k, v in r.items() if k.endswith("_acc") or k in ("step", "loss")}
            for r in records]


@pytest.mark.slow
def test_sigkill_then_rerun_equals_uninterrupted_run(tmp_path):
    # the tiny backbone keeps this fast; Mixup consumes the global RNG (pairs, Beta draws)
    extra = ["--steps", "300", "--checkpoint_freq", "30", "--seed", "3", "--trial_seed", "1",
             "--algorithm", "Mixup", "--hparams",
             json.dumps({"batch_size": 8, "backbone": "tiny_cnn", "mlp_dropout": 0.0})]
    reference = tmp_path / "reference"
    subprocess.run(_cmd(reference, *extra), check=True, capture_output=True)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(killed, *extra), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    results = killed / "results.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline:
        if results.exists() and results.read_text().count("\n") >= 3:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "done").exists(), "the run finished before it could be killed"
    subprocess.run(_cmd(killed, *extra), check=True, capture_output=True)
    assert "resuming from step" in (killed / "out.txt").read_text()

    got, want = _read_records(killed), _read_records(reference)
    assert [r["step"] for r in got] == [r["step"] for r in want]
    assert len({r["step"] for r in got}) == len(got)
    for g, w in zip(_accs(got), _accs(want)):
        assert g.keys() == w.keys()
        for key in g:
            assert g[key] == pytest.approx(w[key], abs=1e-6), key
    a, _ = load_file(str(killed / "model.safetensors"))
    b, _ = load_file(str(reference / "model.safetensors"))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_resume_drops_records_written_after_the_checkpoint(tmp_path):
    out = tmp_path / "run"
    args = ["--dataset", "Debug28", "--steps", "9", "--checkpoint_freq", "4", "--output_dir",
            str(out), "--hparams", FAST, "--keep_checkpoint"]
    assert train_script.main(args) == 0
    reference = _read_records(out)
    # simulate a kill just after a record was appended but before its checkpoint was written
    from domainbed.lib.weights import load_state, save_state
    state, meta = load_state(str(out / "checkpoint.safetensors"))
    assert state["step"] == 9 and state["n_records"] == 3
    (out / "done").unlink()
    lines = (out / "results.jsonl").read_text().splitlines(keepends=True)
    (out / "results.jsonl").write_text("".join(lines) + lines[-1][: len(lines[-1]) // 2])
    state["step"], state["n_records"] = 9, 3
    save_state(str(out / "checkpoint.safetensors"), state, meta)
    assert train_script.main(args) == 0
    assert [r["step"] for r in _read_records(out)] == [r["step"] for r in reference]


def _error_of(capsys, argv):
    code = train_script.main(argv)
    captured = capsys.readouterr()
    return code, (captured.out + captured.err).strip().splitlines()


@pytest.mark.parametrize("argv, fragment, checked_before_start", [
    (["--dataset", "NoSuchSet"], "not a known dataset", True),
    (["--dataset", "Debug28", "--algorithm", "NoSuchAlgo"], "not a known algorithm", True),
    (["--dataset", "Debug28", "--test_envs", "5"], "out of range", True),
    (["--dataset", "PACS"], "download", False),
    (["--dataset", "Debug28", "--hparams", "{bad json"], "JSON", True),
])
def test_bad_input_one_line_error_and_no_done(tmp_path, capsys, argv, fragment,
                                              checked_before_start):
    out = tmp_path / "run"
    code, lines = _error_of(capsys, argv + ["--output_dir", str(out), "--data_dir",
                                            str(tmp_path / "nodata")])
    assert code == 2
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and fragment in errors[0], lines
    assert not (out / "done").exists()
    if checked_before_start:  # the validation layer: nothing written
        assert not out.exists()
    else:  # found by the run itself (the data): recorded for sweep status
        assert json.loads((out / "failed").read_text())["error"]


def test_corrupt_image_gives_one_line_error(tmp_path, capsys):
    from tests.fixtures.data import make_dataset_fixture
    data = tmp_path / "data"
    root = make_dataset_fixture(str(data), "PACS", n_per_class=2)
    victim = sorted((p for p in __import__("pathlib").Path(root).rglob("*.png")))[0]
    victim.write_bytes(b"this is not a png")
    code, lines = _error_of(capsys, [
        "--dataset", "PACS", "--data_dir", str(data), "--output_dir", str(tmp_path / "run"),
        "--steps", "1", "--num_workers", "0",
        "--hparams", json.dumps({"batch_size": 2, "pretrained": False, "resnet18": True})])
    assert code != 0
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and victim.name in errors[0], lines
    assert not (tmp_path / "run" / "done").exists()


def test_init_from_loads_and_checks_shapes(tmp_path, capsys):
    source = tmp_path / "source"
    assert train_script.main(["--dataset", "Debug28", "--steps", "3", "--output_dir",
                              str(source), "--hparams", FAST]) == 0
    weights, _ = load_file(str(source / "model.safetensors"))
    target = tmp_path / "target"
    assert train_script.main(["--dataset", "Debug28", "--steps", "1", "--output_dir",
                              str(target), "--hparams", json.dumps({"batch_size": 8, "backbone": "tiny_cnn", "lr": 0.0}),
                              "--init_from", str(source / "model.safetensors")]) == 0
    loaded, _ = load_file(str(target / "model.safetensors"))
    assert torch.equal(loaded["featurizer.features.0.weight"],
                       weights["featurizer.features.0.weight"])
    assert torch.equal(loaded["classifier.weight"], weights["classifier.weight"])
    assert "initialised featurizer and classifier" in (target / "out.txt").read_text()

    # a head for 5 classes does not fit the 2-class Debug28 model
    bad = dict(weights)
    bad["classifier.weight"] = torch.zeros(5, weights["classifier.weight"].shape[1])
    bad["classifier.bias"] = torch.zeros(5)
    save_weights(str(tmp_path / "bad.safetensors"), bad)
    code, lines = _error_of(capsys, ["--dataset", "Debug28", "--steps", "1", "--output_dir",
                                     str(tmp_path / "bad_run"), "--hparams", FAST,
                                     "--init_from", str(tmp_path / "bad.safetensors")])
    assert code != 0
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and "classifier.weight" in errors[0] and "shape" in errors[0], errors
    assert not (tmp_path / "bad_run" / "done").exists()

    # the featurizer alone still fits
    assert train_script.main(["--dataset", "Debug28", "--steps", "1", "--output_dir",
                              str(tmp_path / "feat_only"), "--hparams", FAST, "--init_from",
                              str(tmp_path / "bad.safetensors"), "--init_part",
                              "featurizer"]) == 0


def test_init_from_upstream_model_pkl(tmp_path):
    source = tmp_path / "source"
    assert train_script.main(["--dataset", "Debug28", "--steps", "2", "--output_dir",
                              str(source), "--hparams", FAST]) == 0
    weights, meta = load_file(str(source / "model.safetensors"))
    # upstream's layout: a pickled dict with plain values and the state dict in model_dict
    torch.save({"args": meta["args"], "model_input_shape": [3, 28, 28], "model_num_classes": 2,
                "model_num_domains": 2, "model_hparams": meta["model_hparams"],
                "model_dict": {k: v for k, v in weights.items()}}, tmp_path / "model.pkl")
    out = tmp_path / "from_pkl"
    assert train_script.main(["--dataset", "Debug28", "--steps", "1", "--output_dir", str(out),
                              "--hparams", json.dumps({"batch_size": 8, "backbone": "tiny_cnn", "lr": 0.0}),
                              "--init_from", str(tmp_path / "model.pkl")]) == 0
    loaded, _ = load_file(str(out / "model.safetensors"))
    assert torch.equal(loaded["classifier.weight"], weights["classifier.weight"])


def _selected_step(records):
    return next(r["step"] for r in records if r.get("scored_after_training"))


@pytest.mark.slow
def test_a_kill_before_done_finishes_again_with_the_same_records(tmp_path):
    """The test score scored after training (``--score_test_once``) is written into
    results.jsonl before ``done``: a run killed in between resumes at its end, writes it
    again and the file is unchanged."""
    out = tmp_path / "run"
    args = ["--dataset", "Debug28", "--steps", "13", "--checkpoint_freq", "2", "--seed", "2",
            "--test_envs", "0", "--output_dir", str(out), "--hparams", FAST,
            "--keep_checkpoint", "--score_test_once"]
    assert train_script.main(args) == 0
    before = (out / "results.jsonl").read_bytes()
    step = _selected_step(_read_records(out))
    (out / "done").unlink()
    records = _read_records(out)  # as if killed before the test score was written
    for record in records:
        if record["step"] == step:
            record["env0_in_acc"] = None
            del record["scored_after_training"]
    (out / "results.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n"
                                               for r in records))
    assert train_script.main(args) == 0
    assert (out / "results.jsonl").read_bytes() == before


def test_a_best_checkpoint_of_another_step_is_an_error_not_a_wrong_score(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--dataset", "Debug28", "--steps", "13", "--checkpoint_freq", "2", "--seed", "2",
            "--test_envs", "0", "--output_dir", str(out), "--hparams", FAST,
            "--keep_checkpoint", "--score_test_once"]
    assert train_script.main(args) == 0
    step = _selected_step(_read_records(out))
    (out / "done").unlink()
    records = _read_records(out)
    for record in records:
        if record["step"] == step:
            record["env0_in_acc"] = None
    (out / "results.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n"
                                               for r in records))
    weights, meta = load_file(str(out / "model_best.safetensors"))
    meta["best_checkpoint"]["step"] = step + 2
    save_weights(str(out / "model_best.safetensors"), weights, meta)
    code, lines = _error_of(capsys, args)
    assert code != 0 and not (out / "done").exists()
    assert any("holds the weights of step" in line and "delete the run directory" in line
               for line in lines), lines
