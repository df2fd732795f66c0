"""Scores the splits of one run at an evaluation, as ``evaluation_plan`` says.

A split's score is a function of the weights, the split, the run's seed and the step alone:
``predict`` draws its random numbers (MTL's noise) from generators seeded for that one
split at that step, and training's RNG streams are restored afterwards. So the scores, and
training itself, never depend on which other splits were scored or when (full and selection
evaluation train the same weights), and a split scored after training from a checkpoint's
weights gets the score it would have had at that step.
"""

import collections.abc
from contextlib import contextmanager
from typing import (Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence,
                    Tuple)

import torch

from domainbed.lib import misc
from domainbed.lib.fast_data_loader import eval_loader
from domainbed.training.evaluation_plan import (EVERY, IMPROVING, SELECTED, TEST_IN,
                                                splits_to_score)

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
        self.test_in_policy = test_in_policy  # evaluation_plan.policy_of_test_in

    @property
    def defer_test_in(self) -> bool:
        """Whether the selected record's test envs' ``in`` splits are scored after
        training (``selected.score_selected_record``)."""
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
