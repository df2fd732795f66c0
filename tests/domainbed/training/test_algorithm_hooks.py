"""The training loop's algorithm hooks: each is declared on ``Algorithm`` with a default
(an algorithm that overrides none of them trains through the loop), and an override is
called."""

import ast
import json
import os

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from domainbed.algorithms.base import Algorithm, make_optimizer, register_algorithm
from domainbed.algorithms.registry import ALGORITHM_REGISTRY
from domainbed.lib import run_dir
from domainbed.scripts import train as train_script

TRAINING = os.path.join(os.path.dirname(train_script.__file__), os.pardir, "training")
FAST = json.dumps({"batch_size": 8, "backbone": "tiny_cnn"})
HOOKS = ("after_init", "stop_training", "on_evaluation", "final_evaluation")


def _methods_called_on_the_algorithm():
    """``name`` of every ``algorithm.name(...)`` / ``setup.algorithm.name(...)`` call in
    ``domainbed/training``."""
    called = set()
    for file in sorted(os.listdir(TRAINING)):
        if not file.endswith(".py"):
            continue
        with open(os.path.join(TRAINING, file)) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            owner = node.func.value
            if (isinstance(owner, ast.Name) and owner.id == "algorithm") or \
                    (isinstance(owner, ast.Attribute) and owner.attr == "algorithm"):
                called.add(node.func.attr)
    return called


def test_every_method_the_loop_calls_is_declared_on_algorithm():
    called = _methods_called_on_the_algorithm()
    assert set(HOOKS) <= called  # the loop calls the hooks directly, not through getattr
    for name in called:
        assert callable(getattr(Algorithm, name, None)), name
    for name in HOOKS:
        assert name in Algorithm.__dict__ and Algorithm.__dict__[name].__doc__, name


def test_the_defaults_do_what_an_absent_hook_did():
    alg = _Bare((3, 28, 28), 2, 3, {"lr": 1e-3, "weight_decay": 0.0})
    assert alg.after_init(None) is None
    assert alg.stop_training() is False
    assert alg.on_evaluation({"step": 0}, []) is None
    assert alg.final_evaluation() is None


class _Bare(Algorithm):
    """A linear model that overrides ``update`` and ``predict`` only."""

    def __init__(self, input_shape, num_classes, num_domains, hparams):
        super().__init__(input_shape, num_classes, num_domains, hparams)
        n_inputs = 1
        for size in input_shape:
            n_inputs *= size
        self.network = nn.Sequential(nn.Flatten(), nn.Linear(n_inputs, num_classes))
        self.optimizer = make_optimizer(self.network.parameters(), hparams)

    def update(self, minibatches, unlabeled=None):
        x = torch.cat([x for x, _ in minibatches])
        y = torch.cat([y for _, y in minibatches])
        loss = F.cross_entropy(self.predict(x), y)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.item()}

    def predict(self, x):
        return self.network(x)


class _Hooked(_Bare):
    """Overrides every hook and notes the calls; stops before step 5."""

    calls = []

    def after_init(self, init):
        type(self).calls.append(("after_init", init))

    def stop_training(self):
        type(self).calls.append(("stop_training",))
        return self.steps_done == 5

    def on_evaluation(self, record, val_loaders):
        names = [name for name, _ in val_loaders]
        type(self).calls.append(("on_evaluation", record["step"], names))
        return {"hooked_step": record["step"]}

    def final_evaluation(self):
        type(self).calls.append(("final_evaluation",))
        return {"hooked_final": True}

    steps_done = 0

    def update(self, minibatches, unlabeled=None):
        type(self).steps_done += 1
        return super().update(minibatches, unlabeled)


@pytest.fixture
def registered():
    for cls in (_Bare, _Hooked):
        register_algorithm("_" + cls.__name__.strip("_"))(cls)
    _Hooked.calls, _Hooked.steps_done = [], 0
    yield
    for cls in (_Bare, _Hooked):
        ALGORITHM_REGISTRY.unregister("_" + cls.__name__.strip("_"))


def _train(out, algorithm, steps):
    assert train_script.main(["--dataset", "Debug28", "--algorithm", algorithm,
                              "--steps", str(steps), "--checkpoint_freq", "3",
                              "--test_envs", "0", "--output_dir", str(out),
                              "--hparams", FAST]) == 0
    with open(os.path.join(out, run_dir.RESULTS)) as f:
        return [json.loads(line) for line in f]


def test_an_algorithm_that_overrides_no_hook_trains_through_the_loop(tmp_path, registered,
                                                                       one_thread):
    out = tmp_path / "run"
    records = _train(out, "_Bare", 7)
    assert [r["step"] for r in records] == [0, 3, 6]  # no early stop, no final record
    assert not any("final_average" in r or "stopped_early" in r for r in records)
    assert (out / run_dir.DONE).exists() and (out / "model.safetensors").exists()


def test_overridden_hooks_are_called(tmp_path, registered, one_thread):
    records = _train(tmp_path / "run", "_Hooked", 10)
    calls = _Hooked.calls
    assert calls[0] == ("after_init", None)
    assert [c for c in calls if c[0] == "on_evaluation"] == [
        ("on_evaluation", 0, ["env1_out", "env2_out"]),
        ("on_evaluation", 3, ["env1_out", "env2_out"])]
    assert calls[-1] == ("final_evaluation",)
    assert sum(c == ("stop_training",) for c in calls) == 6  # before steps 0..5; 5 stops
    assert [r["step"] for r in records] == [0, 3, 4]
    assert [r.get("hooked_step") for r in records] == [0, 3, None]
    final = records[-1]
    assert final["final_average"] and final["stopped_early"] and final["hooked_final"]
