"""Average (or ensemble) finished runs and score them: the paper code's ``inference`` command.

``python -m domainbed_aux.scripts.inference --dataset D --test_env k --input_dir DIR[,DIR...]
--weight_selection uniform|greedy|greedy_strict|ensemble --trial_seed t``

Runs considered: finished runs (``done`` and ``model.safetensors``) under the input dirs
with that dataset, ``test_envs == [k]`` and trial seed ``t`` (default 0 as in the paper's
code; ``-1``: every trial; with ``uniform`` this is the dagger soup). Soups average each run's
best-ID-validation checkpoint (``--weights final``: its final weights). A soup averages one
family: runs of several algorithms, or recycled runs (started from an auxiliary or fused
featurizer) with non-recycled ones, or robust with plain ones, are refused; choose with
``--algorithms``. Prints a
summary and writes the full result as JSON (``--output``, default
``<first input dir>/inference_<dataset>_env<k>_<selection>_trial<t>.json``).
"""

import argparse
import json
import logging
import os
import sys
from typing import Any, Dict, List, Optional

from domainbed.errors import DomainBedError, one_line
from domainbed.lib.misc import atomic_write_text, show_progress

log = logging.getLogger("domainbed_aux.inference")

SELECTIONS = ("uniform", "greedy", "greedy_strict", "ensemble")


def _recycled(run) -> bool:
    from domainbed_aux.algorithms import starts_from_auxiliary
    from domainbed_aux.sweep_plugin import RECYCLING_ALGORITHMS
    return run.algorithm in RECYCLING_ALGORITHMS or starts_from_auxiliary(run.init)


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


def run_inference(dataset: str, test_env: int, input_dirs: List[str], weight_selection: str,
                  trial_seed: int, data_dir: Optional[str] = None, full_domain: bool = False,
                  algorithms: Optional[List[str]] = None, device=None,
                  progress: bool = True, weights: str = "best") -> Dict[str, Any]:
    """The soup (or ensemble) of the matching runs, scored; a JSON-ready dict.

    Raises ``DomainBedError`` when the runs are not one family (see ``check_one_family``).
    """
    from domainbed_aux.scoring.ensembles import ensemble
    from domainbed_aux.scoring.evaluation import EvaluatorCache
    from domainbed_aux.scoring.runs import find_runs
    from domainbed_aux.scoring.soups import soup
    if weight_selection not in SELECTIONS:
        raise DomainBedError(f"unknown --weight_selection {weight_selection!r}; known: "
                             f"{', '.join(SELECTIONS)}")
    rule = weight_selection
    if trial_seed == -1 and rule == "uniform":
        rule = "dagger"
    elif trial_seed == -1 and rule != "ensemble":
        raise DomainBedError(f"--trial_seed -1 (every trial) works with uniform (the dagger "
                             f"soup) or ensemble, not {weight_selection!r}: greedy selection "
                             "needs one trial's validation split; pick a trial seed")
    runs = find_runs(input_dirs, dataset=dataset, test_env=test_env, trial_seed=trial_seed,
                     algorithms=algorithms, weights=weights)
    if not runs:
        raise DomainBedError(
            f"no finished run of {dataset} with --test_envs {test_env} and trial seed "
            f"{'any' if trial_seed == -1 else trial_seed}"
            f"{' and algorithm in ' + str(algorithms) if algorithms else ''} under "
            f"{', '.join(input_dirs)} (a run needs `done` and model.safetensors)")
    check_one_family(runs)
    splits = ["test_in", "id_val"] + (["test_full"] if full_domain else [])
    evaluators = EvaluatorCache(data_dir=data_dir, device=device)
    if rule == "ensemble":
        result = ensemble(runs, evaluators, splits, progress=progress)
    else:
        result = soup(runs, rule, evaluators, splits, progress=progress)
    result.update({"weight_selection": weight_selection, "trial_seed": trial_seed,
                   "input_dirs": list(input_dirs), "n_runs": len(runs),
                   "algorithm": runs[0].algorithm})
    return result


def format_summary(result: Dict[str, Any]) -> str:
    """A few human-readable lines about an inference result."""
    lines = [f"{result['rule']} of {result['dataset']}, test env {result['test_env']}, "
             f"trial seeds {result['trial_seeds']}: {len(result['members'])} of "
             f"{result['n_runs']} runs used"]
    for step in result.get("trace") or []:
        lines.append(f"  {'kept ' if step['kept'] else 'skip '} val {step['val_acc']:.4f} "
                     f"soup val {step['soup_acc']:.4f} n={step['n_in_soup']}  {step['member']}")
    if not result.get("trace"):
        lines += [f"  member {m}" for m in result["members"]]
    names = {"test_in": "test (env_in)", "id_val": "ID val (pooled out splits)",
             "test_full": "test (full domain)"}
    for split, acc in result["accuracies"].items():
        lines.append(f"  {names.get(split, split)}: {100 * acc:.2f}%")
    if "weights" in result:
        lines.append(f"  weights averaged: {result['weights']} of each run")
    if "bn" in result:
        lines.append(f"  batch norm: {result['bn']}")
    return "\n".join(lines)


def default_output(args) -> str:
    name = (f"inference_{args.dataset}_env{args.test_env}_{args.weight_selection}_"
            f"trial{args.trial_seed}.json")
    return os.path.join(args.input_dir.split(",")[0], name)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True)
    p.add_argument("--test_env", type=int, required=True)
    p.add_argument("--input_dir", required=True, help="sweep folder(s), comma-separated")
    p.add_argument("--weight_selection", default="uniform", choices=SELECTIONS)
    p.add_argument("--trial_seed", type=int, default=0,
                   help="trial seed of the runs (default 0, as the paper's code); -1 = every "
                        "trial (uniform: the dagger soup)")
    p.add_argument("--weights", choices=("best", "final"), default="best",
                   help="which weights of each run: best = its best-ID-validation checkpoint "
                        "(the paper's; default), final = its weights after the last step")
    p.add_argument("--data_dir", default=None, help="override the runs' recorded --data_dir")
    p.add_argument("--full_domain", action="store_true",
                   help="also score on the whole test domain")
    p.add_argument("--algorithms", nargs="+", default=None,
                   help="only runs of these algorithms (default: all)")
    p.add_argument("--output", default=None, help="JSON file to write")
    p.add_argument("--no_progress", action="store_true",
                   help="no progress bars (they are off anyway when stderr is not a terminal)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    from domainbed.lib.device import get_device
    try:
        result = run_inference(args.dataset, args.test_env,
                               [d for d in args.input_dir.split(",") if d],
                               args.weight_selection, args.trial_seed, args.data_dir,
                               args.full_domain, args.algorithms, get_device(),
                               progress=show_progress(args.no_progress), weights=args.weights)
        output = args.output or default_output(args)
        atomic_write_text(output, json.dumps(result, indent=2) + "\n")
    except DomainBedError as exc:
        message = one_line(exc, last=False)
        print(f"inference: error: {message}", file=sys.stderr)
        return 1
    print(format_summary(result))
    print(f"written: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
