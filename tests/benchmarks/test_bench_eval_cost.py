"""benchmarks/bench_eval_cost.py counts the images of each evaluation the plan lists.

The plan here is a stub with the signature of
``domainbed.training.evaluation.splits_to_score``; the counts are checked by hand.
"""

import importlib.util
import os

from tests.fixtures.paths import REPO


def load_benchmark():
    path = os.path.join(REPO, "benchmarks", "bench_eval_cost.py")
    spec = importlib.util.spec_from_file_location("bench_eval_cost", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_stub(calls):
    def splits_to_score(step, n_steps, test_envs, n_envs, full_evaluation=False, needs=()):
        calls.append((step, n_steps, tuple(test_envs), n_envs, full_evaluation, tuple(needs)))
        if full_evaluation or step == n_steps - 1:
            return [f"env{i}_{p}" for i in range(n_envs) for p in ("in", "out")]
        names = [f"env{j}_out" for j in range(n_envs) if j not in test_envs]
        if "test_in" in needs or len(test_envs) > 1:
            names += [f"env{t}_in" for t in test_envs]
        return names
    return splits_to_score


def test_split_sizes_and_evaluation_steps():
    bench = load_benchmark()
    assert bench.split_sizes([2048, 10], 0.2) == {"env0_out": 409, "env0_in": 1639,
                                                  "env1_out": 2, "env1_in": 8}
    assert bench.evaluation_steps(5001, 100)[-3:] == [4800, 4900, 5000]
    assert len(bench.evaluation_steps(5001, 100)) == 51
    assert bench.evaluation_steps(5, 3) == [0, 3, 4]


def test_images_per_run_by_hand():
    bench = load_benchmark()
    calls = []
    stub = make_stub(calls)
    # envs of 10, 20, 30 images, half held out: in = out = 5, 10, 15; evaluations 0, 2, 4
    table = bench.cost_table(stub, [10, 20, 30], 0.5, n_steps=5, checkpoint_freq=2,
                             test_envs=[1])
    # --score_test_once: steps 0 and 2 score env0_out + env2_out = 20, step 4 all = 60, and
    # env1_in (10) once after training
    assert table["--score_test_once"]["run"] == (20 + 20 + 60 + 10, 3 * 60)
    # the stub got the loop's arguments: the first evaluation of the first run counted
    assert calls[0] == (0, 5, (1,), 3, False, ("test_in",))
    # default: steps 0 and 2 score env0_out + env2_out + env1_in = 30; step 4 all = 60
    assert table["default"]["run"] == (30 + 30 + 60, 3 * 60)
    # sweep: [0], [1], [2] and pairs [0,1], [0,2], [1,2] (pairs always score their in)
    singles = (25 + 5) + (20 + 10) + (15 + 15)  # others' out + own in, per evaluation
    pairs = (15 + 15) + (10 + 20) + (5 + 25)     # the third env's out + both ins
    ours = 2 * (singles + pairs) + 6 * 60
    assert table["default"]["sweep"] == (ours, 6 * 3 * 60)
    deferred = 2 * (25 + 20 + 15 + pairs) + 6 * 60 + (5 + 10 + 15)  # each single's in once
    assert table["--score_test_once"]["sweep"] == (deferred, 6 * 3 * 60)


def test_pacs_sized_run_meets_the_target_with_the_stub_plan():
    bench = load_benchmark()
    table = bench.cost_table(make_stub([]), bench.PACS_ENV_SIZES, 0.2, 5001, 100, [0])
    ours, full = table["default"]["run"]
    assert full == 51 * sum(bench.PACS_ENV_SIZES)
    assert ours == 50 * ((468 + 334 + 785) + (2048 - 409)) + sum(bench.PACS_ENV_SIZES)
    assert ours / full <= 0.4
    ours, _ = table["--score_test_once"]["run"]
    assert ours == 50 * (468 + 334 + 785) + (2048 - 409) + sum(bench.PACS_ENV_SIZES)
