"""InterTraining / Ratatouille / Fusing / LinearProbe: freezing schedule and exact resume."""

import json
import os

import pytest
import torch

from domainbed import algorithms, hparams_registry
from domainbed.algorithms.base import register_algorithm
from domainbed.lib.weights import load_file, save_weights
from domainbed.scripts.train import build_parser
from domainbed.training.run import train
from domainbed_aux.algorithms import InterTraining, starts_from_auxiliary

AUX_INIT = {"member": {"index": 1, "kind": "aux", "dataset": "Other"}}
PRETRAINED_INIT = {"member": {"index": 0, "kind": "pretrained"}}


pytestmark = pytest.mark.usefixtures("one_thread")


def _make(name="InterTraining", lp_steps=3):
    hparams = hparams_registry.default_hparams(name, "Debug28")
    hparams.update({"lp_steps": lp_steps, "batch_size": 4, "backbone": "tiny_cnn"})
    return algorithms.get_algorithm_class(name)((3, 28, 28), 2, 2, hparams)


def _batches(seed):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(4, 3, 28, 28, generator=g), torch.randint(0, 2, (4,), generator=g))
            for _ in range(2)]


def _copy(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def _n_opt_params(algorithm):
    return sum(len(g["params"]) for g in algorithm.optimizer.param_groups)


def test_registered_with_lp_steps_hparam():
    for name in ("InterTraining", "Ratatouille", "Fusing", "LinearProbe"):
        assert name in algorithms.ALGORITHMS
    assert hparams_registry.default_hparams("Ratatouille", "Debug28")["lp_steps"] == 200
    assert hparams_registry.random_hparams("Fusing", "Debug28", 3, space="mild")["lp_steps"] == 200


@pytest.mark.parametrize("name", ["InterTraining", "Ratatouille", "Fusing"])
def test_aux_init_freezes_featurizer_for_exactly_lp_steps(name):
    torch.manual_seed(0)
    algorithm = _make(name, lp_steps=3)
    algorithm.after_init(AUX_INIT)
    n_classifier = len(list(algorithm.classifier.parameters()))
    n_all = len(list(algorithm.network.parameters()))
    assert _n_opt_params(algorithm) == n_classifier < n_all
    featurizer0 = _copy(algorithm.featurizer)
    classifier0 = _copy(algorithm.classifier)
    for step in range(3):
        algorithm.update(_batches(step))
        assert _same(_copy(algorithm.featurizer), featurizer0), f"featurizer moved at {step}"
        assert all(p.grad is None for p in algorithm.featurizer.parameters())
    assert not _same(_copy(algorithm.classifier), classifier0)
    algorithm.update(_batches(3))  # the 4th update trains everything
    assert _n_opt_params(algorithm) == n_all
    assert not _same(_copy(algorithm.featurizer), featurizer0)
    assert all(p.requires_grad for p in algorithm.featurizer.parameters())


@pytest.mark.parametrize("init", [None, PRETRAINED_INIT, {"path": "x.safetensors"}])
def test_member_zero_or_unknown_init_does_not_freeze(init):
    torch.manual_seed(0)
    algorithm = _make(lp_steps=3)
    algorithm.after_init(init)
    assert _n_opt_params(algorithm) == len(list(algorithm.network.parameters()))
    featurizer0 = _copy(algorithm.featurizer)
    algorithm.update(_batches(0))
    assert not _same(_copy(algorithm.featurizer), featurizer0)


def test_fused_init_counts_as_auxiliary():
    assert starts_from_auxiliary({"member": {"kind": "fused", "index": None}})
    assert not starts_from_auxiliary({"member": {"kind": "pretrained", "index": 0}})


def test_linear_probe_never_moves_featurizer():
    torch.manual_seed(0)
    algorithm = _make("LinearProbe")
    featurizer0 = _copy(algorithm.featurizer)
    for step in range(4):
        algorithm.update(_batches(step))
    assert _same(_copy(algorithm.featurizer), featurizer0)
    assert _n_opt_params(algorithm) == len(list(algorithm.classifier.parameters()))


# --------------------------------------------------------------- exact resume through train

class _Crash(Exception):
    pass


@register_algorithm("_CrashingInterTraining")
class _CrashingInterTraining(InterTraining):
    """Raises once at the start of update number ``crash_at`` (a simulated kill)."""

    crash_at = None

    def update(self, minibatches, unlabeled=None):
        if type(self).crash_at is not None and self.update_count == type(self).crash_at:
            type(self).crash_at = None
            raise _Crash("simulated kill")
        return super().update(minibatches, unlabeled)


def _init_file(tmp_path):
    torch.manual_seed(123)
    model = _make()
    state = {k: v for k, v in model.state_dict().items()
             if k.startswith(("featurizer.", "classifier."))}
    path = str(tmp_path / "init.safetensors")
    save_weights(path, state, metadata={"init": AUX_INIT})
    return path


def _args(out, init_from, algorithm):
    return build_parser().parse_args([
        "--dataset", "Debug28", "--algorithm", algorithm, "--output_dir", str(out),
        "--steps", "6", "--checkpoint_freq", "2", "--test_envs", "0", "--init_from", init_from,
        "--hparams", json.dumps({"batch_size": 4, "lp_steps": 3, "backbone": "tiny_cnn"}),
        "--seed", "1"])


def _records(out):
    with open(os.path.join(out, "results.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    return [{k: v for k, v in r.items() if k not in ("step_time", "mem_gb", "args")}
            for r in rows]


def test_resume_across_lp_boundary_is_exact(tmp_path):
    init_from = _init_file(tmp_path)
    straight = tmp_path / "straight"
    train(_args(straight, init_from, "_CrashingInterTraining"))

    resumed = tmp_path / "resumed"
    _CrashingInterTraining.crash_at = 3  # checkpoint after step 2 is still frozen
    with pytest.raises(_Crash):
        train(_args(resumed, init_from, "_CrashingInterTraining"))
    assert os.path.exists(resumed / "checkpoint.safetensors")
    assert not os.path.exists(resumed / "done")
    train(_args(resumed, init_from, "_CrashingInterTraining"))

    a, _ = load_file(str(straight / "model.safetensors"))
    b, _ = load_file(str(resumed / "model.safetensors"))
    assert set(a) == set(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    init, _ = load_file(init_from)
    assert any(not torch.equal(a[k], init[k]) for k in init if k.startswith("featurizer."))
    assert _records(straight) == _records(resumed)
    assert all(r["init"]["member"]["kind"] == "aux" for r in _records(resumed))
