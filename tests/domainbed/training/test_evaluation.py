"""Evaluation reads only what selection needs; full evaluation selects the same."""

import json

import pytest

from domainbed import algorithms
from domainbed.lib.query import Q
from domainbed.model_selection import SELECTION_METHODS
from domainbed.scripts import train as train_script
from domainbed.training.evaluation import (EVERY, IMPROVING, SELECTED, id_val_accuracy,
                                           images_forwarded, splits_to_score,
                                           policy_of_test_in)
from domainbed.training.run import SCORED_AFTER_TRAINING
from tests.fixtures.recipe_runs import read_records


def test_plan_per_step():
    assert splits_to_score(0, 10, [0], 3) == ["env1_out", "env2_out"]
    assert splits_to_score(0, 10, [0], 3, needs=["test_in"]) == ["env1_out", "env2_out",
                                                                  "env0_in"]
    assert splits_to_score(3, 10, [0, 2], 3) == ["env1_out", "env0_in", "env2_in"]  # LOO
    every = [f"env{i}_{p}" for i in range(3) for p in ("in", "out")]
    assert splits_to_score(9, 10, [0], 3) == every  # the last step
    assert splits_to_score(3, 10, [0], 3, full_evaluation=True) == every
    assert splits_to_score(3, 10, [], 3) == ["env0_out", "env1_out", "env2_out"]  # aux run


def test_images_forwarded_of_a_pacs_sized_run_is_under_0_4_of_full():
    """PACS envs (2048, 2344, 1670, 3929 images, holdout 0.2), 5,001 steps, checkpoint every
    100, test env 3; the test split is scored at the 10 evaluations that improve on ID val
    (an assumption of this count; the benchmark measures a real run)."""
    sizes = {}
    for i, n in enumerate((2048, 2344, 1670, 3929)):
        sizes[f"env{i}_out"] = int(n * 0.2)
        sizes[f"env{i}_in"] = n - int(n * 0.2)
    steps = list(range(0, 5001, 100)) + [5000]
    steps = sorted(set(steps))
    ours = [splits_to_score(s, 5001, [3], 4, needs=["test_in"] if s < 1000 else ())
            for s in steps]
    full = [splits_to_score(s, 5001, [3], 4, full_evaluation=True) for s in steps]
    assert images_forwarded(ours, sizes) / images_forwarded(full, sizes) < 0.4


def test_the_test_split_is_scored_once_only_when_asked_and_a_best_checkpoint_scores_it():
    assert policy_of_test_in([0], False, False, True) == EVERY  # the default: LOO reads any
    assert policy_of_test_in([0], False, True, True) == SELECTED
    assert policy_of_test_in([0], True, True, True) == EVERY  # full evaluation: every split
    assert policy_of_test_in([0], False, True, False) == IMPROVING  # no model_best to score
    assert policy_of_test_in([0, 1], False, True, True) == EVERY  # pair runs: every step
    assert policy_of_test_in([], False, True, True) == EVERY  # nothing to score


def _run(out, *extra, algorithm="ERM", steps=13, test_envs=(0,), seed=2):
    hparams = json.dumps({"batch_size": 8, "backbone": "tiny_cnn"})
    assert train_script.main(["--dataset", "Debug28", "--algorithm", algorithm, "--steps",
                              str(steps), "--checkpoint_freq", "2", "--test_envs",
                              *[str(t) for t in test_envs], "--seed", str(seed),
                              "--output_dir", str(out), "--hparams", hparams, *extra]) == 0
    return read_records(str(out))


def _assert_same_scores(ours, full, label=""):
    """Every score ours wrote equals full evaluation's; the same records and keys."""
    assert [r["step"] for r in ours] == [r["step"] for r in full], label
    for o, f in zip(ours, full):
        assert o.keys() - {SCORED_AFTER_TRAINING} == f.keys(), label
        for key, value in o.items():
            if key.endswith("_acc") and value is not None:
                assert value == f[key], (label, o["step"], key)  # same weights, same scores


def _selected(records):
    """The record training-domain validation selects in one run (first best ID val)."""
    best = None
    for record in records:
        acc = id_val_accuracy(record, [1, 2])
        if not record.get("final_average") and acc is not None and (
                best is None or acc > id_val_accuracy(best, [1, 2])):
            best = record
    return best


