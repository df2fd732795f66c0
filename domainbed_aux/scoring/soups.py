"""Weight soups of finished runs, scored on the runs' own splits.

Glue between run directories, :mod:`domainbed_aux.averaging` (the arithmetic) and
:mod:`domainbed_aux.scoring.evaluation` (the scores). A soup averages the weights
``RunInfo.weights`` selects: by default each run's best-ID-validation checkpoint
(``model_best.safetensors``; the paper's appendix F.1), the final, averaged model for MA/SWAD
runs; ``weights="final"`` takes ``model.safetensors``. Greedy soups rank runs by the recorded
ID-validation accuracy (mean ``env{j}_out_acc`` over training envs) of those weights (ties by
run directory) and score each candidate average on the pooled ID-validation split. Every
soup is scored on ``env{test}_in``, the split of the selection rows; ``test_full`` (the whole
test domain) and ``id_val`` on request. A dagger soup averages the runs of every trial seed;
its score is the mean over trial seeds of its accuracy on each trial's ``env{test}_in`` split.
"""

import functools
import logging
from typing import Any, Dict, List, Optional, Sequence, Tuple

from domainbed.errors import DomainBedError
from domainbed_aux.averaging.base import load_member
from domainbed_aux.report.registry import Table1Row, register
from domainbed_aux.scoring.base_weights import theta_0_path
from domainbed_aux.scoring.evaluation import (SPLITS, EvaluatorCache, TrainingDomainData,
                                              split_identity)
from domainbed_aux.scoring.runs import RunInfo

log = logging.getLogger(__name__)


def check_runs(runs: Sequence[RunInfo], what: str, single_trial: bool) -> None:
    """Raise a one-line ``DomainBedError`` unless ``runs`` can be averaged/ensembled together."""
    if not runs:
        raise DomainBedError(f"{what} of zero runs: no finished run (with `done` and "
                             "model.safetensors) matched the dataset, test env and trial seed; "
                             "check --input_dir, --dataset, --test_env and --trial_seed")
    first = runs[0]
    for run in runs[1:]:
        if run.dataset != first.dataset or run.test_envs != first.test_envs:
            raise DomainBedError(
                f"{what}: run {run.run_dir} is {run.dataset} test_envs {run.test_envs} but "
                f"{first.run_dir} is {first.dataset} test_envs {first.test_envs}; give runs "
                "of one dataset and test environment")
    if single_trial:
        seeds = sorted({r.trial_seed for r in runs})
        if len(seeds) > 1:
            raise DomainBedError(
                f"{what}: runs of trial seeds {seeds} have different data splits; choose one "
                "trial seed, or average every trial with the uniform (dagger) rule")
        identities = {split_identity(r) for r in runs}
        if len(identities) > 1:
            raise DomainBedError(
                f"{what}: runs of trial seed {seeds[0]} were split differently (holdout "
                "fraction, class balancing or data dir differ); give runs of one sweep")


def by_trial(runs: Sequence[RunInfo]) -> Dict[int, List[RunInfo]]:
    groups: Dict[int, List[RunInfo]] = {}
    for run in runs:
        groups.setdefault(run.trial_seed, []).append(run)
    return dict(sorted(groups.items()))


def score_per_trial(state_dict, runs: Sequence[RunInfo], evaluators: EvaluatorCache,
                    splits: Sequence[str]) -> Dict[str, Dict[int, float]]:
    """``{split: {trial_seed: accuracy}}`` of one state dict on each trial's splits."""
    result: Dict[str, Dict[int, float]] = {s: {} for s in splits}
    for trial, members in by_trial(runs).items():
        evaluator = evaluators(members[0])
        for split in splits:
            result[split][trial] = evaluator.accuracy(state_dict, split)
    return result


def _progress(total: Optional[int], desc: str, enabled: bool):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, disable=not enabled, leave=False, unit="run")


def _load_counted(path: str, member_id: str, bar) -> Dict[str, Any]:
    state = load_member(path, member_id)
    bar.update(1)
    return state


