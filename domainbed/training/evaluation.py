"""What an evaluation scores, how it scores it, and the best checkpoint it keeps.

The last module of a run in reading order (``run`` -> ``setup`` -> ``start`` -> ``loop`` ->
``evaluation``): the loop (``loop.evaluation_record``) asks this module at every checkpoint
step; the end of a run (the final record, the selected record's test score, ``done``) is
``run.finish``.

Which splits an evaluation scores (the plan). Model selection reads, at every evaluation,
only the training envs' ``out`` splits (training-domain validation; also the best checkpoint
and SWAD's window) and the test env's ``in`` split of the record it selects;
leave-one-domain-out selects any record of a run with one test env (on the ``in`` scores of
the runs with two test envs at every step, which it reads too); the oracle reads each run's
last step. So:

- the last step, or every step with ``full_evaluation`` (upstream's behaviour): every split;
- otherwise: the training envs' ``out`` splits, and the test envs' ``in`` splits when the
  caller ``needs`` them (``"test_in"``) or the run has two or more test envs.

When a run needs its test envs' ``in`` splits is its ``policy_of_test_in``:

- ``every`` (the default): at every evaluation, as leave-one-domain-out may read any record;
- ``selected`` (``--score_test_once``, one test env, the best checkpoint kept): only for the
  record training-domain validation selects, known after the last step: scored once, after
  training, from ``model_best.safetensors`` (the weights of that record) and written into
  the record (``run.score_selected_record``);
- ``improving`` (``--score_test_once`` without a best checkpoint, e.g. ``--skip_model_save``):
  at every record that improves on ID validation, the records that could be selected.

A split that is not scored is written as ``null`` in the record, so every record keeps the
same keys and the selected checkpoints and table cells equal those of full evaluation.

How a split is scored (``SplitScorer``). A split's score is a function of the weights, the
split, the run's seed and the step alone: ``predict`` draws its random numbers (MTL's noise)
from generators seeded for that one split at that step, and training's RNG streams are
restored afterwards. So the scores, and training itself, never depend on which other splits
were scored or when (full and selection evaluation train the same weights), and a split
scored after training from a checkpoint's weights gets the score it would have had at that
step.

The best checkpoint (``BestCheckpoint``): the weights of the evaluation with the best
ID-validation accuracy.
"""

import collections.abc
from contextlib import contextmanager
from typing import (Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional,
                    Sequence, Tuple)

import torch

from domainbed.lib import misc
from domainbed.lib.fast_data_loader import eval_loader
from domainbed.lib.weights import save_weights

# ---------------------------------------------------------------- which splits are scored

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


# ---------------------------------------------------------------- scoring the splits

EVAL_BATCH_SIZE = 64


