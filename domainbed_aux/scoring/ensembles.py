"""Deep ensembles ("Ensemble*" rows): the average of the runs' softmax predictions.

An ensemble takes the same runs (and the same weights of each: by default its
best-ID-validation checkpoint) a soup averages and is scored on the same split
(``env{test}_in`` by default). It streams: one model is loaded at a time and its
probabilities are added to one running sum per example. Runs of several trial seeds form
one ensemble per trial seed (each scored on its own splits); ``accuracies`` is the mean.
"""

from typing import Any, Dict, List, Optional, Sequence

import torch

from domainbed.errors import DomainBedError
from domainbed_aux.averaging.base import load_member
from domainbed_aux.report.registry import Table1Row, register
from domainbed_aux.scoring.evaluation import SPLITS, EvaluatorCache
from domainbed_aux.scoring.runs import RunInfo
from domainbed_aux.scoring.soups import _progress, by_trial, check_runs, weights_text


def pooled_accuracy(prob_sums: Sequence[torch.Tensor],
                    labels_weights: Sequence[Any]) -> float:
    """Weighted share of examples whose summed probabilities' argmax is the label."""
    correct, total = 0.0, 0.0
    for probs, (labels, weights) in zip(prob_sums, labels_weights):
        if len(labels) == 0:
            continue
        hits = probs.argmax(1).eq(labels).float()
        correct += float((hits * weights).sum())
        total += float(weights.sum())
    if total == 0:
        raise DomainBedError("the ensemble's split has no example")
    return correct / total


def ensemble(runs: Sequence[RunInfo], evaluators: Optional[EvaluatorCache] = None,
             splits: Sequence[str] = ("test_in",), progress: bool = False) -> Dict[str, Any]:
    """Score the average of the softmax predictions of ``runs``.

    Returns ``members`` (run dirs), ``trial_seeds``, ``accuracies`` (``{split: mean over
    trial seeds}``) and ``per_trial`` (``{split: {trial_seed: acc}}``).
    """
    for split in splits:
        if split not in SPLITS:
            raise DomainBedError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    check_runs(runs, "ensemble", single_trial=False)
    evaluators = evaluators if evaluators is not None else EvaluatorCache()
    runs = sorted(runs, key=lambda r: r.order_key)
    per_trial: Dict[str, Dict[str, float]] = {s: {} for s in splits}
    bar = _progress(len(runs), "ensemble", progress)
    try:
        for trial, members in by_trial(runs).items():
            check_runs(members, f"ensemble of trial {trial}", single_trial=True)
            sums: Dict[str, List[torch.Tensor]] = {}
            for run in members:
                evaluator = evaluators(run)
                state = load_member(run.model_path, run.run_dir)
                for split in splits:
                    probs = evaluator.probabilities(state, split)
                    if split not in sums:
                        sums[split] = probs
                        continue
                    for i, (total, p) in enumerate(zip(sums[split], probs)):
                        if total.shape != p.shape:
                            raise DomainBedError(
                                f"ensemble: run {run.run_dir} predicts {p.shape[1]} classes "
                                f"but {members[0].run_dir} predicts {total.shape[1]}; "
                                "ensemble runs of one target dataset")
                        sums[split][i] = total + p
                del state
                bar.update(1)
            evaluator = evaluators(members[0])
            for split in splits:
                per_trial[split][str(trial)] = pooled_accuracy(
                    sums[split], evaluator.labels_and_weights(split))
    finally:
        bar.close()
    return {
        "rule": "ensemble",
        "dataset": runs[0].dataset,
        "test_env": runs[0].test_envs[0] if len(runs[0].test_envs) == 1 else runs[0].test_envs,
        "trial_seeds": sorted({r.trial_seed for r in runs}),
        "members": [r.run_dir for r in runs],
        "weights": weights_text(runs),
        "accuracies": {s: sum(v.values()) / len(v) for s, v in per_trial.items()},
        "per_trial": per_trial,
    }


# ----------------------------------------------------------------------------- Table 1 rows

def _table1_cell(table, runs: Sequence[RunInfo], method):
    """The Table 1 cell of the ensemble of the runs of a cell (see ``report.registry``)."""
    result = table.cached("ensemble", "ensemble", runs, lambda: ensemble(
        runs, table.evaluators, [table.split], progress=table.progress))
    return result["accuracies"][table.split], result


register(Table1Row("Ensemble*", "erm", 7, _table1_cell))
register(Table1Row("Ensemble* of inter-training", "inter", 12, _table1_cell))
