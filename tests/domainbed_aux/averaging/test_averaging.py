"""Weight averaging rules: uniform, greedy (paper / strict), dagger, interpolation, checks."""

import weakref

import pytest
import torch

import domainbed_aux.averaging.base as averaging_base
from domainbed.errors import DomainBedError
from domainbed.lib.weights import save_weights
from domainbed_aux.averaging import (StateAccumulator, dagger_soup, greedy_soup, interpolate,
                                     uniform_soup, weighted_average)
from domainbed_aux.merging import get_rule, rule_names, select_weights


class TinyNet(torch.nn.Module):
    def __init__(self, n_classes=3):
        super().__init__()
        self.featurizer = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.BatchNorm1d(5))
        self.classifier = torch.nn.Linear(5, n_classes)


def tiny_state(seed, n_classes=3):
    torch.manual_seed(seed)
    state = TinyNet(n_classes).state_dict()
    # frozen BN: every member keeps the same (pretrained) statistics
    state["featurizer.1.running_mean"] = torch.arange(5.0)
    state["featurizer.1.running_var"] = torch.ones(5) * 2
    return state


def scalar_member(value):
    return {"w": torch.tensor([float(value)]), "b": torch.tensor([2.0 * value])}


# ------------------------------------------------------------------------- uniform

def test_uniform_soup_is_the_arithmetic_mean():
    states = [tiny_state(s) for s in range(4)]
    result = uniform_soup(states)
    assert list(result.state_dict) == list(states[0])
    for key, value in result.state_dict.items():
        expected = torch.stack([s[key].double() for s in states]).mean(0).to(states[0][key].dtype)
        assert value.dtype == states[0][key].dtype
        assert torch.allclose(value.double(), expected.double(), atol=1e-6), key
    assert result.members == ["member0", "member1", "member2", "member3"]
    assert result.rule == "uniform" and result.bn_recomputed is False


def test_float32_accumulator_is_close_to_float64():
    states = [tiny_state(s) for s in range(5)]
    a = uniform_soup(states).state_dict  # float32 running sum by default
    b = uniform_soup(states, accum_dtype=torch.float64).state_dict
    for key in a:
        assert torch.allclose(a[key].double(), b[key].double(), atol=1e-6)


def test_uniform_soup_of_files_reads_each_file_once(tmp_path, monkeypatch):
    paths = []
    for seed in range(3):
        path = tmp_path / f"m{seed}.safetensors"
        save_weights(str(path), tiny_state(seed), metadata={"args": {}})
        paths.append(str(path))
    reads = []
    real_load = averaging_base.load_file
    monkeypatch.setattr(averaging_base, "load_file",
                        lambda path, device="cpu": reads.append(path) or real_load(path, device))
    result = uniform_soup(paths)
    assert reads == paths
    assert result.members == paths
    expected = (tiny_state(0)["classifier.weight"] + tiny_state(1)["classifier.weight"]
                + tiny_state(2)["classifier.weight"]) / 3
    assert torch.allclose(result.state_dict["classifier.weight"], expected, atol=1e-6)


def _tracking_members(n, alive_log):
    """Loaders recording, at each load, how many earlier members are alive (refcounts:
    a state dict holds no reference cycle, so a dropped member dies at once)."""
    refs = []

    def loader(i):
        def load():
            alive_log.append(sum(r() is not None for r in refs))
            state = tiny_state(i)
            refs.append(weakref.ref(state["featurizer.0.weight"]))
            return state
        return load
    return [(f"m{i}", loader(i)) for i in range(n)]


def test_uniform_soup_holds_one_member_at_a_time():
    alive = []
    uniform_soup(_tracking_members(6, alive))
    assert alive == [0] * 6


def test_greedy_soup_holds_one_member_at_a_time():
    alive = []
    members = _tracking_members(5, alive)
    greedy_soup(members, {f"m{i}": 0.5 for i in range(5)}, lambda state: 0.5)
    assert alive == [0] * 5


# ---------------------------------------------------------------------- checks

