"""On a CUDA GPU: training, trajectory averaging and weight files (skipped on CPU).

benchmarks/gpu_check.sh runs these and, on the GPU, the CPU suite's training tests (resume
after SIGKILL included)."""

import json

import pytest
import torch

from domainbed.lib.weights import load_file
from domainbed.scripts import train as train_script

pytestmark = pytest.mark.gpu

FAST = json.dumps({"batch_size": 8, "backbone": "tiny_cnn"})


def _records(run):
    return [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]


def _train(out, *extra):
    return train_script.main(["--dataset", "Debug28", "--output_dir", str(out),
                              "--hparams", FAST, *extra])


@pytest.mark.parametrize("algorithm", ["ERM", "CORAL", "MA", "SWAD"])
def test_training_runs_on_the_gpu_and_writes_cpu_loadable_weights(tmp_path, algorithm):
    torch.cuda.reset_peak_memory_stats()
    out = tmp_path / algorithm
    assert _train(out, "--algorithm", algorithm, "--steps", "6", "--checkpoint_freq", "2") == 0
    records = _records(out)
    assert "cuda" in (out / "out.txt").read_text()  # "Device: cuda"
    assert records[-1]["mem_gb"] > 0  # torch.cuda.max_memory_allocated, not the host RSS
    content, _ = load_file(str(out / "model.safetensors"))
    assert all(t.device.type == "cpu" for t in content.values())
    if algorithm == "SWAD":
        assert records[-1]["final_average"] is True


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_resume_is_exact_within_a_precision(tmp_path, precision, monkeypatch):
    """A run that fails after a checkpoint and resumes (fp16: with its gradient scaler's
    state) ends with the records of the uninterrupted run of the same precision."""
    from domainbed.algorithms.erm import ERM
    flags = ["--steps", "12", "--checkpoint_freq", "4", "--precision", precision,
             "--channels_last"]
    assert _train(tmp_path / "reference", *flags) == 0
    calls, original = {"n": 0}, ERM.update

    def failing(self, minibatches, unlabeled=None):
        calls["n"] += 1
        if calls["n"] == 7:
            raise RuntimeError("simulated preemption")
        return original(self, minibatches, unlabeled)

    monkeypatch.setattr(ERM, "update", failing)
    assert _train(tmp_path / "resumed", *flags) != 0
    monkeypatch.setattr(ERM, "update", original)
    assert _train(tmp_path / "resumed", *flags) == 0
    want, got = _records(tmp_path / "reference"), _records(tmp_path / "resumed")
    assert [r["step"] for r in got] == [r["step"] for r in want]
    for g, w in zip(got, want):
        assert g["loss"] == pytest.approx(w["loss"], abs=1e-6)