def average_runs(runs: Sequence[RunInfo], rule: str,
                 evaluators: Optional[EvaluatorCache] = None, progress: bool = False,
                 hparams: Optional[Dict[str, Any]] = None, greedy: Optional[str] = None,
                 probe: Optional[str] = None, probe_dir: Optional[str] = None,
                 seed: int = 0):
    """``(SoupResult, runs in averaging order, reference evaluator, live_bn)``: the weights
    of ``runs`` merged with ``rule`` (see ``soup``), not yet scored. Hyperparameters not in
    ``hparams``, and the members of a ``greedy`` ("paper" / "strict") merge, are chosen on
    the pooled ID-validation split, and nothing else is read: the test domain never."""
    from domainbed_aux.merging import MergeInputs, get_rule, merge_with, rule_names
    known = rule_names()
    if rule not in known:
        raise DomainBedError(f"unknown weight selection {rule!r}; known: "
                             f"{', '.join(known)}")
    merge_rule = get_rule(rule)
    check_runs(runs, f"{rule} soup", single_trial=not merge_rule.pooled)
    evaluators = evaluators if evaluators is not None else EvaluatorCache()
    runs = sorted(runs, key=lambda r: r.order_key)
    reference = evaluators(runs[0])
    live_bn = reference.live_bn
    # ties in ID-validation accuracy: the runs' order
    inputs = MergeInputs(members=[], val_acc_of_member={r.run_dir: r.id_val_acc for r in runs},
                         tie_order=[r.run_dir for r in runs], allow_live_bn=live_bn,
                         recompute_bn=reference.recompute_bn if live_bn else None, seed=seed,
                         evaluate=lambda state: reference.accuracy(state, "id_val"))
    if "theta_0" in merge_rule.needs:
        inputs.theta_0 = theta_0_path(runs, probe, probe_dir)
    if "train_data" in merge_rule.needs:
        inputs.data = TrainingDomainData(reference)
    whole = merge_rule.in_table1 or merge_rule.name == "greedy_strict"
    bar = _progress(len(runs) if whole else None, f"{rule} soup", progress)
    if whole:  # loaded whole, each once, as they always were
        inputs.members = [(r.run_dir, functools.partial(_load_counted, r.model_path, r.run_dir,
                                                        bar)) for r in runs]
    else:  # read tensor by tensor from disk, as many passes as the rule makes
        inputs.members = [(r.run_dir, r.model_path) for r in runs]
        inputs.on_open = lambda _: bar.update(1)
    try:
        result = merge_with(merge_rule, inputs, hparams, greedy)
    finally:
        bar.close()
    if inputs.theta_0 is not None:
        result.details = dict(result.details, theta_0=inputs.theta_0)
    return result, runs, reference, live_bn


def soup(runs: Sequence[RunInfo], rule: str, evaluators: Optional[EvaluatorCache] = None,
         splits: Sequence[str] = ("test_in",), progress: bool = False,
         **merge: Any) -> Dict[str, Any]:
    """Merge ``runs`` with ``rule`` (any registered merge rule: ``merging.rule_names()``) and score the result.

    Returns a JSON-ready dict: ``rule``, ``dataset``, ``test_env``, ``trial_seeds``,
    ``candidates`` (run dirs, in the order tried), ``members`` (kept run dirs, in order),
    ``trace`` (greedy: one entry per candidate), ``val_acc`` (greedy: pooled ID-validation
    accuracy of the final soup), ``accuracies`` (``{split: mean over trial seeds}``),
    ``per_trial`` (``{split: {trial_seed: acc}}``), ``bn`` (how batch-norm statistics were
    handled) and ``bn_recomputed``; rules with hyperparameters add ``hparams`` (chosen on ID
    validation) and ``details`` (the grid searched, theta_0...). ``merge``: see
    ``soup_and_weights``. Scores on ``splits`` are computed after the merge is made.
    """
    return soup_and_weights(runs, rule, evaluators, splits, progress, **merge)[0]


def soup_and_weights(runs: Sequence[RunInfo], rule: str,
                     evaluators: Optional[EvaluatorCache] = None,
                     splits: Sequence[str] = ("test_in",),
                     progress: bool = False, **merge: Any
                     ) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """``soup``'s dict and the averaged state dict it scored (``merge``: ``hparams``,
    ``greedy``, ``probe``, ``probe_dir``, ``seed`` of ``average_runs``)."""
    for split in splits:
        if split not in SPLITS:
            raise DomainBedError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    evaluators = evaluators if evaluators is not None else EvaluatorCache()
    result, runs, reference, live_bn = average_runs(runs, rule, evaluators, progress, **merge)
    val_accs = {r.run_dir: r.id_val_acc for r in runs}
    per_trial = score_per_trial(result.state_dict, runs, evaluators, splits)
    summary = result.summary()
    candidates = ([t["member"] for t in summary["trace"]] if summary["trace"]
                  else [r.run_dir for r in runs])
    out = {
        "rule": result.rule if merge.get("greedy") else rule,
        "dataset": runs[0].dataset,
        "test_env": runs[0].test_envs[0] if len(runs[0].test_envs) == 1 else runs[0].test_envs,
        "trial_seeds": sorted({r.trial_seed for r in runs}),
        "n_candidates": summary["n_candidates"],
        "candidates": candidates,
        "members": summary["members"],
        "member_val_accs": {r.run_dir: val_accs[r.run_dir] for r in runs},
        "trace": summary["trace"],
        "val_acc": summary["val_acc"],
        "accuracies": {s: sum(v.values()) / len(v) for s, v in per_trial.items()},
        "per_trial": {s: {str(k): v for k, v in accs.items()} for s, accs in per_trial.items()},
        "weights": weights_text(runs),
        "bn": _bn_text(reference, live_bn),
        "bn_recomputed": bool(summary["bn_recomputed"]),
    }
    if result.hparams or result.details:  # rules beyond uniform and greedy
        out["hparams"] = dict(result.hparams)
        out["details"] = _json_ready(result.details)
    return out, result.state_dict


