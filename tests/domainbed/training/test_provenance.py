"""Provenance: the "Environment:" block at the top of out.txt and in every weight file a run
writes; records and job ids unchanged by it (ResNet sweeps keep their ids)."""

import json
import os
import platform

import torch

from domainbed.lib import run_dir
from domainbed.lib.provenance import device_name, environment_info, environment_lines
from domainbed.lib.weights import read_metadata
from domainbed.sweep.options import list_jobs
from domainbed.sweep.options import make_spec
from tests.fixtures.model_runs import FOLDER_HPARAMS, train_run


def test_environment_info_names_versions_and_device():
    info = environment_info()
    assert info["python"] == platform.python_version()
    assert info["torch"] == torch.__version__
    assert info["cuda"] == torch.version.cuda
    assert info["device"] == device_name()
    if not torch.cuda.is_available():
        assert info["device"].startswith("cpu (")
    assert info["package_version"]
    git = info["git"]
    assert git is None or (len(git["commit"]) == 40 and isinstance(git["dirty"], bool))
    lines = environment_lines()
    assert lines[0] == "Environment:" and any(l.strip().startswith("PyTorch:") for l in lines)
    json.dumps(info)  # JSON-ready


def test_a_run_logs_the_environment_first_and_stamps_every_weight_file(image_sweep, tmp_path):
    out = train_run(image_sweep.data, tmp_path / "run", FOLDER_HPARAMS, steps=3,
                    extra=["--keep_checkpoint"])
    with open(os.path.join(out, run_dir.OUT), encoding="utf-8") as f:
        messages = [line.split(" ", 2)[2].rstrip("\n") for line in f]
    block = environment_lines()
    assert messages[:len(block)] == block
    assert messages[len(block)].startswith("Args: ")
    expected = environment_info()
    for name in (run_dir.MODEL, run_dir.MODEL_BEST, run_dir.CHECKPOINT):
        assert read_metadata(os.path.join(out, name))["provenance"] == expected, name
    with open(os.path.join(out, run_dir.RESULTS), encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    # records are as before: nothing of the environment or the input pipeline in them
    assert all("provenance" not in r and "model_input" not in r for r in records)
    assert set(records[0]["hparams"]) == set(json.loads(
        json.dumps(read_metadata(os.path.join(out, run_dir.MODEL))["model_hparams"])))


def test_resnet_sweeps_keep_their_job_ids(tmp_path):
    """Ids listed by the code before model folders existed (commit fe02476), same args."""
    spec = make_spec(str(tmp_path), datasets=["PACS"], algorithms=["ERM"], n_hparams=2,
                     n_trials=2, test_env=0, hparams='{"resnet18": true}',
                     data_dir=str(tmp_path), mode="ids")
    assert [j.job_id for j in list_jobs(spec)] == [
        "6087cf1466114205b4b7de9b07f5e203", "f78e0a17f330b95201805e3704337eaa",
        "4f0577d9edadb83804db7ac983701366", "8b50abee638f30b204dd24bb626ad853"]
