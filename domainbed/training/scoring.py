"""Scores the splits of one run at an evaluation, as ``evaluation_plan`` says."""

from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from domainbed.lib import misc
from domainbed.lib.fast_data_loader import eval_loader
from domainbed.training.evaluation_plan import TEST_IN, splits_to_score

EVAL_BATCH_SIZE = 64


class SplitScorer:
    """Accuracy of ``algorithm.predict`` on named splits (``env{i}_in``, ``env{i}_out``,
    ``env{t}_uda``) of one run; unscored env splits are ``None`` in the returned dict."""

    def __init__(self, splits, n_envs: int, test_envs: Sequence[int], n_workers: int,
                 device, full_evaluation: bool = False):
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

    def score(self, algorithm, names: Iterable[str]) -> Dict[str, float]:
        accs = {}
        for name in names:
            split, weights = self.sets[name] if name in self.sets else self.uda[name]
            loader = eval_loader(split, EVAL_BATCH_SIZE, self.n_workers)
            accs[name + "_acc"] = misc.accuracy(algorithm, loader, weights, self.device)
        return accs

    def score_all(self, algorithm) -> Dict[str, float]:
        return self.score(algorithm, list(self.sets) + list(self.uda))

    def evaluate(self, algorithm, step: int, n_steps: int,
                 is_new_best) -> Tuple[Dict[str, Optional[float]], bool]:
        """Score what the plan asks at ``step``; ``is_new_best(accs)`` says whether the
        training envs' scores make this record the best so far (then the test envs' ``in``
        splits are scored too). Returns the accuracies and whether every split was scored."""
        base = splits_to_score(step, n_steps, self.test_envs, self.n_envs,
                               self.full_evaluation)
        accs: Dict[str, Optional[float]] = dict(self.score(algorithm, base))
        complete = len(base) == len(self.sets)
        if complete:
            accs.update(self.score(algorithm, self.uda))
            return accs, True
        if is_new_best(accs):
            more = splits_to_score(step, n_steps, self.test_envs, self.n_envs,
                                   self.full_evaluation, needs=[TEST_IN])
            accs.update(self.score(algorithm, [n for n in more if n not in base]))
        for name in self.sets:
            accs.setdefault(name + "_acc", None)
        return accs, False

    def val_loaders(self) -> List[Tuple[str, Any]]:
        """The training envs' ``out`` loaders (e.g. SWAD's validation loss)."""
        return [(f"env{i}_out", eval_loader(self.sets[f"env{i}_out"][0], EVAL_BATCH_SIZE,
                                            self.n_workers)) for i in self.train_envs]
