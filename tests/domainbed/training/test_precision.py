"""Opt-in training arithmetic: bf16 autocast, channels-last; fp32 stays the default."""

import json

from domainbed.scripts import train as train_script
from tests.fixtures.recipe_runs import read_records

FAST = json.dumps({"batch_size": 8, "backbone": "tiny_cnn"})


def _train(out, *extra):
    return train_script.main(["--dataset", "Debug28", "--steps", "4", "--checkpoint_freq", "2",
                              "--output_dir", str(out), "--hparams", FAST, *extra])


def test_default_is_fp32_and_bf16_channels_last_trains_and_is_recorded(tmp_path):
    assert _train(tmp_path / "fp32") == 0
    assert _train(tmp_path / "bf16", "--precision", "bf16", "--channels_last") == 0
    fp32, bf16 = read_records(str(tmp_path / "fp32")), read_records(str(tmp_path / "bf16"))
    assert fp32[-1]["args"]["precision"] == "fp32" and not fp32[-1]["args"]["channels_last"]
    assert bf16[-1]["args"]["precision"] == "bf16" and bf16[-1]["args"]["channels_last"]
    # a different arithmetic: the losses differ, but training ran and was scored
    assert fp32[-1]["loss"] != bf16[-1]["loss"]
    assert all(0 <= bf16[-1][f"env{i}_in_acc"] <= 1 for i in range(3))


def test_fp16_without_a_gpu_is_one_clear_error(tmp_path, capsys):
    assert _train(tmp_path / "fp16", "--precision", "fp16") == 2
    out = capsys.readouterr()
    errors = [l for l in (out.out + out.err).splitlines() if l.startswith("error:")]
    assert len(errors) == 1 and "needs a CUDA GPU" in errors[0]
