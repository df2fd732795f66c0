"""Images forwarded by evaluation in one run, ours vs full evaluation (upstream's).

    python benchmarks/bench_eval_cost.py [--n_steps 5001] [--checkpoint_freq 100]
        [--env_sizes 2048 2344 1670 3929] [--holdout_fraction 0.2] [--test_envs 0]

Defaults: a PACS-sized run (4 environments of 2048, 2344, 1670 and 3929 images, 20% of each
held out as its ``out`` split, 5,001 steps, an evaluation every 100 steps and at the last
step). Which splits an evaluation scores comes from the training loop's own
``domainbed.training.evaluation.splits_to_score(step, n_steps, test_envs, n_envs,
full_evaluation, needs)``; nothing is trained. Two cases:

- default: the test envs' ``in`` splits at every evaluation (leave-one-domain-out selection
  may read any record);
- ``--score_test_once`` (runs no leave-one-domain-out selection reads, e.g. the recipe's): a
  run with one test env scores its test env's ``in`` split once, after training, for the
  record training-domain validation selects (none when that is the last step, scored in
  full anyway; counted here as the upper bound). Without a best checkpoint it is scored at
  every record that improves on ID validation: at most the default's count.

Printed: images per run for each, the ratio to full evaluation, for the run's test envs
and averaged over a whole sweep's test-env sets (every single env and every pair).
Target: ratio <= 0.4 for one run, by default.
"""

import argparse
import itertools
from typing import Callable, Dict, List, Optional, Sequence

PACS_ENV_SIZES = (2048, 2344, 1670, 3929)
TEST_IN = "test_in"  # the ``needs`` entry: this record is a new best, score the test envs' in


def split_sizes(env_sizes: Sequence[int], holdout_fraction: float) -> Dict[str, int]:
    """Images of each ``env{i}_in`` / ``env{i}_out`` split (out = int(n * holdout), as the
    training splits are cut)."""
    sizes = {}
    for i, n in enumerate(env_sizes):
        n_out = int(n * holdout_fraction)
        sizes[f"env{i}_out"] = n_out
        sizes[f"env{i}_in"] = n - n_out
    return sizes


def evaluation_steps(n_steps: int, checkpoint_freq: int) -> List[int]:
    """The steps the training loop evaluates at: every ``checkpoint_freq`` and the last."""
    return [s for s in range(n_steps) if s % checkpoint_freq == 0 or s == n_steps - 1]


def images_per_run(splits_to_score: Callable, sizes: Dict[str, int], test_envs: Sequence[int],
                   n_envs: int, n_steps: int, checkpoint_freq: int, full_evaluation: bool,
                   new_best: Optional[Callable[[int], bool]]) -> int:
    """Images a run's evaluations forward; ``new_best(i)`` says whether the i-th evaluation
    is a new best on validation (the loop then ``needs`` the test envs' in splits); None:
    the run defers that score (one test env: scored once after training)."""
    deferred = new_best is None and len(test_envs) == 1 and not full_evaluation
    total = sum(sizes[f"env{t}_in"] for t in test_envs) if deferred else 0
    for i, step in enumerate(evaluation_steps(n_steps, checkpoint_freq)):
        needs = (TEST_IN,) if new_best is not None and new_best(i) else ()
        names = splits_to_score(step, n_steps, list(test_envs), n_envs,
                                full_evaluation, needs)
        total += sum(sizes[name] for name in names)
    return total


CASES = {"default": lambda i: True, "--score_test_once": None}


def cost_table(splits_to_score: Callable, env_sizes: Sequence[int], holdout_fraction: float,
               n_steps: int, checkpoint_freq: int, test_envs: Sequence[int]) -> Dict[str, dict]:
    """{case: {"run": (ours, full), "sweep": (ours, full)}}: images for the run with
    ``test_envs`` and summed over every single and pair test-env set."""
    n_envs = len(env_sizes)
    sizes = split_sizes(env_sizes, holdout_fraction)
    sweep_sets = [[t] for t in range(n_envs)] + [list(p) for p in
                                                  itertools.combinations(range(n_envs), 2)]

    def count(envs, full, new_best):
        return images_per_run(splits_to_score, sizes, envs, n_envs, n_steps, checkpoint_freq,
                              full, new_best)

    table = {}
    for case, new_best in CASES.items():
        run = (count(test_envs, False, new_best), count(test_envs, True, new_best))
        sweep = tuple(sum(count(envs, full, new_best) for envs in sweep_sets)
                      for full in (False, True))
        table[case] = {"run": run, "sweep": sweep}
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n_steps", type=int, default=5001)
    parser.add_argument("--checkpoint_freq", type=int, default=100)
    parser.add_argument("--env_sizes", type=int, nargs="+", default=list(PACS_ENV_SIZES))
    parser.add_argument("--holdout_fraction", type=float, default=0.2)
    parser.add_argument("--test_envs", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    from domainbed.training.evaluation import splits_to_score

    n_evals = len(evaluation_steps(args.n_steps, args.checkpoint_freq))
    print(f"{len(args.env_sizes)} environments of {args.env_sizes} images, holdout "
          f"{args.holdout_fraction}, {args.n_steps} steps, {n_evals} evaluations")
    table = cost_table(splits_to_score, args.env_sizes, args.holdout_fraction, args.n_steps,
                       args.checkpoint_freq, args.test_envs)
    for case, rows in table.items():
        for what, label in (("run", f"run with test envs {args.test_envs}"),
                            ("sweep", "sweep (every single and pair test-env set)")):
            ours, full = rows[what]
            if case == "--score_test_once" and what == "sweep":
                print(f"{case}, {label}: not for such a sweep (leave-one-domain-out reads "
                      "every record of its single-test-env runs)")
                continue
            print(f"{case}, {label}: ours {ours:,} images, full evaluation {full:,}, "
                  f"ratio {ours / full:.3f}x")
    ours, full = table["default"]["run"]
    verdict = "met" if ours <= 0.4 * full else "NOT met"
    print(f"target <= 0.4x (default, one run): {verdict}")


if __name__ == "__main__":
    main()
