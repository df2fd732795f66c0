"""Evaluation reads only what selection needs; full evaluation selects the same."""

import json

import pytest

from domainbed.lib.query import Q
from domainbed.model_selection import SELECTION_METHODS
from domainbed.scripts import train as train_script
from domainbed.training.evaluation_plan import images_forwarded, splits_to_score
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


def _run(out, *extra):
    hparams = json.dumps({"batch_size": 8, "backbone": "tiny_cnn"})
    assert train_script.main(["--dataset", "Debug28", "--steps", "13", "--checkpoint_freq",
                              "2", "--test_envs", "0", "--seed", "2", "--output_dir", str(out),
                              "--hparams", hparams, *extra]) == 0
    return read_records(str(out))


@pytest.mark.slow
def test_selection_equals_full_evaluation(tmp_path):
    ours, full = _run(tmp_path / "ours"), _run(tmp_path / "full", "--full_evaluation")
    assert [r["step"] for r in ours] == [r["step"] for r in full]
    assert {r["evaluation"] for r in full} == {"full"}
    assert [r["evaluation"] for r in ours][-1] == "full"
    assert "selection" in {r["evaluation"] for r in ours}
    for o, f in zip(ours, full):
        assert o.keys() == f.keys()
        for key, value in o.items():
            if key.endswith("_acc") and value is not None:
                assert value == f[key], (o["step"], key)  # same weights, same scores
        assert o["env1_in_acc"] is None or o["step"] == 12  # never read by selection
    for name in SELECTION_METHODS:
        method = SELECTION_METHODS.get(name)
        if name == "leave_one_out":
            continue  # needs pair runs
        assert method.sweep_acc(Q(ours)) == method.sweep_acc(Q(full)), name
