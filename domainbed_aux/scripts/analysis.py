"""Analyses of trained runs, one sub-command each; every one writes JSON and (when matplotlib
is installed) a PNG next to it.

``python -m domainbed_aux.scripts.analysis lmc --run_a R1 --run_b R2``            full models
``python -m domainbed_aux.scripts.analysis lmc --featurizer_a F1 --featurizer_b F2 --head H``
``python -m domainbed_aux.scripts.analysis lmc --run_a R1 --run_b R2 --run_c R3`` three-way
``python -m domainbed_aux.scripts.analysis diversity --runs R1 R2 [R3 ...]``
``python -m domainbed_aux.scripts.analysis wise_ft --run_dir R --alphas 0,0.1,...,1``
``python -m domainbed_aux.scripts.analysis ablations --input_dir SWEEP --ablation n_runs``

Scores use the exact splits of a reference run (``--run_dir``; by default the first run
given, or the ``--head`` run). See docs/analysis.md.
"""

import argparse
import json
import logging
import math
import os
import sys
from typing import Any, Dict, List, Optional

from domainbed.errors import DomainBedError, one_line
from domainbed.lib.misc import atomic_write_text

log = logging.getLogger("domainbed_aux.analysis")

SPLITS = ("test_in", "id_val", "test_full")
WEIGHTS_HELP = ("which weights of a run directory: best = its best-ID-validation checkpoint, "
                "the weights soups average (default); final = its weights after the last step")


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float) and (math.isnan(obj) or math.isinf(obj)):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def write_outputs(result: Dict[str, Any], output: str, plot, no_plot: bool) -> Dict[str, str]:
    """Write ``output`` (JSON) and, unless disabled or without matplotlib, ``<stem>.png``."""
    from domainbed_aux.analysis.plots import matplotlib_available
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    written = {"json": output}
    if not no_plot:
        if matplotlib_available():
            png = os.path.splitext(output)[0] + ".png"
            plot(result, png)
            written["png"] = png
        else:
            log.warning("matplotlib is not installed: no plot (pip install matplotlib)")
    atomic_write_text(output, json.dumps(_json_safe(result), indent=2, sort_keys=True) + "\n")
    return written


# -- lmc -------------------------------------------------------------------------------------

def run_lmc(args) -> Dict[str, Any]:
    from domainbed_aux.analysis import lmc
    from domainbed_aux.analysis.sources import (check_split, compose, evaluator_for,
                                                load_parts)
    three_way = bool(args.run_c or args.featurizer_c)
    if args.featurizer_a or args.featurizer_b:
        mode = "featurizer"
        sources = [args.featurizer_a, args.featurizer_b] + ([args.featurizer_c]
                                                            if three_way else [])
        if not all(sources) or not args.head:
            raise DomainBedError("featurizers under a fixed head need --featurizer_a, "
                                 "--featurizer_b (optionally --featurizer_c) and --head")
        reference = args.run_dir or args.head
    else:
        mode = "full"
        sources = [args.run_a, args.run_b] + ([args.run_c] if three_way else [])
        if not all(sources):
            raise DomainBedError("give --run_a and --run_b (full models), or --featurizer_a, "
                                 "--featurizer_b and --head (featurizers under one head)")
        reference = args.run_dir or args.run_a
    evaluator = evaluator_for(reference, args.data_dir)
    check_split(evaluator, args.split)
    template = evaluator.new_model().state_dict()
    names = ["featurizer"] if mode == "featurizer" else ["featurizer", "classifier"]
    states = [lmc.flatten_parts(load_parts(s, args.weights), names) for s in sources]
    base = template
    if mode == "featurizer":
        head = load_parts(args.head, args.weights)
        if "classifier" not in head:
            raise DomainBedError(f"--head {args.head}: no classifier weights in it")
        base = compose(template, {"classifier": head["classifier"]})

    def evaluate(flat):
        return evaluator.accuracy(compose(base, lmc.unflatten_parts(flat)), args.split)

    result: Dict[str, Any] = {"mode": mode, "sources": sources, "head": args.head,
                              "split": args.split, "reference_run": reference,
                              "weights": args.weights}
    if three_way:
        result.update(lmc.three_way(evaluate, states, args.n_points - 1))
        result["kind"] = "three_way"
    else:
        lambdas = lmc.parse_grid(args.lambdas) if args.lambdas else \
            lmc.lambda_grid(args.n_points)
        result.update(lmc.curve(evaluate, states[0], states[1], lambdas))
        result["kind"] = "two_way"
    return result


def plot_lmc(result: Dict[str, Any], path: str):
    from domainbed_aux.analysis.plots import plot_curves, plot_simplex
    what = "featurizers under a fixed head" if result["mode"] == "featurizer" else "full models"
    split = result["split"]
    if result["kind"] == "three_way":
        labels = [os.path.basename(os.path.normpath(s)) for s in result["sources"]]
        return plot_simplex(result["points"], result["accuracies"], labels, path=path,
                            title=f"Three-way connectivity ({what})",
                            colorbar_label=f"accuracy on {split} (%)")
    lambdas = result["lambdas"]
    ends = [result["accuracies"][0], result["accuracies"][-1]]
    linear = [(1 - lam) * ends[0] + lam * ends[-1] for lam in lambdas]
    return plot_curves(lambdas, {"interpolated weights": result["accuracies"],
                                 "endpoint accuracies, linearly interpolated": linear},
                       xlabel="interpolation coefficient $\\lambda$  ((1-$\\lambda$) a + "
                              "$\\lambda$ b)",
                       ylabel=f"accuracy on {split} (%)", path=path,
                       title=f"Linear mode connectivity ({what})")


