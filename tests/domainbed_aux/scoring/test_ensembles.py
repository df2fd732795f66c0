"""Ensembles: the average of softmax predictions, streamed over runs, on the soups' split."""

import pytest
import torch

from domainbed.errors import DomainBedError
from domainbed.lib.fast_data_loader import eval_loader
from domainbed_aux.scoring.ensembles import ensemble
from domainbed_aux.scoring.runs import find_runs

from tests.fixtures.runs import make_run, manual_model, manual_splits, random_state


def _manual_ensemble_acc(states, split):
    models = [manual_model(s) for s in states]
    correct, total = 0, 0
    with torch.no_grad():
        for x, y in eval_loader(split, 64, 0):
            probs = sum(torch.softmax(m.predict(x), 1) for m in models) / len(models)
            correct += int(probs.argmax(1).eq(y).sum())
            total += len(y)
    return correct / total


@pytest.mark.slow
def test_ensemble_equals_manual_softmax_average(tmp_path):
    states = [random_state(20 + s) for s in range(3)]
    for i, state in enumerate(states):
        make_run(tmp_path / f"r{i}", state)
    result = ensemble(find_runs([str(tmp_path)]), splits=["test_in", "id_val"])
    splits = manual_splits(0)
    assert result["members"] == [str(tmp_path / f"r{i}") for i in range(3)]
    assert result["accuracies"]["test_in"] == pytest.approx(
        _manual_ensemble_acc(states, splits.eval_in[0]), abs=1e-12)
    id_val = torch.utils.data.ConcatDataset([splits.eval_out[1], splits.eval_out[2]])
    assert result["accuracies"]["id_val"] == pytest.approx(
        _manual_ensemble_acc(states, id_val), abs=1e-12)


def test_ensemble_per_trial_seed_on_each_trials_split(tmp_path):
    states = [random_state(30 + s) for s in range(4)]
    for i, state in enumerate(states):
        make_run(tmp_path / f"r{i}", state, trial_seed=i % 2)
    result = ensemble(find_runs([str(tmp_path)]))
    expected = {str(t): _manual_ensemble_acc(states[t::2], manual_splits(t).eval_in[0])
                for t in (0, 1)}
    assert result["per_trial"]["test_in"] == pytest.approx(expected)
    assert result["accuracies"]["test_in"] == pytest.approx(sum(expected.values()) / 2)


def test_ensemble_rejects_other_class_counts_and_empty_input(tmp_path):
    make_run(tmp_path / "a", random_state(0))
    make_run(tmp_path / "b", random_state(1, num_classes=3), num_classes=3)
    with pytest.raises(DomainBedError, match="predicts 3 classes"):
        ensemble(find_runs([str(tmp_path)]))
    with pytest.raises(DomainBedError, match="zero runs"):
        ensemble([])