@contextmanager
def evaluation_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Run the body with torch's CPU generator (and ``device``'s, on CUDA) seeded with
    ``seed``, and give every generator back its state afterwards."""
    cuda = []
    if device.type == "cuda":
        cuda = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=cuda):
        # the generators themselves: torch.manual_seed would seed every accelerator too
        torch.default_generator.manual_seed(seed)
        for index in cuda:
            torch.cuda.default_generators[index].manual_seed(seed)
        yield


class SplitScorer:
    """Accuracy of ``algorithm.predict`` on named splits (``env{i}_in``, ``env{i}_out``,
    ``env{t}_uda``) of one run; unscored env splits are ``None`` in the returned dict."""

    def __init__(self, splits, n_envs: int, test_envs: Sequence[int], n_workers: int,
                 device, full_evaluation: bool = False, seed: int = 0,
                 test_in_policy: str = EVERY):
        self.sets: Dict[str, Tuple[Any, Any]] = {}
        for i in range(n_envs):
            self.sets[f"env{i}_in"] = (splits.eval_in[i], splits.in_splits[i][1])
            self.sets[f"env{i}_out"] = (splits.eval_out[i], splits.out_splits[i][1])
        self.uda = {f"env{test_envs[k]}_uda": (splits.eval_uda[k], w)
                    for k, (_, w) in enumerate(splits.uda_splits)}
        self.n_envs = n_envs
        self.test_envs = list(test_envs)
        self.train_envs = [i for i in range(n_envs) if i not in self.test_envs]
        self.n_workers = n_workers
        self.device = device
        self.full_evaluation = full_evaluation
        self.seed = seed
        self.test_in_policy = test_in_policy  # policy_of_test_in

    @property
    def defer_test_in(self) -> bool:
        """Whether the selected record's test envs' ``in`` splits are scored after
        training (``run.score_selected_record``)."""
        return self.test_in_policy == SELECTED

    def score(self, algorithm, names: Iterable[str], step: int) -> Dict[str, float]:
        """``{name + "_acc": accuracy}`` of ``algorithm`` on each named split, as scored at
        the evaluation of ``step``."""
        accs = {}
        for name in names:
            split, weights = self.sets[name] if name in self.sets else self.uda[name]
            loader = eval_loader(split, EVAL_BATCH_SIZE, self.n_workers)
            with evaluation_rng(misc.seed_hash("evaluation", self.seed, step, name),
                                self.device):
                accs[name + "_acc"] = misc.accuracy(algorithm, loader, weights, self.device)
        return accs

    def score_all(self, algorithm, step: int) -> Dict[str, float]:
        return self.score(algorithm, list(self.sets) + list(self.uda), step)

    def test_in_splits(self) -> List[str]:
        """The test envs' ``in`` splits that selection reads at the selected record."""
        return [f"env{t}_in" for t in self.test_envs]

    def evaluate(self, algorithm, step: int, n_steps: int,
                 is_new_best) -> Tuple[Dict[str, Optional[float]], bool]:
        """Score what the plan asks at ``step``; ``is_new_best(accs)`` says whether the
        training envs' scores make this record the best so far (with the ``improving``
        policy the test envs' ``in`` splits are then scored too). Returns the accuracies and
        whether every split was scored."""
        needs = [TEST_IN] if self.test_in_policy == EVERY else []
        base = splits_to_score(step, n_steps, self.test_envs, self.n_envs,
                               self.full_evaluation, needs)
        accs: Dict[str, Optional[float]] = dict(self.score(algorithm, base, step))
        complete = len(base) == len(self.sets)
        if complete:
            accs.update(self.score(algorithm, self.uda, step))
            return accs, True
        if self.test_in_policy == IMPROVING and is_new_best(accs):
            more = splits_to_score(step, n_steps, self.test_envs, self.n_envs,
                                   self.full_evaluation, needs=[TEST_IN])
            accs.update(self.score(algorithm, [n for n in more if n not in base], step))
        for name in self.sets:
            accs.setdefault(name + "_acc", None)
        return accs, False

    def val_loaders(self) -> "ValLoaders":
        """The training envs' ``out`` loaders (e.g. SWAD's validation loss), as a sequence
        of ``(name, loader)`` pairs built on first use (the loop hands it to every
        algorithm's ``on_evaluation``; most never read it)."""
        return ValLoaders(lambda: [
            (f"env{i}_out", eval_loader(self.sets[f"env{i}_out"][0], EVAL_BATCH_SIZE,
                                        self.n_workers)) for i in self.train_envs])


class ValLoaders(collections.abc.Sequence):
    """A sequence of ``(name, loader)`` pairs that ``build()`` makes on first access."""

    def __init__(self, build: Callable[[], List[Tuple[str, Any]]]):
        self._build = build
        self._pairs: Optional[List[Tuple[str, Any]]] = None

    def _items(self) -> List[Tuple[str, Any]]:
        if self._pairs is None:
            self._pairs = self._build()
        return self._pairs

    def __getitem__(self, index):
        return self._items()[index]

    def __len__(self) -> int:
        return len(self._items())


# ---------------------------------------------------------------- the best checkpoint

class BestCheckpoint:
    """Keeps ``model_best.safetensors``: the weights at the evaluation with the highest
    ID-validation accuracy; a later evaluation replaces it only when strictly better (ties
    keep the earlier step, as the paper's released code). Its state (best accuracy and step)
    travels in the resumable checkpoint."""

    def __init__(self, path: str, metadata: dict, enabled: bool):
        self.path = path
        self.metadata = metadata
        self.enabled = enabled
        self.best: Optional[float] = None
        self.step: Optional[int] = None

    def is_improvement(self, acc: Optional[float]) -> bool:
        """Whether an ID-validation accuracy is strictly better than the best so far."""
        return acc is not None and (self.best is None or acc > self.best)

    def observe(self, algorithm, record: Dict[str, Any], train_envs: List[int]) -> None:
        """Track the best record (also when no file is kept: the evaluation plan reads it)
        and write the weights when it improves."""
        acc = id_val_accuracy(record, train_envs)
        if not self.is_improvement(acc):
            return
        self.best, self.step = acc, int(record["step"])
        if self.enabled:
            meta = dict(self.metadata, best_checkpoint={"step": self.step, "id_val_acc": acc})
            save_weights(self.path, algorithm.state_dict(), meta)

    def state(self) -> Dict[str, Any]:
        return {"best_id_val_acc": self.best, "best_step": self.step}

    def load(self, state: Dict[str, Any]) -> None:
        self.best = state.get("best_id_val_acc")
        self.step = state.get("best_step")
