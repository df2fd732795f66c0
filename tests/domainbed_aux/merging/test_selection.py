"""Hyperparameters and members chosen on ID validation, never on the test domain."""

import os
import shutil

import pytest
import torch

from domainbed.errors import DomainBedError
from domainbed_aux.merging import MergeInputs, choose_hparams, get_rule, greedy_merge, merge_with


def states(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    t0 = {"w": torch.randn(6, generator=g)}
    members = [(f"m{i}", {"w": t0["w"] + 0.2 * torch.randn(6, generator=g)}) for i in range(n)]
    return t0, members


def test_the_grid_point_with_the_best_id_validation_accuracy_is_kept():
    t0, members = states()
    target = t0["w"] + 0.6 * sum(m["w"] - t0["w"] for _, m in members)
    seen = []

    def evaluate(state):  # best at lambda = 0.6
        seen.append(state["w"].clone())
        return -float((state["w"] - target).abs().sum())
    result = choose_hparams("task_arithmetic", MergeInputs(members, theta_0=t0,
                                                           evaluate=evaluate))
    assert result.hparams == {"lambda": 0.6}
    grid = result.details["selection"]["grid"]
    assert [p["hparams"]["lambda"] for p in grid] == [0.3, 0.1, 0.2, 0.4, 0.5, 0.6, 0.8, 1.0]
    assert len(seen) == len(grid) and result.val_acc == max(p["id_val"] for p in grid)
    assert torch.allclose(result.state_dict["w"], target)


def test_ties_in_id_validation_keep_the_defaults_and_fixed_hparams_are_not_searched():
    t0, members = states()
    result = choose_hparams("ties", MergeInputs(members, theta_0=t0, evaluate=lambda s: 0.5))
    assert result.hparams == {"density": 0.2, "lambda": 1.0}
    calls = []
    result = choose_hparams("ties", MergeInputs(members, theta_0=t0,
                                                evaluate=lambda s: calls.append(1) or 0.5),
                            {"density": 0.5})
    assert len(calls) == 5 and result.hparams["density"] == 0.5
    calls.clear()
    result = choose_hparams("ties", MergeInputs(members, theta_0=t0, evaluate=lambda s: 1 / 0),
                            {"density": 0.5, "lambda": 1.0})  # one point: nothing to score
    assert result.hparams == {"density": 0.5, "lambda": 1.0}
    with pytest.raises(DomainBedError, match="chooses density, lambda on ID validation"):
        choose_hparams("ties", MergeInputs(members, theta_0=t0))
    with pytest.raises(DomainBedError, match="no hyperparameter 'rho'.*density, lambda"):
        choose_hparams("ties", MergeInputs(members, theta_0=t0), {"rho": 1})
    with pytest.raises(DomainBedError, match="needs theta_0"):
        choose_hparams("ties", MergeInputs(members, evaluate=lambda s: 0.5))


def test_greedy_over_any_rule_adds_members_while_id_validation_does_not_degrade():
    t0, members = states(4)
    bad = ("bad", {"w": t0["w"] + 50.0})
    members = members[:2] + [bad] + members[2:]
    val = {"m0": 0.9, "m1": 0.8, "bad": 0.85, "m2": 0.7, "m3": 0.6}

    good = t0["w"] + sum(m["w"] - t0["w"] for i, (_, m) in enumerate(members) if i != 2) / 4

    def evaluate(state):  # near the good members' mean; the bad member pulls merges away
        return -float((state["w"] - good).abs().max())
    result = greedy_merge("task_arithmetic", MergeInputs(members, theta_0=t0, evaluate=evaluate,
                                                         val_acc_of_member=val),
                          {"lambda": 0.25})
    assert "bad" not in result.members and result.members[0] == "m0"
    assert [t["member"] for t in result.trace] == ["m0", "bad", "m1", "m2", "m3"]
    assert result.trace[1]["kept"] is False and result.trace[2]["kept"] is True
    assert result.rule == "task_arithmetic+greedy" and result.n_candidates == 5
    # each candidate set chose its own hyperparameters on ID validation
    result = greedy_merge("task_arithmetic", MergeInputs(members, theta_0=t0, evaluate=evaluate,
                                                         val_acc_of_member=val), {})
    assert "bad" not in result.members and "lambda" in result.hparams
    with pytest.raises(DomainBedError, match="selects its members itself"):
        greedy_merge("greedy", MergeInputs(members, evaluate=evaluate, val_acc_of_member=val))


def test_merge_with_strict_greedy_needs_an_improvement():
    t0, members = states(3)
    scores = iter([0.5, 0.5, 0.7])
    result = merge_with("model_stock", MergeInputs(members, theta_0=t0,
                                                   evaluate=lambda s: next(scores),
                                                   val_acc_of_member={"m0": 3, "m1": 2,
                                                                      "m2": 1}),
                        greedy="strict")
    assert result.members == ["m0", "m2"]


# ------------------------------------------------------------------- the test domain is not read

class SplitSpy:
    """Wraps an EvaluatorCache: records every split an evaluator reads (``eval_sets`` is
    where every score and every batch of data comes from)."""

    def __init__(self, cache):
        self.cache, self.splits = cache, []
        self.data_dir, self.device = cache.data_dir, cache.device

    def __call__(self, run):
        evaluator = self.cache(run)
        if not getattr(evaluator, "_spied", False):
            original = evaluator.eval_sets

            def eval_sets(split):
                self.splits.append(split)
                return original(split)
            evaluator.eval_sets = eval_sets
            evaluator._spied = True
        return evaluator


RULES_TO_CHOOSE = ("task_arithmetic", "ties", "dare_linear", "dare_ties", "model_stock",
                   "slerp", "slerp_tangent", "fisher", "regmean", "greedy", "greedy_strict")


def test_choosing_hyperparameters_and_members_never_reads_the_test_domain(probe_sweep, tmp_path,
                                                                          one_thread):
    from domainbed_aux.scoring.evaluation import EvaluatorCache
    from domainbed_aux.scoring.runs import find_runs
    from domainbed_aux.scoring.soups import soup
    data = str(tmp_path / "data")
    shutil.copytree(probe_sweep.data, data)
    spy = SplitSpy(EvaluatorCache(data_dir=data))
    runs = find_runs([probe_sweep.erm_dir])
    spy(runs[0])  # the dataset lists its files now; then the test domain becomes unreadable
    test_domain = os.path.join(data, "d0")
    n_files = 0
    for folder, _, files in os.walk(test_domain):
        for name in files:
            with open(os.path.join(folder, name), "wb"):
                n_files += 1  # emptied: reading any of them fails
    assert n_files > 0
    fixed = {"fisher": {"n_examples": 16}, "regmean": {"n_examples": 16}}
    for rule in RULES_TO_CHOOSE:
        result = soup(runs, rule, spy, splits=(), hparams=fixed.get(rule))
        assert result["accuracies"] == {}
        if get_rule(rule).hparams and rule not in fixed:
            assert len(result["details"]["selection"]["grid"]) > 1
    for rule in ("ties", "slerp_tangent"):  # greedy over other rules
        result = soup(runs, rule, spy, splits=(), greedy="paper")
        assert len(result["trace"]) == len(runs)
    assert set(spy.splits) == {"id_val", "train_in"}, sorted(set(spy.splits))
    # the trap works: the test split cannot be read
    with pytest.raises(Exception):
        soup(runs, "uniform", spy, splits=("test_in",))
    assert spy.splits[-1] == "test_in"
