"""Which pool member initialises a target run, and the fusing coefficients."""

from collections import Counter

import numpy as np
import pytest
import torch

from domainbed.errors import DomainBedError
from domainbed.lib.weights import save_weights
from domainbed_aux.init.choice import (choose_fusing, choose_init, fused_featurizer,
                                       fusing_coefficients, init_slot)
from domainbed_aux.pool.members import AuxPool, PoolMember


def memory_pool(runs_per_dataset, root="/pool"):
    """An in-memory pool (no files) with ``runs_per_dataset = {dataset: n_runs}``."""
    members = [PoolMember(kind="pretrained", name="imagenet")]
    for dataset in sorted(runs_per_dataset):
        for hs in range(runs_per_dataset[dataset]):
            members.append(PoolMember(kind="aux", dataset=dataset, hparams_seed=hs, trial_seed=0,
                                      file=f"members/{dataset}/h{hs}.safetensors"))
    return AuxPool(root, members)


def test_four_datasets_of_four_runs_and_twenty_seeds_use_every_run_once():
    pool = memory_pool({"DomainNet": 4, "OfficeHome": 4, "TerraIncognita": 4, "VLCS": 4})
    choices = [choose_init(pool, s) for s in range(20)]
    assert choices[0].member is pool.pretrained and choices[0].member_index == 0
    assert Counter(c.slot for c in choices) == {k: 4 for k in range(5)}
    aux_indices = [c.member_index for c in choices if c.slot > 0]
    assert sorted(aux_indices) == list(range(1, 17))  # each of the 16 aux runs exactly once
    for seed, choice in enumerate(choices):
        assert choice.slot == seed % 5
        if choice.slot:
            assert choice.member.dataset == pool.datasets[choice.slot - 1]
            assert pool.runs_of(choice.member.dataset).index(choice.member) == seed % 4


def test_uneven_pool_follows_the_formula():
    pool = memory_pool({"A": 3, "B": 1})
    assert init_slot(7, 2) == 1
    choice = choose_init(pool, 7)             # slot 7 % 3 = 1 -> dataset A, run 7 % 3 = 1
    assert (choice.member.dataset, choice.member.hparams_seed) == ("A", 1)
    choice = choose_init(pool, 5)             # slot 5 % 3 = 2 -> dataset B, its only run
    assert (choice.member.dataset, choice.member.hparams_seed) == ("B", 0)
    assert choose_init(pool, 6).member.kind == "pretrained"
    record = choose_init(pool, 7).to_record()
    assert record["init_member"] == 2 and record["init_dataset"] == "A"
    assert record["init_file"] == "members/A/h1.safetensors"
    with pytest.raises(DomainBedError, match="non-negative integer"):
        choose_init(pool, -1)


def test_fusing_coefficients_are_a_seeded_softmax():
    u, lam = fusing_coefficients(5, hparams_seed=3, trial_seed=1, fusing_range=4)
    assert u.shape == (5,) and np.all((u >= 0) & (u < 1))
    assert lam.sum() == pytest.approx(1.0)
    assert np.allclose(lam, np.exp(4 * u) / np.exp(4 * u).sum())
    u2, lam2 = fusing_coefficients(5, 3, 1, 4)
    assert np.array_equal(u, u2) and np.array_equal(lam, lam2)          # deterministic
    assert not np.array_equal(u, fusing_coefficients(5, 3, 2, 4)[0])    # per trial seed
    assert not np.array_equal(u, fusing_coefficients(5, 4, 1, 4)[0])    # per hparams seed
    assert np.allclose(fusing_coefficients(5, 3, 1, 0)[1], 0.2)         # r = 0: uniform
    with pytest.raises(DomainBedError, match="fusing_range must be >= 0"):
        fusing_coefficients(5, 3, 1, -1)


def test_choose_fusing_members_and_record():
    pool = memory_pool({"A": 3, "B": 2})
    choice = choose_fusing(pool, hparams_seed=4, trial_seed=0)
    # pretrained, then run 4 % 3 = 1 of A and run 4 % 2 = 0 of B
    assert [(m.kind, m.dataset, m.hparams_seed) for m in choice.members] == [
        ("pretrained", None, None), ("aux", "A", 1), ("aux", "B", 0)]
    assert choice.member_indices == [0, 2, 4]
    record = choice.to_record()
    assert record["fusing_range"] == 4.0 and record["fusing_members"] == [0, 2, 4]
    assert sum(record["fusing_lambdas"]) == pytest.approx(1.0)
    assert len(record["fusing_u"]) == 3


def test_fused_featurizer_is_the_weighted_sum(tmp_path):
    pool = memory_pool({"A": 1, "B": 1}, root=str(tmp_path))
    states = {}
    for i, member in enumerate(pool.aux_members):
        states[member.dataset] = {"w": torch.full((3,), float(i + 1)),
                                  "bn.running_mean": torch.zeros(3)}
        member.path = str(tmp_path / f"{member.dataset}.safetensors")
        save_weights(member.path, states[member.dataset])
    pretrained = {"w": torch.full((3,), 10.0), "bn.running_mean": torch.zeros(3)}
    choice = choose_fusing(pool, hparams_seed=0, trial_seed=0)
    fused = fused_featurizer(choice, pretrained_state=pretrained)
    lam = choice.lambdas
    expected = lam[0] * 10.0 + lam[1] * 1.0 + lam[2] * 2.0
    assert torch.allclose(fused["w"], torch.full((3,), expected), atol=1e-6)
    with pytest.raises(DomainBedError, match="pass pretrained_state"):
        fused_featurizer(choice)
