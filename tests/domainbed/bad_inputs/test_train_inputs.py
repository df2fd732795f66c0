"""Bad inputs of ``python -m domainbed.scripts.train``: each gives one line per problem and
exit status 2 (argparse's own errors: its usage and one error line), and writes nothing
(problems found before the run starts) or at least no record and no ``done`` (weight files
found bad when the run loads them)."""

import json
import os
import pickle
import struct

import pytest
import torch

from domainbed.lib import digests, run_dir
from domainbed.lib.weights import load_file, save_weights
from domainbed.scripts import train as train_script
from tests.domainbed.bad_inputs.common import assert_one_error, run_cli, tree

FAST = {"batch_size": 8, "backbone": "tiny_cnn"}

# (id, extra flags, fragment of the error line)
ARGUMENT_CASES = [
    ("steps_zero", ["--steps", "0"], "--steps: 0 is not an integer >= 1"),
    ("steps_negative", ["--steps", "-5"], "--steps: -5 is not an integer >= 1"),
    ("checkpoint_freq_zero", ["--checkpoint_freq", "0"], "--checkpoint_freq: 0 is not"),
    ("checkpoint_freq_negative", ["--checkpoint_freq", "-1"], "--checkpoint_freq: -1"),
    ("seed_negative", ["--seed", "-1"], "--seed: -1 is not an integer in [0, 4294967295]"),
    ("seed_too_big", ["--seed", str(2 ** 32)], "--seed: 4294967296 is not"),
    ("trial_seed_negative", ["--trial_seed", "-1"], "--trial_seed: -1 is not an integer >= 0"),
    ("hparams_seed_negative", ["--hparams_seed", "-2"], "--hparams_seed: -2 is not"),
    ("holdout_above_one", ["--holdout_fraction", "1.5"], "--holdout_fraction: 1.5 is not a "
                                                         "finite number in (0, 1)"),
    ("holdout_zero", ["--holdout_fraction", "0"], "--holdout_fraction: 0.0 is not"),
    ("holdout_one", ["--holdout_fraction", "1"], "--holdout_fraction: 1.0 is not"),
    ("holdout_negative", ["--holdout_fraction", "-0.1"], "--holdout_fraction: -0.1 is not"),
    ("holdout_nan", ["--holdout_fraction", "nan"], "--holdout_fraction: NaN is not"),
    ("uda_holdout_one", ["--uda_holdout_fraction", "1.0"], "--uda_holdout_fraction: 1.0"),
    ("num_workers_negative", ["--num_workers", "-1"], "--num_workers: -1 is not"),
    ("test_env_out_of_range", ["--test_envs", "5"], "--test_envs 5 is out of range"),
    ("test_env_below_minus_one", ["--test_envs", "-2"], "--test_envs[0]: -2 is not"),
    ("test_env_none_and_one", ["--test_envs", "-1", "0"], "cannot be combined"),
    ("test_env_twice", ["--test_envs", "0", "0"], "names an environment twice"),
    ("dataset_unknown", ["--dataset", "NoSuchSet"], "'NoSuchSet' is not a known dataset"),
    ("dataset_case", ["--dataset", "debug28"], "did you mean 'Debug28'?"),
    ("algorithm_unknown", ["--algorithm", "NoSuch"], "'NoSuch' is not a known algorithm"),
    ("algorithm_case", ["--algorithm", "coral"], "did you mean 'CORAL'?"),
    ("hparams_space_unknown", ["--hparams_space", "wild"], "--hparams_space 'wild' is not"),
    ("uda_without_fraction", ["--task", "domain_adaptation"],
     "--task domain_adaptation needs --uda_holdout_fraction > 0"),
    ("init_from_missing", ["--init_from", "no/such/file.safetensors"], "no such weight file"),
]

