import math

import pytest

from domainbed import model_selection as ms
from domainbed.errors import DomainBedError
from domainbed.lib.query import Q
from domainbed.reports.synthetic import make_record

IID = ms.IIDAccuracySelectionMethod
LOO = ms.LeaveOneOutSelectionMethod
ORACLE = ms.OracleSelectionMethod


def rec(test_envs=(0,), step=0, accs=None, hparams_seed=0, seed=0, **kw):
    return make_record(test_envs=test_envs, step=step, accs=accs, hparams_seed=hparams_seed,
                       seed=seed, **kw)


def test_names_are_upstream_strings():
    assert IID.name == "training-domain validation set"
    assert LOO.name == "leave-one-domain-out cross-validation"
    assert ORACLE.name == "test-domain validation set (oracle)"


def test_iid_picks_step_with_best_mean_training_out_acc():
    # test env 0; training envs 1, 2: val = mean(env1_out, env2_out)
    records = Q([
        rec(step=0, accs={0: (0.10, 0.99), 1: (0.5, 0.50), 2: (0.5, 0.50)}),
        rec(step=100, accs={0: (0.30, 0.00), 1: (0.5, 0.90), 2: (0.5, 0.70)}),  # val 0.8
        rec(step=200, accs={0: (0.20, 0.00), 1: (0.5, 0.95), 2: (0.5, 0.55)}),  # val 0.75
    ])
    acc = IID.run_acc(records)
    assert acc["val_acc"] == pytest.approx(0.8)
    assert acc["test_acc"] == 0.30  # env0_in_acc of the chosen record; env0_out is ignored


def test_iid_ties_go_to_earliest_step_and_nan_is_never_chosen():
    records = Q([
        rec(step=200, accs={0: (0.2, 0), 1: (0, 0.6), 2: (0, 0.6)}),
        rec(step=100, accs={0: (0.1, 0), 1: (0, 0.6), 2: (0, 0.6)}),
        rec(step=300, accs={0: (0.9, 0), 1: (0, float("nan")), 2: (0, 0.9)}),
    ])
    assert IID.run_acc(records)["test_acc"] == 0.1


def test_iid_ignores_pair_runs_and_needs_a_single_test_env_run():
    pair = rec(test_envs=(0, 1), accs={0: (0.9, 0.9), 1: (0.9, 0.9), 2: (0.9, 0.99)})
    single = rec(accs={0: (0.4, 0), 1: (0, 0.5), 2: (0, 0.5)})
    assert IID.run_acc(Q([pair, single]))["test_acc"] == 0.4
    assert IID.run_acc(Q([pair])) is None


def test_run_acc_refuses_records_of_several_test_envs():
    with pytest.raises(ValueError, match="get_grouped_records"):
        IID.run_acc(Q([rec(test_envs=(0,)), rec(test_envs=(1,))]))


def test_hparams_accs_sorted_by_validation_and_sweep_acc_takes_the_best():
    records = []
    for hs, (val, test) in enumerate([(0.6, 0.1), (0.8, 0.2), (0.7, 0.3)]):
        for step in (0, 100):
            records.append(rec(step=step, hparams_seed=hs,
                               accs={0: (test, 0), 1: (0, val - step / 1000), 2: (0, val)}))
    accs = IID.hparams_accs(Q(records))
    assert [a["val_acc"] for a, _ in accs] == pytest.approx([0.8, 0.7, 0.6])
    assert [g[0]["args"]["hparams_seed"] for _, g in accs] == [1, 2, 0]
    assert all(len(g) == 2 for _, g in accs)
    assert IID.sweep_acc(Q(records)) == 0.2


def test_hparams_ties_go_to_smaller_hparams_seed():
    records = Q([rec(hparams_seed=5, accs={0: (0.5, 0)}),
                 rec(hparams_seed=2, accs={0: (0.2, 0)})])
    accs = IID.hparams_accs(records)
    assert [g[0]["args"]["hparams_seed"] for _, g in accs] == [2, 5]
    assert IID.sweep_acc(records) == 0.2


def test_hparams_override_makes_separate_groups():
    a = rec(accs={0: (0.1, 0), 1: (0, 0.3)})
    b = rec(accs={0: (0.2, 0), 1: (0, 0.9)})
    b["args"]["hparams"] = '{"lr": 0.1}'
    assert len(IID.hparams_accs(Q([a, b]))) == 2
    assert IID.sweep_acc(Q([a, b])) == 0.2


def test_sweep_acc_is_none_without_records():
    for method in (IID, LOO, ORACLE):
        assert method.sweep_acc(Q([])) is None


def loo_group(hparams_seed=0, missing_pair=None, single_in=(0.10, 0.20, 0.30)):
    """Test env 0 with 3 envs: the single run plus pair runs {0, 1} and {0, 2} at 3 steps."""
    records = []
    for i, step in enumerate((0, 100, 200)):
        records.append(rec(step=step, hparams_seed=hparams_seed, seed=1,
                           accs={0: (single_in[i], 0.99 - i * 0.3), 1: (0, 0.9), 2: (0, 0.9)}))
        # validation of step i = mean(env1_in of pair {0,1}, env2_in of pair {0,2})
        pair_val = {1: (0.5, 0.7, 0.6)[i], 2: (0.3, 0.5, 0.6)[i]}
        for v in (1, 2):
            if v != missing_pair:
                records.append(rec(test_envs=(0, v), step=step, hparams_seed=hparams_seed,
                                   seed=10 + v, accs={v: (pair_val[v], 0.0)}))
    return records


