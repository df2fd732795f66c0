"""The "mean member" rows of Table 1: beside each family's soups, the mean over the cell's
runs of each run's own test accuracy, at the weights the soups average (its best
ID-validation checkpoint). A soup above its mean member gained from averaging; below it,
averaging cost accuracy. On ``env{test}_in`` the members' accuracies are read from their
records (the selected record holds its test score); on the whole test domain each
member is evaluated."""

from collections import Counter
from typing import Dict, List, Optional, Sequence, Tuple

from domainbed_aux.report.registry import Table1Row, family_of, register
from domainbed_aux.scoring.runs import RunInfo


def member_accuracy(table, run: RunInfo) -> float:
    """The test accuracy of the weights of ``run`` that soups average, on the table's split."""
    if table.split == "test_in":  # the selected record is the record of those weights
        acc = run.selected_record.get(f"env{run.test_envs[0]}_in_acc")
        if isinstance(acc, (int, float)):
            return float(acc)

    def score() -> dict:
        from domainbed_aux.averaging.base import load_member
        return {"run": run.run_dir, "acc": table.evaluators(run).accuracy(
            load_member(run.model_path, run.run_dir), table.split)}
    return table.cached("single", "member", [run], score)["acc"]


def mean_member_cell(table, runs: Sequence[RunInfo], method) -> Tuple[Optional[float], dict]:
    accs = [member_accuracy(table, run) for run in runs]
    detail = {"members": [{"run": r.run_dir, "acc": a} for r, a in zip(runs, accs)]}
    return (sum(accs) / len(accs) if accs else None), detail


def cell_counts(runs: Sequence[RunInfo]) -> List[str]:
    """Per dataset, how many runs each family's cells hold and over how many trial seeds
    (one line each, for the report's notes)."""
    per: Dict[str, Dict[str, Counter]] = {}
    trials: Dict[str, set] = {}
    for run in runs:
        family = family_of(run)
        if family is None or len(run.test_envs) != 1:
            continue
        key = (run.test_envs[0], run.trial_seed)
        per.setdefault(run.dataset, {}).setdefault(run.algorithm, Counter())[key] += 1
        trials.setdefault(run.dataset, set()).add(run.trial_seed)
    lines = []
    for dataset in sorted(per):
        parts = []
        for algorithm, counter in sorted(per[dataset].items()):
            sizes = sorted(set(counter.values()))
            size = str(sizes[0]) if len(sizes) == 1 else f"{sizes[0]}-{sizes[-1]}"
            parts.append(f"{algorithm} {size}")
        n_envs = len({env for c in per[dataset].values() for env, _ in c})
        n_trials = len(trials[dataset])
        trial_text = ("1 trial seed (no error bars: every cell shows +/- 0.0)" if n_trials == 1
                      else f"{n_trials} trial seeds")
        lines.append(f"{dataset}: runs per cell (test domain, trial seed): {', '.join(parts)}; "
                     f"{trial_text}, {n_envs} test domain{'s' if n_envs != 1 else ''}")
    return lines


for _name, _family, _position in (
        ("Mean member: vanilla fine-tuning", "erm", 7.5),
        ("Mean member: fusing", "fusing", 13.2),
        ("Mean member: ratatouille", "inter", 13.5)):
    register(Table1Row(_name, _family, _position, mean_member_cell))