# (id, --hparams text, fragment)
HPARAMS_CASES = [
    ("not_json", "{bad json", "--hparams is not valid JSON"),
    ("a_list", "[1, 2]", "--hparams must be a JSON object"),
    ("a_string", '"lr"', "--hparams must be a JSON object"),
    ("unknown_key", {"lrr": 1e-3}, "unknown hyperparameter 'lrr'"),
    ("unknown_key_close", {"batch_sise": 8}, "did you mean 'batch_size'?"),
    ("lr_text", {"lr": "abc"}, "--hparams lr: 'abc' is not a finite number >= 0"),
    ("lr_nan", '{"lr": NaN}', "--hparams lr: NaN is not a finite number"),
    ("lr_negative", {"lr": -1}, "--hparams lr: -1 is not a finite number >= 0"),
    ("lr_infinite", '{"lr": Infinity}', "--hparams lr: Infinity is not"),
    ("lr_null", {"lr": None}, "--hparams lr: null is not"),
    ("lr_bool", {"lr": True}, "--hparams lr: True is not"),
    ("batch_size_zero", {"batch_size": 0}, "--hparams batch_size: 0 is not an integer >= 1"),
    ("batch_size_negative", {"batch_size": -4}, "--hparams batch_size: -4 is not"),
    ("batch_size_fraction", {"batch_size": 2.5}, "--hparams batch_size: 2.5 is not"),
    ("batch_size_text", {"batch_size": "32"}, "--hparams batch_size: '32' is not"),
    ("batch_size_bool", {"batch_size": True}, "--hparams batch_size: True is not"),
    ("weight_decay_infinite", '{"weight_decay": Infinity}', "--hparams weight_decay: "
                                                            "Infinity is not"),
    ("weight_decay_negative", {"weight_decay": -1e-4}, "--hparams weight_decay: -0.0001"),
    ("weight_decay_text", {"weight_decay": "0.1"}, "--hparams weight_decay: '0.1' is not"),
    ("dropout_one", {"resnet_dropout": 1.0}, "--hparams resnet_dropout: 1.0 is not"),
    ("dropout_negative", {"mlp_dropout": -0.1}, "--hparams mlp_dropout: -0.1 is not"),
    ("mlp_depth_one", {"mlp_depth": 1}, "--hparams mlp_depth: 1 is not an integer >= 2"),
    ("mlp_width_zero", {"mlp_width": 0}, "--hparams mlp_width: 0 is not"),
    ("bool_as_text", {"nonlinear_classifier": "yes"}, "nonlinear_classifier: 'yes' is not "
                                                      "true or false"),
    ("bool_as_int", {"data_augmentation": 1}, "data_augmentation: 1 is not true or false"),
    ("lp_steps_negative", {"lp_steps": -1}, "--hparams lp_steps: -1 is not"),
    ("image_size_tiny", {"image_size": 4}, "--hparams image_size: 4 is not an integer >= 8"),
    ("image_channels_two", {"image_channels": 2}, "--hparams image_channels: 2 is not one of"),
    ("backbone_int", {"backbone": 5}, "--hparams backbone: 5 is not a string"),
    ("class_balanced_text", {"class_balanced": "no"}, "class_balanced: 'no' is not"),
    ("ma_start_negative", {"ma_start_iter": -3}, "--hparams ma_start_iter: -3 is not"),
]

# (id, extra flags, fragment): argparse's own refusals (usage + one error line)
ARGPARSE_CASES = [
    ("steps_text", ["--steps", "abc"], "invalid int value: 'abc'"),
    ("seed_fraction", ["--seed", "1.5"], "invalid int value: '1.5'"),
    ("precision_unknown", ["--precision", "fp8"], "invalid choice: 'fp8'"),
    ("init_part_unknown", ["--init_part", "head"], "invalid choice: 'head'"),
    ("task_unknown", ["--task", "dg"], "invalid choice: 'dg'"),
    ("unknown_flag", ["--stepz", "3"], "unrecognized arguments: --stepz 3"),
    ("holdout_text", ["--holdout_fraction", "half"], "invalid float value: 'half'"),
]


def _argv(out, extra=(), hparams=None):
    text = hparams if isinstance(hparams, str) else json.dumps(
        dict(FAST, **(hparams or {})))
    return ["--dataset", "Debug28", "--output_dir", str(out), "--hparams", text, *extra]


@pytest.mark.parametrize("extra, fragment", [c[1:] for c in ARGUMENT_CASES],
                         ids=[c[0] for c in ARGUMENT_CASES])
def test_bad_argument(tmp_path, capsys, extra, fragment):
    out = tmp_path / "run"
    code, lines = run_cli(train_script.main, _argv(out, extra), capsys)
    assert code == 2
    assert_one_error(lines, fragment)
    assert not out.exists()


@pytest.mark.parametrize("hparams, fragment", [c[1:] for c in HPARAMS_CASES],
                         ids=[c[0] for c in HPARAMS_CASES])