def test_leave_one_out_uses_pair_runs_in_accuracy_per_step():
    acc = LOO.run_acc(Q(loo_group()))
    # step vals: 0.4, 0.6, 0.6 -> first best is step 100
    assert acc["val_acc"] == pytest.approx(0.6)
    assert acc["test_acc"] == 0.20


def test_leave_one_out_missing_pair_gives_none():
    records = Q(loo_group(missing_pair=2))
    assert LOO.run_acc(records) is None
    assert LOO.sweep_acc(records) is None
    # the other methods do not need the pair runs
    assert IID.sweep_acc(records) is not None
    assert ORACLE.sweep_acc(records) is not None


def test_leave_one_out_skips_incomplete_hparams_group():
    records = loo_group(hparams_seed=0, missing_pair=1, single_in=(0.9, 0.9, 0.9))
    records += loo_group(hparams_seed=1)
    assert LOO.sweep_acc(Q(records)) == 0.20


def test_leave_one_out_step_without_pair_record_is_not_selectable():
    records = [r for r in loo_group()
               if not (r["step"] == 100 and r["args"]["test_envs"] == [0, 2])]
    acc = LOO.run_acc(Q(records))
    assert acc["val_acc"] == pytest.approx(0.6)
    assert acc["test_acc"] == 0.30  # step 100 lost its pair record: step 200 wins


def test_oracle_uses_last_step_of_each_run():
    records = Q([
        rec(step=0, seed=1, accs={0: (0.9, 0.99)}),  # not the last step: ignored
        rec(step=100, seed=1, accs={0: (0.3, 0.5)}),
        rec(step=100, seed=2, accs={0: (0.4, 0.6)}),
        rec(step=50, seed=2, accs={0: (0.8, 0.9)}),
    ])
    acc = ORACLE.run_acc(records)
    assert acc == {"val_acc": 0.6, "test_acc": 0.4}


def test_oracle_selects_hparams_on_test_out_acc():
    records = Q([rec(hparams_seed=0, accs={0: (0.7, 0.5), 1: (0, 0.9)}),
                 rec(hparams_seed=1, accs={0: (0.2, 0.6), 1: (0, 0.1)})])
    assert ORACLE.sweep_acc(records) == 0.2
    assert IID.sweep_acc(records) == 0.7


def test_nan_test_acc_is_reported_not_hidden():
    acc = IID.run_acc(Q([rec(accs={0: (float("nan"), 0)})]))
    assert math.isnan(acc["test_acc"])


def test_get_selection_method_by_any_name():
    assert ms.get_selection_method("oracle") is ORACLE
    assert ms.get_selection_method("LeaveOneOutSelectionMethod") is LOO
    assert ms.get_selection_method("training-domain validation set") is IID
    with pytest.raises(DomainBedError, match="training_domain"):
        ms.get_selection_method("best")


def test_a_run_with_a_final_average_record_is_scored_on_that_record_only():
    # SWAD: live records during training, then one record of the averaged window
    swad = [rec(step=0, accs={0: (0.10, 0), 1: (0, 0.50), 2: (0, 0.50)}),
            rec(step=100, accs={0: (0.90, 0.9), 1: (0, 0.99), 2: (0, 0.99)}),  # best live val
            rec(step=100, accs={0: (0.60, 0.2), 1: (0, 0.70), 2: (0, 0.70)},
                final_average=True)]
    for method in (IID, ORACLE):
        acc = method.run_acc(Q(swad))
        assert acc["test_acc"] == 0.60, method
    assert IID.run_acc(Q(swad))["val_acc"] == pytest.approx(0.70)
    # another run (other seed) of the same hparams group without the flag keeps every record
    erm = rec(step=50, seed=1, accs={0: (0.30, 0), 1: (0, 0.80), 2: (0, 0.80)})
    assert IID.run_acc(Q(swad + [erm]))["test_acc"] == 0.30
    assert ms.final_records_only(swad + [erm]) == [swad[2], erm]


def test_leave_one_out_with_final_average_records_pairs_the_final_records():
    final = dict(final_average=True)
    records = [
        rec(step=10, accs={0: (0.9, 0)}),  # live, not used
        rec(step=10, accs={0: (0.4, 0)}, **final),
        rec(test_envs=(0, 1), step=10, accs={1: (0.99, 0)}),  # live pair record, not used
        rec(test_envs=(0, 1), step=10, accs={1: (0.6, 0)}, **final),
        rec(test_envs=(0, 2), step=10, accs={2: (0.8, 0)}, **final),
    ]
    acc = LOO.run_acc(Q(records))
    assert acc == {"val_acc": pytest.approx(0.7), "test_acc": 0.4}
