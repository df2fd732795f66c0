"""The paper code's ``inference``: the soup (or ensemble) of the finished runs of one family
for a dataset, test env and trial seed, scored (the command line is
``domainbed_aux.scripts.inference``)."""

from typing import Any, Dict, List, Optional, Tuple

from domainbed.errors import DomainBedError

ENSEMBLE = "ensemble"


def selections() -> Tuple[str, ...]:
    """What ``--weight_selection`` accepts: every merge rule of one trial seed's runs (the
    registry's; the dagger soup is ``uniform`` with ``--trial_seed -1``) and ``ensemble``."""
    from domainbed_aux.merging import rule_names
    return tuple(rule_names(pooled=False)) + (ENSEMBLE,)


def _recycled(run) -> bool:
    from domainbed.algorithms.registry import recycles
    from domainbed_aux.algorithms import starts_from_auxiliary
    return recycles(run.algorithm) or starts_from_auxiliary(run.init)


def check_one_family(runs) -> None:
    """Raise a one-line error naming ``--algorithms`` unless ``runs`` are one family: one
    algorithm, all recycled or none (started from an auxiliary/fused featurizer), all robust
    or none."""
    algorithms = sorted({r.algorithm for r in runs})
    if len(algorithms) > 1:
        raise DomainBedError(f"the runs mix algorithms {algorithms}: a soup averages one family; "
                             f"choose one with --algorithms (e.g. --algorithms {algorithms[0]})")
    recycled = {_recycled(r) for r in runs}
    if len(recycled) > 1:
        example = next(r for r in runs if _recycled(r))
        raise DomainBedError(
            f"the {algorithms[0]} runs mix recycled runs (started from an auxiliary or fused "
            f"featurizer, e.g. {example.run_dir}) with runs from the pretrained one; a soup "
            "averages one family: select the runs of one sweep, or one family with --algorithms")
    if len({r.robust for r in runs}) > 1:
        raise DomainBedError(f"the {algorithms[0]} runs mix robust and plain auxiliary pools; "
                             "give the input dirs of one of them")


def resolve_rule(weight_selection: str, trial_seed: int) -> str:
    """The rule of ``--weight_selection`` for ``--trial_seed`` (-1 with uniform: dagger)."""
    known = selections()
    if weight_selection not in known:
        raise DomainBedError(f"unknown --weight_selection {weight_selection!r}; known: "
                             f"{', '.join(known)}")
    if trial_seed == -1 and weight_selection == "uniform":
        return "dagger"
    if trial_seed == -1 and weight_selection != ENSEMBLE:
        raise DomainBedError(f"--trial_seed -1 (every trial) works with uniform (the dagger "
                             f"soup) or ensemble, not {weight_selection!r}: a merge rule "
                             "chooses on one trial's validation split; pick a trial seed")
    return weight_selection


def select_runs(dataset: str, test_env: int, input_dirs: List[str], trial_seed: int,
                algorithms: Optional[List[str]] = None, weights: str = "best") -> list:
    """The finished runs of one family that ``inference`` (and ``merge``) average; a
    one-line ``DomainBedError`` when there is none or they mix families."""
    from domainbed_aux.scoring.runs import find_runs
    runs = find_runs(input_dirs, dataset=dataset, test_env=test_env, trial_seed=trial_seed,
                     algorithms=algorithms, weights=weights)
    if not runs:
        raise DomainBedError(
            f"no finished run of {dataset} with --test_envs {test_env} and trial seed "
            f"{'any' if trial_seed == -1 else trial_seed}"
            f"{' and algorithm in ' + str(algorithms) if algorithms else ''} under "
            f"{', '.join(input_dirs)} (a run needs `done` and model.safetensors)")
    check_one_family(runs)
    return runs


def infer(dataset: str, test_env: int, input_dirs: List[str], weight_selection: str,
          trial_seed: int, data_dir: Optional[str] = None, full_domain: bool = False,
          algorithms: Optional[List[str]] = None, device=None, progress: bool = True,
          weights: str = "best", evaluators=None, checks: bool = False, **merge: Any
          ) -> Tuple[Dict[str, Any], Any, list]:
    """``(run_inference's dict, the averaged state dict or None for an ensemble, the
    runs)``; ``merge``: ``hparams``, ``greedy``, ``probe``, ``probe_dir``, ``seed`` of
    ``scoring.soups.average_runs``; ``checks``: add the checks before merging
    (``scoring.checks``) under ``checks``."""
    from domainbed_aux.scoring.ensembles import ensemble
    from domainbed_aux.scoring.evaluation import EvaluatorCache
    from domainbed_aux.scoring.soups import soup_and_weights
    rule = resolve_rule(weight_selection, trial_seed)
    runs = select_runs(dataset, test_env, input_dirs, trial_seed, algorithms, weights)
    splits = ["test_in", "id_val"] + (["test_full"] if full_domain else [])
    if evaluators is None:
        evaluators = EvaluatorCache(data_dir=data_dir, device=device)
    before = None
    if checks and rule != ENSEMBLE and trial_seed != -1:
        from domainbed_aux.scoring.checks import check_runs_before_merging
        before = check_runs_before_merging(runs, evaluators, merge.get("probe"),
                                           merge.get("probe_dir"))
    state = None
    if rule == ENSEMBLE:
        result = ensemble(runs, evaluators, splits, progress=progress)
    else:
        result, state = soup_and_weights(runs, rule, evaluators, splits, progress=progress,
                                         **merge)
    if before is not None:
        result["checks"] = before
    result.update({"weight_selection": weight_selection, "trial_seed": trial_seed,
                   "input_dirs": list(input_dirs), "n_runs": len(runs),
                   "algorithm": runs[0].algorithm})
    return result, state, runs


def run_inference(dataset: str, test_env: int, input_dirs: List[str], weight_selection: str,
                  trial_seed: int, data_dir: Optional[str] = None, full_domain: bool = False,
                  algorithms: Optional[List[str]] = None, device=None,
                  progress: bool = True, weights: str = "best") -> Dict[str, Any]:
    """The soup (or ensemble) of the matching runs, scored; a JSON-ready dict.

    Raises ``DomainBedError`` when the runs are not one family (see ``check_one_family``).
    """
    return infer(dataset, test_env, input_dirs, weight_selection, trial_seed, data_dir,
                 full_domain, algorithms, device, progress, weights)[0]