def test_bad_hparams(tmp_path, capsys, hparams, fragment):
    out = tmp_path / "run"
    code, lines = run_cli(train_script.main, _argv(out, hparams=hparams), capsys)
    assert code == 2
    assert_one_error(lines, fragment)
    assert not out.exists()


@pytest.mark.parametrize("extra, fragment", [c[1:] for c in ARGPARSE_CASES],
                         ids=[c[0] for c in ARGPARSE_CASES])
def test_bad_flag(tmp_path, capsys, extra, fragment):
    out = tmp_path / "run"
    code, lines = run_cli(train_script.main, _argv(out, extra), capsys)
    assert code == 2
    assert_one_error(lines, fragment)
    assert not out.exists()


def test_every_problem_at_once(tmp_path, capsys):
    out = tmp_path / "run"
    code, lines = run_cli(train_script.main, _argv(
        out, ["--steps", "0", "--seed", "-1"], {"lrr": 1, "batch_size": 0}), capsys)
    assert code == 2
    assert_one_error(lines, "--steps: 0", n=4)
    assert not out.exists()


# ---- paths and weight files ----------------------------------------------------------------

@pytest.fixture(scope="module")
def model(tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "run"
    assert train_script.main(_argv(out, ["--steps", "1"])) == 0
    return out / run_dir.MODEL


def _truncated(model, path):
    path.write_bytes(model.read_bytes()[:200])


def _lying_header(model, path):
    data = model.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    path.write_bytes(struct.pack("<Q", n + 9) + data[8:])


def _lying_offsets(model, path):
    data = model.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    for key, entry in header.items():
        if key != "__metadata__":
            entry["data_offsets"] = [0, 10 ** 6]
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + data[8 + n:])


def _pickle(model, path):
    path.write_bytes(pickle.dumps({"w": [1, 2, 3]}))


def _pickle_of_code(model, path):
    path.write_bytes(pickle.dumps(os.system))


def _text(model, path):
    path.write_text("these are not weights")


def _empty(model, path):
    path.write_bytes(b"")


def _nan(model, path):
    weights = dict(load_file(str(model))[0])
    weights["classifier.weight"] = torch.full_like(weights["classifier.weight"], float("nan"))
    save_weights(str(path), weights)


def _infinite(model, path):
    weights = dict(load_file(str(model))[0])
    weights["featurizer.features.0.bias"] = torch.full_like(
        weights["featurizer.features.0.bias"], float("inf"))
    save_weights(str(path), weights)


def _tampered(model, path):
    path.write_bytes(model.read_bytes())
    digests.write_manifest(str(path), "delete it and launch the sweep again")
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))


def _broken_manifest(model, path):
    path.write_bytes(model.read_bytes())
    with open(str(path) + digests.SUFFIX, "w") as f:
        f.write("{not json")


def _other_head(model, path):
    weights = dict(load_file(str(model))[0])
    width = weights["classifier.weight"].shape[1]
    weights["classifier.weight"] = torch.zeros(5, width)
    weights["classifier.bias"] = torch.zeros(5)
    save_weights(str(path), weights)


def _no_parts(model, path):
    save_weights(str(path), {"something.else": torch.ones(2)})


def _broken_metadata(model, path):
    data = model.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header["__metadata__"]["domainbed"] = "{broken"
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + data[8 + n:])


# (id, how the file is made, fragment)
WEIGHT_CASES = [
    ("truncated", _truncated, "truncated or corrupt"),
    ("lying_header_length", _lying_header, "not a readable safetensors file"),
    ("lying_tensor_offsets", _lying_offsets, "not a readable safetensors file"),
    ("pickle_named_safetensors", _pickle, "refused to load"),
    ("pickle_of_code", _pickle_of_code, "refused to load"),
    ("text_file", _text, "unknown weight file format"),
    ("empty_file", _empty, "unknown weight file format"),
    ("nan_weights", _nan, "classifier.weight holds NaN or infinite values"),
    ("infinite_weights", _infinite, "holds NaN or infinite values"),
    ("sha256_mismatch", _tampered, "its sha256 differs"),
    ("broken_manifest", _broken_manifest, "unreadable manifest"),
    ("other_number_of_classes", _other_head, "classifier.weight has shape (5,"),
    ("neither_part", _no_parts, "holds neither featurizer nor classifier weights"),
    ("broken_metadata", _broken_metadata, "its metadata is not valid JSON"),
]


