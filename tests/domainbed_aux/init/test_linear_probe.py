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


def _records(run_dir):
    with open(os.path.join(run_dir, "results.jsonl")) as f:
        return [json.loads(line) for line in f]


def _out_features(spec, featurizer_state):
    """Eval-mode features and labels of the training envs' out splits of ``spec``'s run."""
    from domainbed import datasets, hparams_registry, networks
    from domainbed.training.setup import make_splits
    hparams = hparams_registry.default_hparams("LinearProbe", spec.dataset, spec.hparams_space)
    hparams.update(spec.hparams)
    dataset = datasets.get_dataset_class(spec.dataset)("", spec.test_envs, hparams)
    splits = make_splits(dataset, spec.test_envs, spec.trial_seed, spec.holdout_fraction,
                         0.0, False)
    featurizer = networks.Featurizer(dataset.input_shape, hparams)
    featurizer.load_state_dict(featurizer_state)
    featurizer.eval()
    out = {}
    with torch.no_grad():
        for j in range(len(dataset)):
            if j in spec.test_envs:
                continue
            split = splits.eval_out[j]
            x = torch.stack([split[i][0] for i in range(len(split))])
            y = torch.tensor([int(split[i][1]) for i in range(len(split))])
            out[j] = (featurizer(x), y)
    return out


def _head_accuracies(classifier_state, features):
    head = torch.nn.Linear(classifier_state["weight"].shape[1], classifier_state["weight"].shape[0])
    head.load_state_dict(classifier_state)
    with torch.no_grad():
        return {j: (head(x).argmax(1) == y).float().mean().item() for j, (x, y) in features.items()}


def test_probe_holds_frozen_phi_pt_and_a_trained_classifier(tmp_path):
    spec = _spec()
    first = lp.ensure_linear_probe(spec, str(tmp_path))
    assert first.trained and os.path.isfile(first.path)
    featurizer, classifier, metadata = lp.read_linear_probe(first.path)
    phi_pt = lp.pretrained_featurizer_state(spec)
    assert set(featurizer) == set(phi_pt)
    assert all(torch.equal(featurizer[k], phi_pt[k]) for k in phi_pt)
    run_dir = os.path.join(str(tmp_path), "runs", spec.key())
    records = _records(run_dir)
    assert os.path.isfile(os.path.join(run_dir, "done"))
    args = records[-1]["args"]
    # same train envs and splits as the target runs of (dataset, test_envs, trial_seed)
    assert (args["algorithm"], args["test_envs"], args["trial_seed"]) == ("LinearProbe", [0], 1)
    assert args["hparams_seed"] == 0 and [r["step"] for r in records] == [0, 2]
    assert os.path.isabs(args["data_dir"]) and args["hparams_space"] == "upstream"
    # w_lp is the head of the best ID-validation evaluation: it scores what that record says
    best = metadata["linear_probe"]["best_checkpoint"]
    record = next(r for r in records if r["step"] == best["step"])
    accs = _head_accuracies(classifier, _out_features(spec, phi_pt))
    assert all(abs(accs[j] - record[f"env{j}_out_acc"]) < 1e-6 for j in accs)
    assert metadata["init"]["member"]["kind"] == "pretrained"
    assert metadata["linear_probe"]["key"] == spec.key()
    assert os.path.isabs(metadata["linear_probe"]["run_dir"])

    again = lp.ensure_linear_probe(_spec(), str(tmp_path))
    assert not again.trained and again.sha256 == first.sha256


def test_probe_of_a_batch_norm_backbone_uses_frozen_statistics(tmp_path):
    """A ResNet's probe, as in the paper: features of the frozen featurizer in eval mode
    (running statistics, never updated), and a head fitted on exactly those features."""
    hparams = {"batch_size": 8, "backbone": "resnet18", "pretrained": False}
    spec = _spec(hparams=hparams, hparams_space="mild", steps=6, checkpoint_freq=1)
    phi_pt = lp.pretrained_featurizer_state(spec)
    # non-trivial running statistics, so that batch statistics would give other features
    torch.manual_seed(0)
    for key in phi_pt:
        if key.endswith("running_mean"):
            phi_pt[key].normal_(0.0, 0.5)
        elif key.endswith("running_var"):
            phi_pt[key].uniform_(0.5, 2.0)
    file = str(tmp_path / "phi_pt.safetensors")
    save_weights(file, phi_pt)
    spec.pretrained_featurizer = file
    probe = lp.ensure_linear_probe(spec, str(tmp_path / "lp"))
    stored, classifier, metadata = lp.read_linear_probe(probe.path)
    assert all(torch.equal(stored[k], phi_pt[k]) for k in phi_pt)  # statistics untouched
    records = _records(metadata["linear_probe"]["run_dir"])
    assert records[-1]["hparams"]["freeze_bn"] is True  # the mild space's defaults
    best = metadata["linear_probe"]["best_checkpoint"]
    record = next(r for r in records if r["step"] == best["step"])
    accs = _head_accuracies(classifier, _out_features(spec, phi_pt))
    assert all(abs(accs[j] - record[f"env{j}_out_acc"]) < 1e-6 for j in accs)


def test_linear_probe_algorithm_keeps_batch_norm_in_eval_mode():
    """The LinearProbe algorithm of the training loop: the loop's train() leaves the
    featurizer in eval mode, so an update never touches the running statistics."""
    import domainbed_aux.plugin  # noqa: F401  registers LinearProbe
    from domainbed import algorithms, hparams_registry
    hparams = hparams_registry.default_hparams("LinearProbe", "Debug28")
    hparams.update(batch_size=4, backbone="resnet18", pretrained=False)
    torch.manual_seed(0)
    algorithm = algorithms.get_algorithm_class("LinearProbe")((3, 28, 28), 2, 2, hparams)
    before = {k: v.clone() for k, v in algorithm.featurizer.state_dict().items()}
    algorithm.train()
    assert not algorithm.featurizer.training and algorithm.classifier.training
    x, y = torch.randn(8, 3, 28, 28), torch.randint(0, 2, (8,))
    algorithm.update([(x[:4], y[:4]), (x[4:], y[4:])])
    after = algorithm.featurizer.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_a_probe_fitted_twice_has_the_same_head(tmp_path):
    """A fit is a pure function of its spec and phi_pt (an interrupted one just runs again)."""
    a = lp.ensure_linear_probe(_spec(), str(tmp_path / "a"))
    b = lp.ensure_linear_probe(_spec(), str(tmp_path / "b"))
    assert load_file(a.path)[0]["classifier.weight"].equal(load_file(b.path)[0]["classifier.weight"])


def test_probe_key_depends_on_what_identifies_it():
    keys = {_spec().key(), _spec(trial_seed=2).key(), _spec(test_envs=[1]).key(),
            _spec(steps=5).key(), _spec(hparams={"batch_size": 4}).key(),
            _spec(hparams_space="mild").key(), _spec(checkpoint_freq=1).key()}
    assert len(keys) == 7  # a probe of another space is another file
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
    assert steps == [0, 2, 3]  # one fit, no duplicated records
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
