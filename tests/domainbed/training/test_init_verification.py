"""Every weight file a run loads is verified: a file with a manifest (probes, init files)
must match its sha256, and no run starts from NaN weights."""

import json
import os

import pytest
import torch

from domainbed.errors import WeightFileError
from domainbed.lib import digests, run_dir
from domainbed.lib.weights import load_file, save_weights
from domainbed.scripts import train as train_script

FAST = json.dumps({"batch_size": 8, "backbone": "tiny_cnn"})


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("source") / "run"
    assert train_script.main(["--dataset", "Debug28", "--steps", "1", "--output_dir",
                              str(out), "--hparams", FAST]) == 0
    return out / "model.safetensors"


def _errors(capsys):
    captured = capsys.readouterr()
    return [l for l in (captured.out + captured.err).splitlines() if l.startswith("error:")]


def _flip_last_byte(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # inside the last tensor: the file still parses
    path.write_bytes(bytes(data))


def test_a_tampered_init_file_stops_the_run_naming_it_and_the_way_to_rebuild(
        tmp_path, capsys, model_file):
    init = tmp_path / "init_abc.safetensors"
    init.write_bytes(model_file.read_bytes())
    digests.write_manifest(str(init), "delete it and launch the sweep again")
    _flip_last_byte(init)
    load_file(str(init))  # still a readable weight file: only the manifest tells
    out = tmp_path / "run"
    assert train_script.main(["--dataset", "Debug28", "--steps", "2", "--output_dir", str(out),
                              "--hparams", FAST, "--init_from", str(init)]) == 2
    (error,) = _errors(capsys)
    assert str(init) in error and "sha256 differs" in error
    assert "delete it and launch the sweep again" in error
    assert not (out / run_dir.DONE).exists() and not (out / run_dir.RESULTS).exists()


def test_an_intact_init_file_with_a_manifest_trains(tmp_path, model_file):
    init = tmp_path / "init_abc.safetensors"
    init.write_bytes(model_file.read_bytes())
    assert digests.write_manifest(str(init), "x") == digests.sha256_file(str(init))
    out = tmp_path / "run"
    assert train_script.main(["--dataset", "Debug28", "--steps", "1", "--output_dir", str(out),
                              "--hparams", FAST, "--init_from", str(init)]) == 0


def test_nan_weights_are_refused_as_an_init(tmp_path, capsys, model_file):
    weights, _ = load_file(str(model_file))
    weights = dict(weights)
    weights["classifier.bias"] = torch.full_like(weights["classifier.bias"], float("nan"))
    bad = tmp_path / "nan.safetensors"
    save_weights(str(bad), weights)
    out = tmp_path / "run"
    assert train_script.main(["--dataset", "Debug28", "--steps", "2", "--output_dir", str(out),
                              "--hparams", FAST, "--init_from", str(bad)]) == 2
    (error,) = _errors(capsys)
    assert "classifier.bias holds NaN or infinite values" in error
    assert not (out / run_dir.DONE).exists()


def test_verify_file_without_a_manifest_passes_and_a_broken_manifest_is_one_error(tmp_path):
    path = tmp_path / "w.bin"
    path.write_bytes(b"abc")
    assert digests.verify_file(str(path)) is None
    (tmp_path / "w.bin.sha256").write_text("{not json")
    with pytest.raises(WeightFileError, match="unreadable manifest"):
        digests.verify_file(str(path))


def test_init_files_of_the_recipe_are_written_with_their_manifest(tmp_path):
    from domainbed_aux.init.record import InitRecord, pretrained_member, save_init_file
    path = str(tmp_path / "inits" / "init_x.safetensors")
    save_init_file(path, {"w": torch.ones(2)}, {"b": torch.zeros(1)},
                   InitRecord(pretrained_member("abc"), "lp_key"))
    manifest = json.loads(open(path + ".sha256").read())
    assert manifest["sha256"] == digests.sha256_file(path)
    assert "launch the sweep or recipe again" in manifest["rebuild"]
    with open(path, "r+b") as f:
        f.seek(-1, os.SEEK_END)
        last = f.read(1)
        f.seek(-1, os.SEEK_END)
        f.write(bytes([last[0] ^ 1]))
    with pytest.raises(WeightFileError, match="init_x.safetensors"):
        digests.verify_file(path)