# -- diversity -------------------------------------------------------------------------------

def run_diversity(args) -> Dict[str, Any]:
    from domainbed_aux.analysis import diversity
    from domainbed_aux.analysis.sources import check_split, evaluator_for, load_state
    from domainbed_aux.scoring.evaluation import split_identity
    from domainbed_aux.scoring.runs import read_run
    if len(args.runs) < 2:
        raise DomainBedError("--runs needs at least two sources (run directories or weight "
                             "files)")
    run_dirs = [r for r in args.runs if os.path.isdir(r)]
    reference = args.run_dir or (run_dirs[0] if run_dirs else None)
    if reference is None:
        raise DomainBedError("diversity scores weight files on the splits of a run: give "
                             "--run_dir RUN (the run whose data and splits are used)")
    evaluator = evaluator_for(reference, args.data_dir)
    check_split(evaluator, args.split)
    identity = split_identity(evaluator.run, args.data_dir)
    for path in run_dirs:
        if split_identity(read_run(path, args.weights), args.data_dir)[:7] != identity[:7]:
            raise DomainBedError(f"{path} was not trained on the splits of {reference} "
                                 "(dataset, test envs, trial seed, holdout); diversity compares "
                                 "predictions on the same examples")
    labels = [y for y, _ in evaluator.labels_and_weights(args.split)]
    correct = []
    for source in args.runs:
        scorer = evaluator
        if os.path.isdir(source) and os.path.abspath(source) != os.path.abspath(
                evaluator.run.run_dir):
            scorer = evaluator_for(source, args.data_dir)
        probs = scorer.probabilities(load_state(source, args.weights), args.split)
        correct.append(diversity.correctness(probs, labels))
    result: Dict[str, Any] = {"runs": list(args.runs), "split": args.split,
                              "weights": args.weights, "reference_run": reference,
                              "n_examples": int(len(correct[0]))}
    result.update(diversity.pairwise(correct))
    result["pairs"] = [{"a": args.runs[i], "b": args.runs[j],
                        **diversity.pair_diversity(correct[i], correct[j])}
                       for i in range(len(args.runs)) for j in range(i + 1, len(args.runs))]
    result["note"] = ("q_diversity = 1 - Q; null entries are undefined (0/0) or, for "
                      "ratio_error, infinite (no shared error): see each pair's notes")
    return result


def plot_diversity(result: Dict[str, Any], path: str):
    from domainbed_aux.analysis.plots import plot_matrix
    labels = [os.path.basename(os.path.normpath(r))[:12] for r in result["runs"]]
    return plot_matrix(result["q_diversity"], labels, path=path,
                       title=f"Diversity of errors on {result['split']} (1 - Q)",
                       colorbar_label="1 - Q (q-statistic)")


# -- wise_ft ---------------------------------------------------------------------------------

def run_wise_ft(args) -> Dict[str, Any]:
    from domainbed_aux.analysis.lmc import parse_grid
    from domainbed_aux.analysis.sources import evaluator_for
    from domainbed_aux.analysis.wise_ft import wise_ft
    evaluator = evaluator_for(args.run_dir, args.data_dir)
    splits = ["id_val"] + (["test_in"] if evaluator.test_envs else [])
    return wise_ft(evaluator, parse_grid(args.alphas), args.init, splits)


def plot_wise_ft(result: Dict[str, Any], path: str):
    from domainbed_aux.analysis.plots import plot_curves
    names = {"test_in": "test (env{test}_in)", "id_val": "ID validation"}
    curves = {names.get(k, k): v for k, v in result["accuracies"].items()}
    return plot_curves(result["alphas"], curves, path=path,
                       xlabel="$\\alpha$  ((1-$\\alpha$) $\\theta_{ft}$ + $\\alpha$ "
                              "$\\theta_{init}$)",
                       ylabel="accuracy (%)", title="WiSE-FT: back towards the initialisation")


# -- ablations -------------------------------------------------------------------------------