def test_different_keys_name_member_and_key():
    a, b = tiny_state(0), tiny_state(1)
    b["extra.weight"] = torch.zeros(1)
    del b["classifier.bias"]
    with pytest.raises(DomainBedError, match=r"'b'.*classifier\.bias.*extra\.weight"):
        uniform_soup({"a": a, "b": b})


def test_different_class_count_is_named():
    with pytest.raises(DomainBedError, match=r"'b' predicts 4 classes but 'a' predicts 3"):
        uniform_soup({"a": tiny_state(0), "b": tiny_state(1, n_classes=4)})


def test_different_shape_names_key():
    b = tiny_state(1)
    b["featurizer.0.weight"] = torch.zeros(5, 6)
    with pytest.raises(DomainBedError, match=r"'b'.*'featurizer\.0\.weight'.*\(5, 6\)"):
        uniform_soup({"a": tiny_state(0), "b": b})


def test_different_dtype_kind_is_an_error_but_precision_is_not():
    b = tiny_state(1)
    b["classifier.bias"] = torch.zeros(3, dtype=torch.int64)
    with pytest.raises(DomainBedError, match=r"'classifier\.bias' is integer"):
        uniform_soup({"a": tiny_state(0), "b": b})
    c = tiny_state(2)
    c["classifier.bias"] = c["classifier.bias"].half()
    out = uniform_soup({"a": tiny_state(0), "c": c}).state_dict
    assert out["classifier.bias"].dtype == torch.float32


def test_bn_counter_is_taken_from_first_member_other_integers_must_match():
    a, b = tiny_state(0), tiny_state(1)
    a["featurizer.1.num_batches_tracked"] = torch.tensor(7)
    b["featurizer.1.num_batches_tracked"] = torch.tensor(9)
    out = uniform_soup([a, b]).state_dict
    assert out["featurizer.1.num_batches_tracked"].item() == 7
    a["step"] = torch.tensor([1, 2])
    b["step"] = torch.tensor([1, 3])
    with pytest.raises(DomainBedError, match=r"integer tensor 'step'"):
        uniform_soup({"a": a, "b": b})


def test_live_bn_statistics_are_refused_without_recompute():
    b = tiny_state(1)
    b["featurizer.1.running_mean"] = b["featurizer.1.running_mean"] + 1
    with pytest.raises(DomainBedError, match=r"'b'.*batch-norm statistic "
                                             r"'featurizer\.1\.running_mean'.*allow_live_bn"):
        uniform_soup({"a": tiny_state(0), "b": b})
    with pytest.raises(DomainBedError, match="recompute_bn"):
        uniform_soup({"a": tiny_state(0), "b": b}, allow_live_bn=True)


def test_live_bn_statistics_are_recomputed_by_the_caller():
    a, b = tiny_state(0), tiny_state(1)
    b["featurizer.1.running_mean"] = b["featurizer.1.running_mean"] + 1
    seen = []

    def recompute(state):
        seen.append(state["featurizer.1.running_mean"].clone())
        state["featurizer.1.running_mean"] = torch.full((5,), -3.0)
        return state

    result = uniform_soup([a, b], allow_live_bn=True, recompute_bn=recompute)
    assert result.bn_recomputed and result.summary()["bn_recomputed"]
    assert len(seen) == 1  # called once, on the average
    assert torch.equal(result.state_dict["featurizer.1.running_mean"], torch.full((5,), -3.0))
    # parameters are still the plain mean
    expected = (a["classifier.weight"] + b["classifier.weight"]) / 2
    assert torch.allclose(result.state_dict["classifier.weight"], expected, atol=1e-6)