@pytest.mark.parametrize("make, fragment", [c[1:] for c in WEIGHT_CASES],
                         ids=[c[0] for c in WEIGHT_CASES])
def test_bad_init_file(tmp_path, capsys, model, make, fragment):
    path = tmp_path / "init.safetensors"
    make(model, path)
    out = tmp_path / "run"
    code, lines = run_cli(train_script.main, _argv(out, ["--steps", "2", "--init_from",
                                                         str(path)]), capsys)
    assert code == 2
    assert_one_error(lines, fragment)
    assert str(path) in [l for l in lines if "error:" in l][0]
    # the run never started: no record, no model, no done (its failure is recorded)
    assert not (out / run_dir.DONE).exists() and not (out / run_dir.RESULTS).exists()
    assert not (out / run_dir.MODEL).exists()


def test_init_from_a_folder(tmp_path, capsys):
    out = tmp_path / "run"
    code, lines = run_cli(train_script.main, _argv(out, ["--init_from", str(tmp_path)]),
                          capsys)
    assert code == 2
    assert_one_error(lines, "is a folder; give a weight file")
    assert not out.exists()


def test_output_dir_is_a_file(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, lines = run_cli(train_script.main, _argv(blocker), capsys)
    assert code == 2
    assert_one_error(lines, "is a file, not a folder")
    assert blocker.read_text() == "x"


def test_output_dir_below_a_file(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, lines = run_cli(train_script.main, _argv(blocker / "a" / "run"), capsys)
    assert code == 2
    assert_one_error(lines, "is a file, not a folder")


# ---- a run directory of other arguments -------------------------------------------------

@pytest.fixture(scope="module")
def done_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("done") / "run"
    assert train_script.main(_argv(out, ["--steps", "2"])) == 0
    return out


@pytest.fixture(scope="module")
def unfinished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("unfinished") / "run"
    assert train_script.main(_argv(out, ["--steps", "4", "--checkpoint_freq", "2",
                                         "--keep_checkpoint"])) == 0
    os.unlink(out / run_dir.DONE)
    return out


@pytest.mark.parametrize("extra, hparams, fragment", [
    (["--steps", "3"], None, "steps: 2 there, 3 here"),
    (["--steps", "2", "--trial_seed", "1"], None, "trial_seed: 0 there, 1 here"),
    (["--steps", "2", "--seed", "5"], None, "seed: 0 there, 5 here"),
    (["--steps", "2", "--algorithm", "CORAL"], None, "algorithm: 'ERM' there, 'CORAL' here"),
    (["--steps", "2"], {"lr": 0.5}, "hparams.lr: unset there, 0.5 here"),
], ids=["steps", "trial_seed", "seed", "algorithm", "lr"])
def test_a_finished_run_relaunched_with_other_arguments(done_run, capsys, extra, hparams,
                                                        fragment):
    before = tree(done_run)
    code, lines = run_cli(train_script.main, _argv(done_run, extra, hparams), capsys)
    assert code == 2
    assert_one_error(lines, fragment)
    assert "already done, with other arguments" in lines[-1]
    after = tree(done_run)
    assert after[run_dir.RESULTS] == before[run_dir.RESULTS] and run_dir.DONE in after


@pytest.mark.parametrize("extra, hparams, fragment", [
    (["--trial_seed", "1"], None, "trial_seed: 0 there, 1 here"),
    (["--test_envs", "1"], None, "test_envs: [0] there, [1] here"),
    ([], {"lr": 0.5}, "hparams.lr: unset there, 0.5 here"),
    (["--holdout_fraction", "0.3"], None, "holdout_fraction: 0.2 there, 0.3 here"),
], ids=["trial_seed", "test_envs", "lr", "holdout_fraction"])
def test_an_unfinished_run_resumed_with_other_arguments(unfinished_run, capsys, extra,
                                                        hparams, fragment):
    before = tree(unfinished_run)[run_dir.RESULTS]
    code, lines = run_cli(train_script.main, _argv(
        unfinished_run, ["--steps", "4", "--checkpoint_freq", "2", "--keep_checkpoint",
                         *extra], hparams), capsys)
    assert code == 2
    assert_one_error(lines, fragment)
    assert "unfinished run of other arguments" in [l for l in lines if "error:" in l][0]
    assert tree(unfinished_run)[run_dir.RESULTS] == before
    assert not (unfinished_run / run_dir.DONE).exists()