@pytest.mark.slow
def test_selection_equals_full_evaluation(tmp_path):
    ours, full = _run(tmp_path / "ours"), _run(tmp_path / "full", "--full_evaluation")
    assert {r["evaluation"] for r in full} == {"full"}
    assert [r["evaluation"] for r in ours][-1] == "full"
    assert "selection" in {r["evaluation"] for r in ours}
    _assert_same_scores(ours, full)
    assert all(o["env0_in_acc"] is not None for o in ours)  # the default: every record
    assert all(o["env1_in_acc"] is None for o in ours[:-1])  # never read by selection
    assert not any(SCORED_AFTER_TRAINING in o for o in ours)


@pytest.mark.slow
def test_score_test_once_equals_full_evaluation(tmp_path):
    ours = _run(tmp_path / "ours", "--score_test_once")
    full = _run(tmp_path / "full", "--full_evaluation")
    assert [r["evaluation"] for r in ours][-1] == "full"
    assert "selection" in {r["evaluation"] for r in ours}
    _assert_same_scores(ours, full)
    selected = _selected(ours)
    assert selected["step"] < 12  # else this run does not exercise the deferred score
    assert selected[SCORED_AFTER_TRAINING] == ["env0_in_acc"]
    assert selected["env0_in_acc"] == _selected(full)["env0_in_acc"] is not None
    for o in ours:  # the test split of any other record is never read by selection
        assert o["env0_in_acc"] is None or o["step"] in (selected["step"], 12)
        assert o["env1_in_acc"] is None or o["step"] == 12
    for name in SELECTION_METHODS:
        method = SELECTION_METHODS.get(name)
        if name == "leave_one_out":
            continue  # needs pair runs
        assert method.sweep_acc(Q(ours)) == method.sweep_acc(Q(full)), name


@pytest.mark.slow
def test_every_algorithm_trains_and_selects_the_same_without_full_evaluation(tmp_path):
    """Evaluation never changes training (MTL's predict draws noise: it used to consume
    the training RNG, so full and selection evaluation trained different weights), and the
    test score of the selected record scored after training (``--score_test_once``) is the
    one full evaluation gives."""
    names = [n for n in algorithms.ALGORITHMS if n != "LPFT"]  # LPFT needs --init_from
    assert "MTL" in names
    for name in names:
        ours = _run(tmp_path / name / "ours", "--score_test_once", algorithm=name, steps=9)
        full = _run(tmp_path / name / "full", "--full_evaluation", algorithm=name, steps=9)
        _assert_same_scores(ours, full, name)
        for o, f in zip(ours, full):
            losses = [k for k in f if "loss" in k and not k.endswith("_acc")]
            assert [o[k] for k in losses] == [f[k] for k in losses], name
        selected = _selected(ours)
        assert selected["env0_in_acc"] == _selected(full)["env0_in_acc"], name
        for name_ in SELECTION_METHODS:
            if name_ != "leave_one_out":
                method = SELECTION_METHODS.get(name_)
                assert method.sweep_acc(Q(ours)) == method.sweep_acc(Q(full)), (name, name_)


@pytest.mark.slow
def test_leave_one_out_selects_the_same_as_with_full_evaluation(tmp_path):
    """Leave-one-domain-out chooses a record of the single-test-env run by the pair runs'
    scores, not by ID validation: by default that run scores its test split at every
    evaluation (it used to score it only at records that improve on ID validation)."""
    def sweep(mode, *extra):
        records = []
        for envs in ((0,), (0, 1), (0, 2)):
            out = tmp_path / mode / "_".join(map(str, envs))
            records += _run(out, *extra, test_envs=envs, steps=21, seed=1)
        return records
    ours, full = sweep("ours"), sweep("full", "--full_evaluation")
    loo = SELECTION_METHODS.get("leave_one_out")
    expected = loo.sweep_acc(Q(full))
    assert expected is not None
    # the old plan gave None here (the cell "X"): the record LOO selects had no test score
    assert loo.sweep_acc(Q(ours)) == expected
    for name in ("training_domain", "oracle"):
        method = SELECTION_METHODS.get(name)
        assert method.sweep_acc(Q(ours)) == method.sweep_acc(Q(full)), name