def test_greedy_with_live_bn_recomputes_every_scored_average():
    members = {"a": tiny_state(0), "b": tiny_state(1)}
    members["b"]["featurizer.1.running_var"] = members["b"]["featurizer.1.running_var"] * 3
    scored, recomputed = [], []

    def recompute(state):
        recomputed.append(state["featurizer.1.running_var"][0].item())
        state["featurizer.1.running_var"] = torch.full((5,), 7.0)
        return state

    def evaluate(state):
        scored.append(state["featurizer.1.running_var"][0].item())
        return 1.0
    result = greedy_soup(members, {"a": 0.9, "b": 0.8}, evaluate, allow_live_bn=True,
                         recompute_bn=recompute)
    assert scored == [7.0, 7.0]                  # every scored average was recomputed
    assert recomputed == [2.0, 4.0, 4.0]         # a alone, a+b candidate, final a+b
    assert result.bn_recomputed and result.members == ["a", "b"]


def test_accumulator_mean_with_does_not_add():
    acc = StateAccumulator()
    acc.add(scalar_member(1.0), "a")
    candidate = acc.mean_with(scalar_member(3.0), "b")
    assert candidate["w"].item() == pytest.approx(2.0)
    assert acc.count == 1 and acc.mean()["w"].item() == pytest.approx(1.0)
    with pytest.raises(DomainBedError, match="no member"):
        StateAccumulator().mean()


# ------------------------------------------------------------------------- greedy

def _value_eval(table):
    """evaluate_average looking the soup's weight up in ``table`` (rounded)."""
    def evaluate(state):
        return table[round(state["w"].item(), 4)]
    return evaluate


def test_greedy_paper_keeps_ties_strict_rejects_them():
    members = {"a": scalar_member(1), "b": scalar_member(3), "c": scalar_member(5)}
    val = {"a": 0.9, "b": 0.8, "c": 0.7}
    # soups: a -> 1; a+b -> 2 (tie); a+b+c -> 3 (if b kept); a+c -> 3 (if b rejected)
    table = {1.0: 0.5, 2.0: 0.5, 3.0: 0.6}
    paper = greedy_soup(members, val, _value_eval(table), rule="paper")
    assert paper.members == ["a", "b", "c"]
    assert paper.state_dict["w"].item() == pytest.approx(3.0)
    assert [t["kept"] for t in paper.trace] == [True, True, True]
    strict = greedy_soup(members, val, _value_eval(table), rule="strict")
    assert strict.members == ["a", "c"]
    assert strict.state_dict["w"].item() == pytest.approx(3.0)
    assert [t["soup_acc"] for t in strict.trace] == [0.5, 0.5, 0.6]
    assert strict.rule == "greedy_strict" and strict.val_acc == 0.6


def test_greedy_rejects_a_drop_and_always_keeps_the_first():
    members = {"a": scalar_member(1), "b": scalar_member(3), "c": scalar_member(-1)}
    val = {"a": 0.2, "b": 0.9, "c": 0.1}
    # order: b (first, kept even with a low soup score), a, c
    table = {3.0: 0.1, 2.0: 0.05, 1.0: 0.3}
    result = greedy_soup(members, val, _value_eval(table))
    assert [t["member"] for t in result.trace] == ["b", "a", "c"]
    assert result.members == ["b", "c"]  # a lowered the accuracy: dropped
    assert result.state_dict["w"].item() == pytest.approx(1.0)
    assert result.state_dict["b"].item() == pytest.approx(2.0)
    assert result.trace[0] == {"member": "b", "val_acc": 0.9, "soup_acc": 0.1, "kept": True,
                               "n_in_soup": 1}


def test_greedy_ties_in_val_acc_break_by_member_id():
    members = [("z", scalar_member(1)), ("a", scalar_member(2)), ("m", scalar_member(3))]
    result = greedy_soup(members, lambda mid: 0.5, lambda state: 0.5)
    assert [t["member"] for t in result.trace] == ["a", "m", "z"]


