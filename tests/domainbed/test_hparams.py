import subprocess
import sys

import pytest

from domainbed import hparams_registry
from domainbed.lib.misc import seed_hash

# SPEC section 5: the paper code's mild-space draws, trial 0, (lr, weight_decay, dropout)
MILD_VECTOR = {
    1: (3e-5, 1e-4, 0.5), 2: (1e-5, 1e-6, 0.5), 3: (3e-5, 1e-6, 0), 4: (1e-5, 1e-6, 0),
    5: (3e-5, 1e-4, 0.5), 6: (3e-5, 1e-4, 0.1), 7: (1e-5, 1e-4, 0.1), 8: (5e-5, 1e-4, 0.1),
    9: (5e-5, 1e-6, 0.5), 10: (5e-5, 1e-6, 0.5), 11: (5e-5, 1e-6, 0), 12: (3e-5, 1e-4, 0.5),
    13: (5e-5, 1e-6, 0.5), 14: (5e-5, 1e-6, 0), 15: (3e-5, 1e-4, 0), 16: (1e-5, 1e-4, 0.5),
    17: (5e-5, 1e-4, 0.1), 18: (5e-5, 1e-6, 0), 19: (3e-5, 1e-6, 0),
}


@pytest.mark.parametrize("hparams_seed", sorted(MILD_VECTOR))
def test_mild_space_conformance_vector(hparams_seed):
    hp = hparams_registry.get_hparams("ERM", "PACS", hparams_seed, 0, space="mild")
    assert (hp["lr"], hp["weight_decay"], hp["resnet_dropout"]) == MILD_VECTOR[hparams_seed]
    assert hp["batch_size"] == 32


def test_seed_hash_is_md5_of_str_args():
    import hashlib
    expected = int(hashlib.md5(str((3, "lr")).encode()).hexdigest(), 16) % 2 ** 31
    assert seed_hash(3, "lr") == expected


def test_defaults_upstream_values():
    big = hparams_registry.default_hparams("ERM", "PACS")
    assert (big["lr"], big["batch_size"], big["weight_decay"], big["resnet_dropout"]) == \
        (5e-5, 32, 0.0, 0.0)
    small = hparams_registry.default_hparams("ERM", "Debug28")
    assert (small["lr"], small["batch_size"], small["weight_decay"]) == (1e-3, 64, 0.0)
    assert hparams_registry.default_hparams("CORAL", "PACS")["mmd_gamma"] == 1.0
    assert hparams_registry.default_hparams("IRM", "PACS")["irm_lambda"] == 1e2


def test_random_draws_in_upstream_ranges():
    for seed in range(20):
        hp = hparams_registry.random_hparams("ERM", "PACS", seed)
        assert 1e-5 <= hp["lr"] <= 10 ** -3.5
        assert 8 <= hp["batch_size"] <= int(2 ** 5.5)
        assert hp["resnet_dropout"] in (0.0, 0.1, 0.5)
        assert 1e-6 <= hp["weight_decay"] <= 1e-2
        dn = hparams_registry.random_hparams("ERM", "DomainNet", seed)
        assert 8 <= dn["batch_size"] <= 32
        small = hparams_registry.random_hparams("ERM", "Debug28", seed)
        assert 10 ** -4.5 <= small["lr"] <= 10 ** -2.5 and small["weight_decay"] == 0


def test_per_name_seeding_adding_an_hparam_never_shifts_another():
    erm = hparams_registry.random_hparams("ERM", "PACS", 7)
    coral = hparams_registry.random_hparams("CORAL", "PACS", 7)
    assert {k: coral[k] for k in erm} == erm


def test_draws_are_deterministic_across_processes():
    code = ("from domainbed import hparams_registry as h;"
            "print(sorted(h.random_hparams('IRM', 'VLCS', 12345).items()))")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout for _ in range(2)}
    assert len(outs) == 1
    assert outs.pop().strip() == str(sorted(
        hparams_registry.random_hparams("IRM", "VLCS", 12345).items()))


def test_unknown_algorithm_lists_known_names():
    with pytest.raises(KeyError, match="ERM"):
        hparams_registry.default_hparams("NoSuchAlgorithm", "PACS")


def test_unknown_space_lists_known_spaces():
    with pytest.raises(KeyError, match="mild"):
        hparams_registry.default_hparams("ERM", "PACS", space="wild")