def run_ablations(args) -> Dict[str, Any]:
    from domainbed_aux.analysis.ablations import SoupScorer, ablate
    from domainbed_aux.analysis.sources import check_split
    from domainbed_aux.scoring.evaluation import RunEvaluator, split_identity
    from domainbed_aux.scoring.runs import find_runs
    runs = find_runs(args.input_dir, dataset=args.dataset, test_env=args.test_env,
                     trial_seed=args.trial_seed, algorithms=args.algorithms)
    if not runs:
        raise DomainBedError(f"no finished run with a model under {', '.join(args.input_dir)} "
                             "matching the filters")
    identities = {split_identity(r, args.data_dir)[:7] for r in runs}
    if len(identities) > 1:
        raise DomainBedError(f"the runs use {len(identities)} different splits (datasets, test "
                             "envs or trial seeds); narrow them with --dataset, --test_env and "
                             "--trial_seed")
    from domainbed_aux.scoring.evaluation import EvaluatorCache
    evaluators = EvaluatorCache(data_dir=args.data_dir)
    evaluator = evaluators(runs[0]) if args.rule != "uniform" else \
        RunEvaluator(runs[0], args.data_dir)
    check_split(evaluator, args.split)
    score = SoupScorer(lambda state: evaluator.accuracy(state, args.split), args.rule,
                       evaluators)
    result = ablate(runs, args.ablation, score, seed=args.seed, n_repeats=args.n_repeats,
                    n_total=args.n_total)
    result.update({"split": args.split, "n_runs_found": len(runs), "rule": args.rule})
    return result


def plot_ablations(result: Dict[str, Any], path: str):
    from domainbed_aux.analysis.ablations import AXIS_LABELS
    from domainbed_aux.analysis.plots import plot_curves
    label = f"{result.get('rule', 'uniform')} soup"
    return plot_curves(result["values"], {label: result["accuracies"]}, path=path,
                       xlabel=AXIS_LABELS[result["ablation"]],
                       ylabel=f"accuracy on {result['split']} (%)",
                       title=f"Ablation: {AXIS_LABELS[result['ablation']]}")


COMMANDS = {"lmc": (run_lmc, plot_lmc), "diversity": (run_diversity, plot_diversity),
            "wise_ft": (run_wise_ft, plot_wise_ft),
            "ablations": (run_ablations, plot_ablations)}


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m domainbed_aux.scripts.analysis",
                                     description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p, split=True, weights=False):
        p.add_argument("--data_dir", default=None, help="overrides the runs' recorded one")
        if weights:
            p.add_argument("--weights", choices=("best", "final"), default="best",
                           help=WEIGHTS_HELP)
        p.add_argument("--output", default=None,
                       help="JSON file (default: analysis_<command>.json); the PNG goes beside")
        p.add_argument("--no_plot", action="store_true")
        if split:
            p.add_argument("--split", default="test_in", choices=SPLITS)

    p = sub.add_parser("lmc", help="linear mode connectivity curves")
    common(p, weights=True)
    for name in ("a", "b", "c"):
        p.add_argument(f"--run_{name}", default=None, help="run directory or model file")
        p.add_argument(f"--featurizer_{name}", default=None,
                       help="featurizer weights (pool member, model file or run)")
    p.add_argument("--head", default=None, help="classifier source: run directory or file")
    p.add_argument("--run_dir", default=None, help="run whose splits and model are used")
    p.add_argument("--n_points", type=int, default=11,
                   help="points on the line (three-way: points per edge)")
    p.add_argument("--lambdas", default=None, help="explicit grid, e.g. 0,0.25,0.5,0.75,1")

    p = sub.add_parser("diversity", help="pairwise diversity of errors (1 - Q, ratio-error)")
    common(p, weights=True)
    p.add_argument("--runs", nargs="+", required=True,
                   help="run directories or weight files (files are scored on the splits of "
                        "--run_dir, default the first run directory)")
    p.add_argument("--run_dir", default=None, help="run whose splits are used (default: first)")

    p = sub.add_parser("wise_ft", help="WiSE-FT interpolation towards the initialisation")
    common(p, split=False)
    p.add_argument("--run_dir", required=True)
    p.add_argument("--alphas", default="0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1")
    p.add_argument("--init", default=None,
                   help="initial weights (default: the run's --init_from, else pretrained)")

    p = sub.add_parser("ablations", help="soup accuracy vs number of aux tasks / runs / share")
    common(p)
    p.add_argument("--input_dir", nargs="+", required=True)
    p.add_argument("--ablation", required=True, choices=("n_aux_tasks", "n_runs", "aux_share"))
    p.add_argument("--dataset", default=None)
    p.add_argument("--test_env", type=int, default=None)
    p.add_argument("--trial_seed", type=int, default=None)
    p.add_argument("--algorithms", nargs="+", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n_repeats", type=int, default=1)
    p.add_argument("--n_total", type=int, default=None, help="aux_share: runs per soup")
    from domainbed_aux.merging import rule_names
    p.add_argument("--rule", default="uniform", choices=tuple(rule_names()),
                   help="the merge rule of each subset (default uniform; hyperparameters "
                        "chosen on the subset's ID validation)")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    compute, plot = COMMANDS[args.command]
    try:
        result = compute(args)
        output = args.output or f"analysis_{args.command}.json"
        written = write_outputs(result, output, plot, args.no_plot)
    except DomainBedError as exc:
        message = one_line(exc, last=False)
        print(f"analysis {args.command}: error: {message}", file=sys.stderr)
        return 1
    if "midpoint_acc" in result:
        print(f"midpoint accuracy {result['midpoint_acc']:.4f} vs mean of endpoints "
              f"{result['endpoints_mean_acc']:.4f} (gain {result['midpoint_gain']:+.4f})")
    for kind, path in written.items():
        print(f"written {kind}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