def test_greedy_candidates_are_running_means_and_files_are_read_once(tmp_path, monkeypatch):
    paths = {}
    for i, value in enumerate([1.0, 2.0, 6.0]):
        path = tmp_path / f"m{i}.safetensors"
        save_weights(str(path), scalar_member(value))
        paths[f"m{i}"] = str(path)
    reads = []
    real_load = averaging_base.load_file
    monkeypatch.setattr(averaging_base, "load_file",
                        lambda path, device="cpu": reads.append(path) or real_load(path, device))
    evaluated = []

    def evaluate(state):
        evaluated.append(round(state["w"].item(), 6))
        return 1.0
    greedy_soup(paths, {"m0": 0.9, "m1": 0.8, "m2": 0.7}, evaluate)
    assert sorted(reads) == sorted(paths.values()) and len(reads) == 3
    assert evaluated == [1.0, 1.5, 3.0]


def test_greedy_errors():
    members = {"a": scalar_member(1)}
    with pytest.raises(DomainBedError, match="unknown greedy rule 'best'.*paper, strict"):
        greedy_soup(members, {"a": 1.0}, lambda s: 1.0, rule="best")
    with pytest.raises(DomainBedError, match="no ID-validation accuracy for member 'a'"):
        greedy_soup(members, {}, lambda s: 1.0)
    with pytest.raises(DomainBedError, match="needs val_acc_of_member"):
        select_weights("greedy", members)


# ------------------------------------------------------------ dagger, interpolation

def test_dagger_is_uniform_over_every_trial():
    runs = {0: [scalar_member(1), scalar_member(2)], 1: [scalar_member(6)]}
    result = dagger_soup(runs)
    assert result.rule == "dagger"
    assert result.members == ["0/member0", "0/member1", "1/member0"]
    assert result.state_dict["w"].item() == pytest.approx(3.0)
    assert select_weights("dagger", runs).state_dict["w"].item() == pytest.approx(3.0)


def test_interpolate_and_weighted_average():
    a, b = tiny_state(0), tiny_state(1)
    assert torch.allclose(interpolate(a, b, 0.0)["classifier.weight"], a["classifier.weight"])
    assert torch.allclose(interpolate(a, b, 1.0)["classifier.weight"], b["classifier.weight"])
    mid = interpolate(a, b, 0.25)["classifier.weight"]
    assert torch.allclose(mid, 0.75 * a["classifier.weight"] + 0.25 * b["classifier.weight"],
                          atol=1e-6)
    fused = weighted_average([scalar_member(1), scalar_member(2), scalar_member(4)],
                             [0.5, 0.25, 0.25])
    assert fused["w"].item() == pytest.approx(2.0)
    with pytest.raises(DomainBedError, match="sum to 1"):
        weighted_average([a, b], [0.5, 0.6])
    with pytest.raises(DomainBedError, match="one coefficient per member"):
        weighted_average([a, b], [1.0])


# ----------------------------------------------------------------------- registry

def test_rules_are_registered_by_name():
    # the merge-rule registry (domainbed_aux.merging) runs them by name
    assert {"uniform", "greedy", "greedy_strict", "dagger"} <= set(rule_names())
    members = {"a": scalar_member(1), "b": scalar_member(3)}
    assert select_weights("uniform", members).state_dict["w"].item() == pytest.approx(2.0)
    result = select_weights("greedy_strict", members, {"a": 1.0, "b": 0.0}, lambda s: 0.5)
    assert result.members == ["a"]
    with pytest.raises(DomainBedError, match=r"unknown merge rule 'best'; known: .*greedy"):
        get_rule("best")


def test_zero_members_and_single_state_dict_are_errors():
    with pytest.raises(DomainBedError, match="zero members"):
        uniform_soup([])
    with pytest.raises(DomainBedError, match="one state dict"):
        uniform_soup(tiny_state(0))


def test_greedy_ties_follow_the_given_order_when_there_is_one():
    members = [("z", scalar_member(1)), ("a", scalar_member(2)), ("m", scalar_member(3))]
    result = greedy_soup(members, lambda mid: 0.5, lambda state: 0.5, tie_order=["m", "z", "a"])
    assert [t["member"] for t in result.trace] == ["m", "z", "a"]
    with pytest.raises(averaging_base.AveragingError, match="every member id once"):
        greedy_soup(members, lambda mid: 0.5, lambda state: 0.5, tie_order=["m", "z"])
