"""MA and SWAD: averages equal hand-computed ones; exact resume; runs in the training CLI."""

import json
import os

import pytest
import torch

from domainbed import algorithms, hparams_registry
from domainbed.lib.weights import load_file
from domainbed.scripts import train as train_script

SHAPE = (3, 28, 28)


def _algorithm(name, **overrides):
    hparams = hparams_registry.default_hparams(name, "Debug28")
    hparams.update({"batch_size": 4, "lr": 1e-2, "backbone": "tiny_cnn", **overrides})
    torch.manual_seed(0)
    return algorithms.get_algorithm_class(name)(SHAPE, 2, 2, hparams)


def _batches(n_steps, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [[(torch.randn(4, *SHAPE, generator=g), torch.randint(0, 2, (4,), generator=g))
             for _ in range(2)] for _ in range(n_steps)]


def _live(alg):
    return {k: v.detach().clone() for k, v in alg.network_live.state_dict().items()}


def _mean(states):
    return {k: sum(s[k].double() for s in states) / len(states) for k in states[0]}


def _assert_close(state, expected, atol=1e-6):
    for key, value in expected.items():
        if value.is_floating_point():
            torch.testing.assert_close(state[key].double(), value, atol=atol, rtol=0)


def test_ma_is_the_uniform_average_from_ma_start_iter():
    alg = _algorithm("MA", ma_start_iter=2)
    trajectory = []
    for step, batch in enumerate(_batches(6)):
        alg.update(batch)
        trajectory.append(_live(alg))
        if step < 2:  # before the start the average mirrors the live network
            _assert_close(alg.network.state_dict(), _mean([trajectory[-1]]), atol=0)
    expected = _mean(trajectory[2:])
    _assert_close(alg.network.state_dict(), expected)
    assert alg.ma_count == 4
    # the trajectory moved: the average is not the last point
    assert not torch.allclose(alg.network.state_dict()["1.weight"],
                              trajectory[-1]["1.weight"])
    # the standard names hold the average; predict uses it in eval mode only
    assert torch.equal(alg.state_dict()["featurizer.features.0.weight"],
                       alg.network.state_dict()["0.features.0.weight"])
    x = torch.randn(3, *SHAPE)
    alg.eval()
    assert torch.allclose(alg.predict(x), alg.network(x))
    alg.train()
    assert torch.allclose(alg.predict(x), alg.network_live(x))


@pytest.mark.slow
def test_ma_resume_from_checkpoint_state_is_exact():
    batches = _batches(5)
    reference = _algorithm("MA", ma_start_iter=1)
    for batch in batches:
        reference.update(batch)

    first = _algorithm("MA", ma_start_iter=1)
    for batch in batches[:3]:
        first.update(batch)
    resumed = _algorithm("MA", ma_start_iter=1)
    resumed.load_state_dict(first.state_dict())
    resumed.load_extra_state(first.extra_state())
    resumed.optimizer.load_state_dict(first.optimizer.state_dict())
    for batch in batches[3:]:
        resumed.update(batch)
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, atol=1e-6, rtol=0)


def test_init_from_goes_to_the_live_network():
    alg = _algorithm("MA")
    with torch.no_grad():
        for p in alg.classifier.parameters():  # what --init_from does: the standard names
            p.fill_(0.25)
    alg.after_init({"path": "x"})
    assert torch.all(alg.network_live[1].weight == 0.25)
    alg.update(_batches(1)[0])  # the optimiser trains the live parameters
    assert not torch.all(alg.network_live[1].weight == 0.25)


def test_swad_averages_the_selected_window(monkeypatch):
    alg = _algorithm("SWAD", swad_n_converge=2, swad_n_tolerance=2,
                     swad_tolerance_ratio=0.1)
    losses = iter([2.0, 1.0, 1.05, 1.5, 1.6, 0.5, 0.4])
    monkeypatch.setattr(alg, "validation_loss", lambda loaders: next(losses))
    trajectory, outputs = [], []
    step = 0
    # evaluations after steps 1, 3, 5, 7, 9, 11, 13 (segments of two steps each)
    for batch in _batches(14):
        alg.update(batch)
        trajectory.append(_live(alg))
        if step % 2 == 1:
            outputs.append(alg.on_evaluation({"step": step}, []))
        step += 1
    # start after the 3rd evaluation (losses 1.0, 1.05: oldest is the minimum) at segment 2
    # (steps 2-3); threshold 1.1; 1.05 within; 1.5 and 1.6 above -> stop at the 5th
    assert [o["swad_started"] for o in outputs] == [False, False, True, True, True, True, True]
    assert [o["swad_stopped"] for o in outputs] == [False] * 4 + [True] * 3
    assert outputs[-1]["swad_window_start"] == 2 and outputs[-1]["swad_window_end"] == 5
    assert outputs[-1]["swad_n_averaged"] == 4
    _assert_close(alg.network.state_dict(), _mean(trajectory[2:6]), atol=1e-6)
    # a model loaded from the file predicts with the window average
    fresh = _algorithm("SWAD")
    fresh.load_state_dict(alg.state_dict())
    fresh.eval()
    x = torch.randn(2, *SHAPE)
    assert torch.allclose(fresh.predict(x), alg.network(x))
    alg.eval()
    assert torch.allclose(alg.predict(x), alg.network_live(x))  # trained here: live


