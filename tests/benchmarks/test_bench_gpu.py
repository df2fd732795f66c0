"""benchmarks/bench_gpu.py runs on a CPU with a tiny model (the GPU numbers come from
benchmarks/bench_gpu.sh on a GPU machine)."""

import importlib.util
import json
import math
import os

import pytest

from tests.fixtures.paths import REPO


def _bench():
    spec = importlib.util.spec_from_file_location(
        "bench_gpu", os.path.join(REPO, "benchmarks", "bench_gpu.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("flags", [[], ["--precision", "bf16", "--channels_last"]])
def test_bench_gpu_smoke_on_cpu(flags, capsys, tmp_path, one_thread):
    bench = _bench()
    argv = ["--model", "tiny", "--device", "cpu", "--steps", "3", "--batch_size", "8",
            "--threads", "1", "--barrier", str(tmp_path / "barrier"), "--n_procs", "1"]
    assert bench.main(argv + flags) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["steps"] == 3 and result["batch_size"] == 8 and result["device"] == "cpu"
    assert result["img_per_s"] > 0 and math.isfinite(result["loss"])
    assert result["precision"] == (flags[1] if flags else "fp32")
    assert result["channels_last"] == bool(flags)
    assert len(os.listdir(tmp_path / "barrier")) == 1  # it announced itself, then ran


def test_bench_gpu_refuses_bad_values():
    bench = _bench()
    with pytest.raises(SystemExit, match="--steps must be >= 1"):
        bench.main(["--model", "tiny", "--device", "cpu", "--steps", "0"])
    with pytest.raises(SystemExit, match="unknown --model 'vgg'"):
        bench.main(["--model", "vgg", "--device", "cpu", "--steps", "1"])
