"""Ablations of the recipe over a sweep of target runs (the paper's section 4 figures).

Each ablation chooses subsets of the runs, merges each subset (uniformly by default,
:func:`domainbed_aux.averaging.uniform_soup`, or with any merge rule of
:mod:`domainbed_aux.merging`) and scores the result:

- ``n_aux_tasks``: for k = 0..K auxiliary datasets, the runs initialised from the pretrained
  featurizer or from a member of k chosen auxiliary datasets;
- ``n_runs``: for m = 1..M, m runs;
- ``aux_share``: n runs in total, i of them initialised from an auxiliary member (kind not
  ``pretrained``), n - i from the pretrained featurizer, i = 0..n.

Subsets are drawn with ``random.Random(seed_hash(seed, ablation, value, repeat))`` from
runs sorted by directory, so a result is reproducible; ``n_repeats`` draws are averaged.
A run's initialisation is read from its records' ``init.member`` (``kind``, ``dataset``);
a run without one started from the pretrained featurizer.
"""

import random
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from domainbed.errors import DomainBedError
from domainbed.lib.misc import seed_hash

ABLATIONS = ("n_aux_tasks", "n_runs", "aux_share")
AXIS_LABELS = {"n_aux_tasks": "number of auxiliary tasks",
               "n_runs": "number of averaged runs",
               "aux_share": "share of auxiliary-initialised runs"}


def init_member(run) -> Tuple[str, Optional[str]]:
    """``(kind, dataset)`` of the pool member a run started from."""
    member = (run.init or {}).get("member")
    if not isinstance(member, dict):
        return "pretrained", None
    return str(member.get("kind", "pretrained")), member.get("dataset")


class SoupScorer:
    """Scores the soup of a subset of runs; each distinct subset is scored once.

    ``rule`` is any merge rule (``domainbed_aux.merging``; default the uniform soup), its
    hyperparameters chosen on the subset's ID validation (``evaluators`` builds the
    evaluator; needed for rules other than uniform)."""

    def __init__(self, evaluate: Callable[[dict], float], rule: str = "uniform",
                 evaluators=None):
        self.evaluate = evaluate
        self.rule = rule
        self.evaluators = evaluators
        self._cache: Dict[Tuple[str, ...], float] = {}

    def __call__(self, runs) -> float:
        key = tuple(sorted(r.run_dir for r in runs))
        if key not in self._cache:
            ordered = sorted(runs, key=lambda r: r.order_key)
            if self.rule == "uniform":
                from domainbed_aux.averaging import uniform_soup
                state = uniform_soup([r.model_path for r in ordered]).state_dict
            else:
                from domainbed_aux.scoring.soups import average_runs
                state = average_runs(ordered, self.rule, self.evaluators)[0].state_dict
            self._cache[key] = self.evaluate(state)
        return self._cache[key]


def _rng(seed: int, ablation: str, value, repeat: int) -> random.Random:
    return random.Random(seed_hash(seed, ablation, value, repeat))


def _choose(rng: random.Random, items: Sequence, k: int) -> list:
    return rng.sample(list(items), k)


def subsets(runs: Sequence, ablation: str, seed: int = 0, n_repeats: int = 1,
            n_total: Optional[int] = None) -> List[Tuple[float, List[list]]]:
    """``[(value, [subset per repeat])]`` for an ablation (see the module docstring)."""
    runs = sorted(runs, key=lambda r: r.order_key)  # never by directory: see order_key
    if not runs:
        raise DomainBedError("no run to ablate over; check --input_dir and the filters")
    out = []
    if ablation == "n_runs":
        for m in range(1, len(runs) + 1):
            out.append((m, [_choose(_rng(seed, ablation, m, r), runs, m)
                            for r in range(n_repeats)]))
    elif ablation == "n_aux_tasks":
        datasets = sorted({init_member(r)[1] for r in runs
                           if init_member(r)[0] != "pretrained" and init_member(r)[1]})
        pretrained = [r for r in runs if init_member(r)[0] == "pretrained"]
        for k in range(len(datasets) + 1):
            draws = []
            for rep in range(n_repeats):
                chosen = set(_choose(_rng(seed, ablation, k, rep), datasets, k))
                draws.append(pretrained + [r for r in runs if init_member(r)[0] != "pretrained"
                                           and init_member(r)[1] in chosen])
            out.append((k, draws))
    elif ablation == "aux_share":
        aux = [r for r in runs if init_member(r)[0] != "pretrained"]
        pre = [r for r in runs if init_member(r)[0] == "pretrained"]
        n = n_total if n_total is not None else min(len(aux), len(pre))
        if n < 1 or n > len(aux) or n > len(pre):
            raise DomainBedError(
                f"aux_share over {n} runs needs {n} runs of each kind; the sweep has {len(aux)} "
                f"auxiliary-initialised and {len(pre)} pretrained-initialised runs (pass "
                f"--n_total <= {min(len(aux), len(pre))})")
        for i in range(n + 1):
            draws = [_choose(_rng(seed, ablation, i, rep), aux, i)
                     + _choose(_rng(seed, ablation + "/pretrained", i, rep), pre, n - i)
                     for rep in range(n_repeats)]
            out.append((i / n, draws))
    else:
        raise DomainBedError(f"unknown ablation {ablation!r}; known: {', '.join(ABLATIONS)}")
    return out


def ablate(runs: Sequence, ablation: str, score: Callable[[list], float], seed: int = 0,
           n_repeats: int = 1, n_total: Optional[int] = None) -> Dict[str, object]:
    """Soup accuracy for each value of the ablated quantity (mean over repeats)."""
    values, means, per_repeat, members = [], [], [], []
    for value, draws in subsets(runs, ablation, seed, n_repeats, n_total):
        accs = [score(d) if d else None for d in draws]
        known = [a for a in accs if a is not None]
        values.append(value)
        means.append(sum(known) / len(known) if known else None)
        per_repeat.append(accs)
        members.append([[r.run_dir for r in d] for d in draws])
    return {"ablation": ablation, "values": values, "accuracies": means,
            "per_repeat": per_repeat, "subsets": members, "seed": seed,
            "n_repeats": n_repeats}