def _read_records(path):
    with open(os.path.join(path, "results.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.mark.slow
def test_ma_and_swad_in_the_training_cli(tmp_path):
    ma_dir, swad_dir = tmp_path / "ma", tmp_path / "swad"
    assert train_script.main(["--dataset", "Debug28", "--algorithm", "MA", "--steps", "6",
                              "--checkpoint_freq", "3", "--output_dir", str(ma_dir),
                              "--hparams", json.dumps({"batch_size": 8, "backbone": "tiny_cnn",
                                                       "ma_start_iter": 2})]) == 0
    assert train_script.main(["--dataset", "Debug28", "--algorithm", "SWAD", "--steps", "8",
                              "--checkpoint_freq", "1", "--output_dir", str(swad_dir),
                              "--hparams", json.dumps({"batch_size": 8, "backbone": "tiny_cnn",
                                                       "swad_n_converge": 2})]) == 0
    for run in (ma_dir, swad_dir):
        assert (run / "done").exists() and (run / "model.safetensors").exists()
    swad_records = _read_records(swad_dir)
    # one record per step scoring the live network, then one scoring the averaged window
    assert len(swad_records) == 9
    assert all("swad_val_loss" in r and "swad_n_averaged" in r for r in swad_records[:8])
    assert [r.get("final_average", False) for r in swad_records] == [False] * 8 + [True]
    final = swad_records[-1]
    assert final["step"] == 7 and final["swad_n_averaged"] == swad_records[-2]["swad_n_averaged"]
    assert _read_records(ma_dir)[-1]["hparams"]["ma_start_iter"] == 2

    content, _ = load_file(str(ma_dir / "model.safetensors"))
    # featurizer.* (what the pool and soups read) is the average, not the live network
    assert not torch.equal(content["featurizer.features.0.weight"],
                           content["network_live.0.features.0.weight"])

    from domainbed_aux.scoring.evaluation import RunEvaluator
    from domainbed_aux.scoring.runs import read_run
    evaluator = RunEvaluator(read_run(str(ma_dir)))
    # MA's evaluations score the average: re-scoring the saved file reproduces the record
    assert evaluator.accuracy(content, "test_in") == pytest.approx(
        _read_records(ma_dir)[-1]["env0_in_acc"])

    # SWAD's final record scores the saved average (what soups, the pool and inference
    # read), and that is the record model selection reports for the run
    swad_content, _ = load_file(str(swad_dir / "model.safetensors"))
    swad_run = read_run(str(swad_dir))
    assert swad_run.final_record == final
    swad_eval = RunEvaluator(swad_run)
    assert swad_eval.accuracy(swad_content, "test_in") == pytest.approx(final["env0_in_acc"])
    id_val = (final["env1_out_acc"] + final["env2_out_acc"]) / 2
    # (the envs of Debug28 have equal out splits: pooled == mean)
    assert swad_eval.accuracy(swad_content, "id_val") == pytest.approx(id_val)
    from domainbed.lib.query import Q
    from domainbed.model_selection import IIDAccuracySelectionMethod, OracleSelectionMethod
    for method in (IIDAccuracySelectionMethod, OracleSelectionMethod):
        assert method.sweep_acc(Q(swad_records)) == final["env0_in_acc"]


def test_swad_resume_through_a_checkpoint_file_is_exact(tmp_path, monkeypatch):
    from domainbed.lib.weights import load_state, save_state
    settings = dict(swad_n_converge=2, swad_n_tolerance=2, swad_tolerance_ratio=0.1)
    losses = [2.0, 1.0, 1.05, 1.5, 1.6]
    batches = _batches(10)

    def run(alg, steps, loss_iter):
        monkeypatch.setattr(alg, "validation_loss", lambda loaders: next(loss_iter))
        for step in steps:
            alg.update(batches[step])
            if step % 2 == 1:
                alg.on_evaluation({"step": step}, [])

    reference = _algorithm("SWAD", **settings)
    run(reference, range(10), iter(losses))
    first = _algorithm("SWAD", **settings)
    loss_iter = iter(losses)
    run(first, range(5), loss_iter)  # stops mid-segment: the open segment must survive
    path = str(tmp_path / "ckpt.safetensors")
    save_state(path, {"model": first.state_dict(), "extra": first.extra_state(),
                      "opt": first.optimizer.state_dict()})
    state, _ = load_state(path)
    resumed = _algorithm("SWAD", **settings)
    resumed.load_state_dict(state["model"])
    resumed.load_extra_state(state["extra"])
    resumed.optimizer.load_state_dict(state["opt"])
    run(resumed, range(5, 10), loss_iter)
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, atol=1e-6, rtol=0)
