"""Which splits an evaluation scores.

Model selection reads, at every evaluation, only the training envs' ``out`` splits
(training-domain validation; also the best checkpoint and SWAD's window) and the test env's
``in`` split of the record it selects; leave-one-domain-out selects any record of a run with
one test env (on the ``in`` scores of the runs with two test envs at every step, which it
reads too); the oracle reads each run's last step. So:

- the last step, or every step with ``full_evaluation`` (upstream's behaviour): every split;
- otherwise: the training envs' ``out`` splits, and the test envs' ``in`` splits when the
  caller ``needs`` them (``"test_in"``) or the run has two or more test envs.

When a run needs its test envs' ``in`` splits is its ``policy_of_test_in``:

- ``every`` (the default): at every evaluation, as leave-one-domain-out may read any record;
- ``selected`` (``--score_test_once``, one test env, the best checkpoint kept): only for the
  record training-domain validation selects, known after the last step: scored once, after
  training, from ``model_best.safetensors`` (the weights of that record) and written into
  the record (``selected.py``);
- ``improving`` (``--score_test_once`` without a best checkpoint, e.g. ``--skip_model_save``):
  at every record that improves on ID validation, the records that could be selected.

A split that is not scored is written as ``null`` in the record, so every record keeps the
same keys and the selected checkpoints and table cells equal those of full evaluation.
"""

from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

TEST_IN = "test_in"

EVERY, SELECTED, IMPROVING = "every", "selected", "improving"


def splits_to_score(step: int, n_steps: int, test_envs: Sequence[int], n_envs: int,
                    full_evaluation: bool = False, needs: Iterable[str] = ()) -> List[str]:
    """Split names (``env{i}_in`` / ``env{i}_out``) to score at the evaluation of ``step``."""
    if full_evaluation or step >= n_steps - 1:
        return [f"env{i}_{part}" for i in range(n_envs) for part in ("in", "out")]
    test = set(test_envs)
    names = [f"env{j}_out" for j in range(n_envs) if j not in test]
    if len(test) >= 2 or TEST_IN in set(needs):
        names += [f"env{t}_in" for t in sorted(test)]
    return names


def policy_of_test_in(test_envs: Sequence[int], full_evaluation: bool,
                      score_test_once: bool, keeps_best_checkpoint: bool) -> str:
    """When a run scores its test envs' ``in`` splits: ``EVERY``, ``SELECTED`` or
    ``IMPROVING`` (see the module docstring)."""
    if full_evaluation or len(test_envs) != 1 or not score_test_once:
        return EVERY
    return SELECTED if keeps_best_checkpoint else IMPROVING


def id_val_accuracy(record: Mapping[str, Any], train_envs: Sequence[int]) -> Optional[float]:
    """The ID-validation accuracy of a record: mean ``env{j}_out_acc`` over training envs
    (None when a training env has no ``out`` score). The best checkpoint is the first record
    that maximises it; the training loop and the readers of runs use this one definition."""
    accs = [record.get(f"env{j}_out_acc") for j in train_envs]
    if not accs or any(a is None for a in accs):
        return None
    return sum(accs) / len(accs)


def images_forwarded(plan: Iterable[Sequence[str]], sizes: Dict[str, int]) -> int:
    """Images an evaluation schedule forwards: ``plan`` holds the split names of each
    evaluation, ``sizes`` the number of images of each split."""
    return sum(sizes[name] for names in plan for name in names)
