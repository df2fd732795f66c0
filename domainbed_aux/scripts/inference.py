"""Average (or ensemble) finished runs and score them: the paper code's ``inference`` command.

``python -m domainbed_aux.scripts.inference --dataset D --test_env k --input_dir DIR[,DIR...]
--weight_selection RULE|ensemble --trial_seed t``

``RULE`` is any registered merge rule (``domainbed_aux.merging``: uniform, greedy,
greedy_strict, task_arithmetic, ties, dare_linear, dare_ties, model_stock, slerp,
slerp_tangent, fisher, regmean, and any rule a plugin adds); its hyperparameters are chosen
on ID validation unless fixed (``--rule_hparams``), ``--greedy`` selects the runs greedily
over it. The checks before merging are printed (and written in the JSON) first.

Runs considered: finished runs (``done`` and ``model.safetensors``) under the input dirs
with that dataset, ``test_envs == [k]`` and trial seed ``t`` (default 0 as in the paper's
code; ``-1``: every trial; with ``uniform`` this is the dagger soup). Soups average each run's
best-ID-validation checkpoint (``--weights final``: its final weights). A soup averages one
family: runs of several algorithms, or recycled runs (started from an auxiliary or fused
featurizer) with non-recycled ones, or robust with plain ones, are refused; choose with
``--algorithms``. Prints a
summary and writes the full result as JSON (``--output``, default
``<first input dir>/inference_<dataset>_env<k>_<selection>_trial<t>.json``); ``--save DIR``
also writes the soup as a model folder (docs/models.md).
"""

import argparse
import json
import logging
import os
import sys
from typing import Any, Dict

from domainbed.errors import DomainBedError, one_line
from domainbed.lib.misc import atomic_write_text, show_progress
from domainbed_aux.scripts.merge_options import add_merge_arguments, merge_kwargs
from domainbed_aux.scoring.inference import infer, selections

log = logging.getLogger("domainbed_aux.inference")

def format_summary(result: Dict[str, Any]) -> str:
    """A few human-readable lines about an inference result."""
    lines = []
    if result.get("checks"):
        from domainbed_aux.merging.premerge import format_checks
        lines += format_checks(result["checks"])
    lines.append(f"{result['rule']} of {result['dataset']}, test env {result['test_env']}, "
                 f"trial seeds {result['trial_seeds']}: {len(result['members'])} of "
                 f"{result['n_runs']} runs used")
    if result.get("hparams"):
        from domainbed_aux.merging.selection import selected_text
        grid = ((result.get("details") or {}).get("selection") or {}).get("grid") or []
        how = f"chosen on ID validation among {len(grid)}" if grid else "given or default"
        lines.append(f"  hyperparameters ({how}): {selected_text(result['hparams'])}")
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


def plot_checks(result: Dict[str, Any], output: str):
    """Draw the checks' pairwise matrices next to the JSON (``<stem>_checks.png``)."""
    if not result.get("checks"):
        log.warning("--plot: no checks to draw (an ensemble, every trial, or --no_checks)")
        return None
    from domainbed_aux.merging.premerge import plot_checks as draw
    path = os.path.splitext(output)[0] + "_checks.png"
    draw(result["checks"], path)
    return path


def default_output(args) -> str:
    name = (f"inference_{args.dataset}_env{args.test_env}_{args.weight_selection}_"
            f"trial{args.trial_seed}.json")
    return os.path.join(args.input_dir.split(",")[0], name)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True)
    p.add_argument("--test_env", type=int, required=True)
    p.add_argument("--input_dir", required=True, help="sweep folder(s), comma-separated")
    add_merge_arguments(p, selections())
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
    p.add_argument("--save", default=None, metavar="DIR",
                   help="also write the soup as a model folder (see docs/models.md)")
    p.add_argument("--no_progress", action="store_true",
                   help="no progress bars (they are off anyway when stderr is not a terminal)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    from domainbed.lib.device import get_device
    from domainbed_aux.scoring.evaluation import EvaluatorCache
    input_dirs = [d for d in args.input_dir.split(",") if d]
    try:
        if args.save and args.weight_selection == "ensemble":
            raise DomainBedError("--save writes one network; an ensemble is several: choose "
                                 "a soup (--weight_selection uniform or greedy)")
        evaluators = EvaluatorCache(data_dir=args.data_dir, device=get_device())
        result, state, runs = infer(args.dataset, args.test_env, input_dirs,
                                    args.weight_selection, args.trial_seed,
                                    full_domain=args.full_domain, algorithms=args.algorithms,
                                    progress=show_progress(args.no_progress),
                                    weights=args.weights, evaluators=evaluators,
                                    checks=not args.no_checks, **merge_kwargs(args))
        if args.save:
            from domainbed_aux.scoring.save import save_soup
            save_soup(args.save, result, state, runs, input_dirs, evaluators,
                      {"dataset": args.dataset, "test_env": args.test_env,
                       "trial_seed": args.trial_seed, "algorithms": args.algorithms,
                       "weights": args.weights, "weight_selection": args.weight_selection})
        output = args.output or default_output(args)
        atomic_write_text(output, json.dumps(result, indent=2) + "\n")
        plot = plot_checks(result, output) if args.plot else None
    except DomainBedError as exc:
        message = one_line(exc, last=False)
        print(f"inference: error: {message}", file=sys.stderr)
        return 1
    print(format_summary(result))
    print(f"written: {output}")
    if plot:
        print(f"plot: {plot}")
    if args.save:
        print(f"model folder: {args.save}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