def _json_ready(value):
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, float) and value != value:
        return None
    return value


def weights_text(runs: Sequence[RunInfo]) -> str:
    """Which weights of the runs were used (the report and ``inference`` print it)."""
    kinds = sorted({"best-ID-validation checkpoint" if r.uses_best_checkpoint
                    else ("final weights" if r.weights == "final"
                          else "final (trajectory-averaged) weights") for r in runs})
    return " and ".join(kinds)


def _bn_text(evaluator, live_bn: bool) -> str:
    if live_bn:
        return "live batch norm: statistics re-estimated on the training envs' in splits"
    model = evaluator.model_if_built()
    import torch
    has_bn = model is not None and any(
        isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if has_bn:
        return "frozen batch norm: statistics identical in every member (checked), kept"
    return "no batch-norm layer"


# ----------------------------------------------------------------------------- Table 1 rows

# the families averaged in Table 1: a merge rule adds its row beside their soups (report --rules)
RULE_ROW_FAMILIES = {"erm": ("Model soups", 10.0), "inter": ("Ratatouille", 16.0)}


def rule_rows(rules: Sequence[str], probe: Optional[str] = None,
              probe_dir: Optional[str] = None) -> List[Table1Row]:
    """A Table 1 row per merge rule and soup family (``RULE_ROW_FAMILIES``), after that
    family's soups: "<family's soups> <rule's title>"; each cell merges the runs of one trial
    seed with hyperparameters chosen on its ID validation. A rule that cannot merge a cell
    (no theta_0 recorded, one run for SLERP) leaves its row out with a note."""
    from domainbed_aux.merging import get_rule
    rows = []
    for k, name in enumerate(dict.fromkeys(rules)):
        rule = get_rule(name)
        if rule.in_table1:
            raise DomainBedError(f"--rules {name}: already a row of Table 1; give other rules "
                                 "(e.g. ties, task_arithmetic, model_stock)")
        for family, (prefix, position) in RULE_ROW_FAMILIES.items():
            rows.append(Table1Row(f"{prefix} {rule.title}", family, position + 0.01 * (k + 1),
                                  _rule_cell(name, probe, probe_dir), pooled=rule.pooled,
                                  optional=True))
    return rows


def _rule_cell(name: str, probe: Optional[str], probe_dir: Optional[str]):
    from domainbed_aux.merging import get_rule
    rule = get_rule(name)
    key = f"{name}@{rule.version}" + (f"|probe={probe}" if probe else "")

    def score(table, runs: Sequence[RunInfo], method):
        result = table.cached("soup", key, runs, lambda: soup(
            runs, name, table.evaluators, [table.split], progress=table.progress,
            probe=probe, probe_dir=probe_dir))
        return result["accuracies"][table.split], result
    return score


def _table1_cell(rule: str):
    """The Table 1 cell of a ``rule`` soup of the runs of a cell (see ``report.registry``)."""
    def score(table, runs: Sequence[RunInfo], method):
        result = table.cached("soup", rule, runs, lambda: soup(
            runs, rule, table.evaluators, [table.split], progress=table.progress))
        return result["accuracies"][table.split], result
    return score


for _name, _family, _position, _rule in (
        ("Model soups uniform", "erm", 8, "uniform"),
        ("Model soups greedy", "erm", 9, "greedy"),
        ("Model soups uniform (dagger)", "erm", 10, "dagger"),
        ("Ratatouille uniform", "inter", 14, "uniform"),
        ("Ratatouille greedy", "inter", 15, "greedy"),
        ("Ratatouille uniform (dagger)", "inter", 16, "dagger")):
    register(Table1Row(_name, _family, _position, _table1_cell(_rule),
                       pooled=_rule == "dagger"))
