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
