"""The shared linear probe: trained once (even by concurrent processes), frozen phi_pt."""

import json
import os
import subprocess
import sys

import pytest
import torch

from domainbed.lib.weights import load_file, read_metadata, save_weights
from domainbed_aux.init import probe as lp

HPARAMS = {"batch_size": 4, "backbone": "tiny_cnn"}


pytestmark = pytest.mark.usefixtures("one_thread")


def _spec(**kw):
    base = dict(dataset="Debug28", test_envs=[0], trial_seed=1, hparams=dict(HPARAMS), steps=3,
                checkpoint_freq=2)
    base.update(kw)
    return lp.LinearProbeSpec(**base)


def test_probe_holds_frozen_phi_pt_and_a_trained_classifier(tmp_path):
    spec = _spec()
    first = lp.ensure_linear_probe(spec, str(tmp_path))
    assert first.trained and os.path.isfile(first.path)
    featurizer, classifier, metadata = lp.read_linear_probe(first.path)
    phi_pt = lp.pretrained_featurizer_state(spec)
    assert set(featurizer) == set(phi_pt)
    assert all(torch.equal(featurizer[k], phi_pt[k]) for k in phi_pt)
    run_dir = os.path.join(str(tmp_path), "runs", spec.key())
    with open(os.path.join(run_dir, "results.jsonl")) as f:
        records = [json.loads(line) for line in f]
    args = records[-1]["args"]
    # same train envs and splits as the target runs of (dataset, test_envs, trial_seed)
    assert (args["algorithm"], args["test_envs"], args["trial_seed"]) == ("LinearProbe", [0], 1)
    assert args["hparams_seed"] == 0 and records[-1]["step"] == 2
    model, _ = load_file(os.path.join(run_dir, "model.safetensors"))
    assert all(torch.equal(classifier[k], model["classifier." + k]) for k in classifier)
    assert metadata["init"]["member"]["kind"] == "pretrained"
    assert metadata["linear_probe"]["key"] == spec.key()

    again = lp.ensure_linear_probe(_spec(), str(tmp_path))
    assert not again.trained and again.sha256 == first.sha256


def test_probe_key_depends_on_what_identifies_it():
    keys = {_spec().key(), _spec(trial_seed=2).key(), _spec(test_envs=[1]).key(),
            _spec(steps=5).key(), _spec(hparams={"batch_size": 4}).key()}
    assert len(keys) == 5
    assert _spec().key() == _spec().key()


def test_explicit_pretrained_featurizer_is_phi_pt(tmp_path):
    torch.manual_seed(7)
    from domainbed import networks
    featurizer = networks.Featurizer((3, 28, 28), HPARAMS)
    file = str(tmp_path / "foundation.safetensors")
    save_weights(file, featurizer.state_dict())  # featurizer-only, no prefix
    spec = _spec(pretrained_featurizer=file)
    probe = lp.ensure_linear_probe(spec, str(tmp_path / "lp"))
    stored, _, _ = lp.read_linear_probe(probe.path)
    assert all(torch.equal(stored[k], v) for k, v in featurizer.state_dict().items())
    assert spec.key() != _spec().key()


_WORKER = """
import json, sys, torch
torch.set_num_threads(1)
import domainbed_aux.plugin  # registers LinearProbe
from domainbed_aux.init import probe as lp
spec = lp.LinearProbeSpec(dataset="Debug28", test_envs=[0], trial_seed=0,
                          hparams={"batch_size": 4, "backbone": "tiny_cnn"}, steps=4,
                          checkpoint_freq=2)
probe = lp.ensure_linear_probe(spec, sys.argv[1])
print(json.dumps({"trained": probe.trained, "sha256": probe.sha256}))
"""


@pytest.mark.slow
def test_two_concurrent_processes_train_the_probe_once(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, str(tmp_path)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
        outs.append(json.loads(out.strip().splitlines()[-1]))
    assert sorted(o["trained"] for o in outs) == [False, True]
    assert outs[0]["sha256"] == outs[1]["sha256"]
    runs = os.listdir(tmp_path / "runs")
    assert len(runs) == 1
    with open(tmp_path / "runs" / runs[0] / "results.jsonl") as f:
        steps = [json.loads(line)["step"] for line in f]
    assert steps == [0, 2, 3]  # one training, no duplicated records
    assert read_metadata(str(tmp_path / (runs[0] + ".safetensors")))["linear_probe"]


def test_phi_pt_location_is_where_write_phi_pt_writes(tmp_path):
    torch.manual_seed(3)
    state = {"conv.weight": torch.randn(2, 3), "bn.running_mean": torch.zeros(2)}
    path, digest = lp.phi_pt_location(state, str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()  # planning writes nothing
    assert lp.write_phi_pt(state, str(tmp_path / "out")) == (path, digest)
    weights, metadata = load_file(path)
    assert sorted(weights) == ["featurizer.bn.running_mean", "featurizer.conv.weight"]
    assert metadata["phi_pt"]["content_sha256"] == digest
