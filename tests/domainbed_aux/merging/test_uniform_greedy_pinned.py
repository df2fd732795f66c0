"""Uniform, greedy and dagger soups on the merge-rule contract give the bits they gave before it
existed: the sha256 of every weight, pinned from the code of commit c29aa72 (before the
contract) on the same inputs, through the registry (``select_weights``), greedy over
``uniform`` (``merge_with(..., greedy=...)``) and soups of run directories."""

import hashlib

import pytest
import torch

from domainbed_aux.merging import MergeInputs, get_rule, merge_with, select_weights


def digest(state):
    h = hashlib.sha256()
    for key in sorted(state):
        value = state[key].detach().contiguous().cpu()
        h.update(key.encode())
        h.update(str(value.dtype).encode())
        h.update(str(tuple(value.shape)).encode())
        h.update(value.reshape(-1).view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return h.hexdigest()


def tiny_members(dtype):
    members = {}
    for i in range(6):
        g = torch.Generator().manual_seed(100 + i)
        members[f"m{i}"] = {
            "featurizer.0.weight": torch.randn(5, 4, generator=g).to(dtype),
            "featurizer.0.bias": torch.randn(5, generator=g).to(dtype),
            "featurizer.1.weight": torch.rand(5, generator=g).to(dtype),
            "featurizer.1.bias": torch.randn(5, generator=g).to(dtype),
            "featurizer.1.running_mean": torch.arange(5.0).to(dtype),
            "featurizer.1.running_var": torch.full((5,), 2.0).to(dtype),
            "featurizer.1.num_batches_tracked": torch.tensor(i, dtype=torch.long),
            "classifier.weight": (0.05 * torch.randn(3, 5, generator=g)).to(dtype),
            "classifier.bias": torch.randn(3, generator=g).to(dtype)}
    return members


def evaluate(state):
    target = torch.linspace(-0.05, 0.05, 15, dtype=torch.float64).reshape(3, 5)
    return round(-float((state["classifier.weight"].double() - target).abs().sum()), 2)


def coarse(state):
    return round(evaluate(state), 1)


VAL = {"m0": 0.7, "m1": 0.9, "m2": 0.8, "m3": 0.8, "m4": 0.6, "m5": 0.9}
ALL = ["m1", "m5", "m2", "m3", "m4"]
PINNED = {  # (dtype, scenario): (sha256 of the weights, kept members)
    ("f32", "uniform"): ("03a2ccb2ce320c5019599f299426a2a4f1ade47ac274724b1095310ff30bf030", None),
    ("f32", "uniform_acc64"): ("d2a09aedded1a6cae0fdcef797242dc497e794a9ac982ba501adea8b7903c50d",
                               None),
    ("f32", "greedy"): ("ae758491a9677de221dcf067499b85fb95397a8d5df3f47f76f1fd034ba392bc", ALL),
    ("f32", "greedy_coarse"): ("ae758491a9677de221dcf067499b85fb95397a8d5df3f47f76f1fd034ba392bc",
                               ALL),
    ("f32", "greedy_strict_coarse"): (
        "536d962621dccd8759746031b98ef42ca15d1e8c5cfc99dc3676d049a4baf8c8", ALL[:4]),
    ("f32", "greedy_tie_order"): (
        "95c95cde3ed510b1b060ee0b5ac8120a965b2157c640c06b6d64b46e6efc53a7",
        ["m5", "m1", "m3", "m2", "m4"]),
    ("f32", "dagger"): ("03a2ccb2ce320c5019599f299426a2a4f1ade47ac274724b1095310ff30bf030", None),
    ("f16", "uniform"): ("62e3e8f670025ede94eb5d592d2566a0a2a1836b792d0d98ad5a6419179e1a89", None),
    ("f16", "greedy"): ("a3301b2b607f39dd36f3db35c2db3e051c84e3a512a67a47eafe44877f48ae73", ALL),
    ("f16", "greedy_strict_coarse"): (
        "c5e2b3a832c277fca1e0a8199fe25c1ee199a31ab92433b7a1624756d41d1202", ALL[:4]),
    ("f64", "uniform"): ("d32c9a2585493ed091410d9b8953211161b79c3587aa1ce1d12b207ab884666d", None),
    ("f64", "greedy_tie_order"): (
        "e7e0d5abdade98873fe8204f08681c05468fe98f80e863740a545c432c7de46b",
        ["m5", "m1", "m3", "m2", "m4"]),
}
DTYPES = {"f32": torch.float32, "f16": torch.float16, "f64": torch.float64}


def run_scenario(scenario, members):
    if scenario == "uniform":
        return select_weights("uniform", members)
    if scenario == "uniform_acc64":
        return select_weights("uniform", members, accum_dtype=torch.float64)
    if scenario == "greedy":
        return select_weights("greedy", members, VAL, evaluate)
    if scenario == "greedy_coarse":  # greedy over uniform through the generic entry point
        return merge_with("uniform", MergeInputs(list(members.items()), val_acc_of_member=VAL,
                                                 evaluate=coarse), greedy="paper")
    if scenario == "greedy_strict_coarse":
        return select_weights("greedy_strict", members, VAL, coarse)
    if scenario == "greedy_tie_order":
        return select_weights("greedy", members, VAL, evaluate,
                              tie_order=["m5", "m4", "m3", "m2", "m1", "m0"])
    if scenario == "dagger":
        return select_weights("dagger", {0: {k: members[k] for k in ("m0", "m1", "m2")},
                                         1: {k: members[k] for k in ("m3", "m4", "m5")}})
    raise AssertionError(scenario)


@pytest.mark.parametrize("dtype,scenario", sorted(PINNED))
def test_uniform_greedy_and_dagger_give_the_pinned_bits(dtype, scenario):
    expected, kept = PINNED[(dtype, scenario)]
    result = run_scenario(scenario, tiny_members(DTYPES[dtype]))
    assert digest(result.state_dict) == expected
    if kept is not None:
        assert result.members == kept


def test_greedy_over_uniform_is_the_greedy_rule():
    members = tiny_members(torch.float32)
    for acceptance, name in (("paper", "greedy"), ("strict", "greedy_strict")):
        generic = merge_with("uniform", MergeInputs(list(members.items()),
                                                    val_acc_of_member=VAL, evaluate=coarse),
                             greedy=acceptance)
        direct = get_rule(name).merge(MergeInputs(list(members.items()), val_acc_of_member=VAL,
                                                  evaluate=coarse), {})
        assert digest(generic.state_dict) == digest(direct.state_dict)
        assert generic.trace == direct.trace and generic.rule == name


SOUPS = {  # soups of hand-made Debug28 runs (scoring.soups), pinned the same way
    "uniform": ("e24de18e1c7474d5e765be5cd3c94d7ae9c22ced4bac04c676a22be067ba4a76",
                ["t0_r0", "t0_r1", "t0_r2", "t0_r3", "t0_r4"]),
    "greedy": ("d005a0d0816838b09dc986d49ca7376d3adf929b8697f726320dce3ba34bb11c",
               ["t0_r1", "t0_r3", "t0_r2", "t0_r0", "t0_r4"]),
    "greedy_strict": ("61a0b2edfb5e314aa4fce6efde26b521c1713cda414d944b4c796ec3cf38f22a",
                      ["t0_r1", "t0_r4"]),
}


@pytest.fixture(scope="module")
def hand_made_runs(tmp_path_factory):
    from tests.fixtures.runs import make_run, random_state
    root = tmp_path_factory.mktemp("pinned_runs")
    accs = [(0.6, 0.7), (0.9, 0.9), (0.7, 0.7), (0.9, 0.9), (0.5, 0.6)]
    for i, val in enumerate(accs):
        make_run(str(root / f"t0_r{i}"), random_state(10 + i), trial_seed=0, val_accs=val,
                 hparams_seed=i)
    for i in range(3):
        make_run(str(root / f"t1_r{i}"), random_state(20 + i), trial_seed=1,
                 val_accs=(0.5, 0.5), hparams_seed=i)
    return root


@pytest.mark.parametrize("rule", sorted(SOUPS))
def test_soups_of_runs_give_the_pinned_bits(hand_made_runs, rule, one_thread):
    import os
    from domainbed_aux.scoring.evaluation import EvaluatorCache
    from domainbed_aux.scoring.runs import find_runs
    from domainbed_aux.scoring.soups import soup_and_weights
    runs = [r for r in find_runs([str(hand_made_runs)]) if r.trial_seed == 0]
    result, state = soup_and_weights(runs, rule, EvaluatorCache(), ["id_val"])
    expected, members = SOUPS[rule]
    assert digest(state) == expected
    assert [os.path.basename(m) for m in result["members"]] == members
    assert "hparams" not in result  # the soup's dict is what it was


def test_the_dagger_soup_of_runs_gives_the_pinned_bits(hand_made_runs, one_thread):
    from domainbed_aux.scoring.runs import find_runs
    from domainbed_aux.scoring.soups import soup_and_weights
    result, state = soup_and_weights(find_runs([str(hand_made_runs)]), "dagger", None, [])
    assert digest(state) == "feb75ea97939ae161f908ccb30355f278bdfa00f1b7f6fa503a15a9eef40b7e5"
    assert len(result["members"]) == 8
