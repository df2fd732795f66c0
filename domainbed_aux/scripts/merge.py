"""Average finished runs into one model and save it as a model folder.

``python -m domainbed_aux.scripts.merge --dataset D --test_env k --input_dir DIR[,DIR...]
--weight_selection RULE|best_run --output_dir OUT``

``RULE`` is any registered merge rule (``domainbed_aux.merging``; see ``--help``), with
``inference``'s options (``--rule_hparams``, ``--greedy``, ``--probe``, ``--output_dir_lp``).

The runs are ``inference``'s (same flags: ``--trial_seed``, ``--algorithms``, ``--weights``);
``dagger`` averages every trial seed; ``best_run`` saves the single run that
training-domain validation selects (the "vanilla" row's model for ERM runs); ``--run_dir
RUN`` saves one given run. The result is scored on ``env{test}_in`` and ID validation and
written to OUT: model.safetensors, config.json, merge.json, README.md (see docs/models.md).
The same inputs give the same bytes. Use it with ``domainbed.load_model`` or
``python -m domainbed.scripts.predict --model OUT``.
"""

import argparse
import logging
import os
import sys

from domainbed.errors import DomainBedError, one_line
from domainbed.lib.misc import show_progress
from domainbed_aux.scripts.merge_options import add_merge_arguments, merge_kwargs

BEST_RUN = "best_run"


def choices():
    """``--weight_selection``: every registered merge rule, and ``best_run``."""
    from domainbed_aux.merging import rule_names
    return tuple(rule_names()) + (BEST_RUN,)

log = logging.getLogger("domainbed_aux.merge")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--output_dir", required=True, help="the model folder to write")
    p.add_argument("--dataset", help="dataset of the runs")
    p.add_argument("--test_env", type=int, help="test environment of the runs")
    p.add_argument("--input_dir", help="sweep folder(s) holding the runs, comma-separated")
    add_merge_arguments(p, choices())
    p.add_argument("--trial_seed", type=int, default=0,
                   help="trial seed of the runs (default 0); -1 with uniform = dagger")
    p.add_argument("--algorithms", nargs="+", default=None,
                   help="only runs of these algorithms (a soup averages one family)")
    p.add_argument("--weights", choices=("best", "final"), default="best",
                   help="each run's best-ID-validation checkpoint (default, the paper's) or "
                        "its final weights")
    p.add_argument("--run_dir", default=None,
                   help="save this one finished run (instead of a selection of runs)")
    p.add_argument("--data_dir", default=None, help="override the runs' recorded --data_dir")
    p.add_argument("--full_domain", action="store_true",
                   help="also score on the whole test domain")
    p.add_argument("--no_progress", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def _selection(args) -> dict:
    selection = {"dataset": args.dataset, "test_env": args.test_env,
                 "trial_seed": args.trial_seed, "algorithms": args.algorithms,
                 "weights": args.weights, "weight_selection": args.weight_selection}
    if args.rule_hparams or args.greedy:  # only what changes the weights
        selection.update(rule_hparams=args.rule_hparams, greedy=args.greedy)
    return selection


def merge(args) -> dict:
    """Make and write the model folder the parsed ``args`` describe; returns the scores."""
    from domainbed.lib.device import get_device
    from domainbed_aux.scoring.evaluation import EvaluatorCache
    from domainbed_aux.scoring.inference import infer, select_runs
    from domainbed_aux.scoring.runs import best_run, read_run
    from domainbed_aux.scoring.save import save_run, save_soup
    evaluators = EvaluatorCache(data_dir=args.data_dir, device=get_device())
    splits = ["test_in", "id_val"] + (["test_full"] if args.full_domain else [])
    input_dirs = [d for d in (args.input_dir or "").split(",") if d]
    if args.run_dir:
        run = read_run(args.run_dir, args.weights)
        splits = splits if run.test_envs else []
        return save_run(args.output_dir, run, input_dirs, evaluators, splits,
                        dict(_selection(args), run_dir=args.run_dir))
    missing = [f"--{k}" for k in ("dataset", "test_env", "input_dir")
               if getattr(args, k) is None]
    if missing:
        raise DomainBedError(f"merge needs {', '.join(missing)} (or --run_dir RUN to save "
                             "one run)")
    if args.weight_selection == BEST_RUN:
        runs = select_runs(args.dataset, args.test_env, input_dirs, args.trial_seed,
                           args.algorithms, args.weights)
        if len({r.trial_seed for r in runs}) > 1:
            raise DomainBedError("best_run selects within one trial seed; give --trial_seed")
        return save_run(args.output_dir, best_run(runs), input_dirs, evaluators, splits,
                        _selection(args))
    selection, trial_seed = args.weight_selection, args.trial_seed
    if selection == "dagger":
        selection, trial_seed = "uniform", -1
    result, state, runs = infer(args.dataset, args.test_env, input_dirs, selection,
                                trial_seed, full_domain=args.full_domain,
                                algorithms=args.algorithms,
                                progress=show_progress(args.no_progress),
                                weights=args.weights, evaluators=evaluators,
                                checks=not args.no_checks, **merge_kwargs(args))
    if result.get("checks"):
        from domainbed_aux.merging.premerge import format_checks
        for line in format_checks(result["checks"]):
            print(line)
    save_soup(args.output_dir, result, state, runs, input_dirs, evaluators, _selection(args))
    if args.plot and result.get("checks"):  # beside the folder: it holds the model only
        from domainbed_aux.merging.premerge import plot_checks
        path = os.path.normpath(args.output_dir) + "_checks.png"
        plot_checks(result["checks"], path)
        print(f"plot: {path}")
    return result


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        result = merge(args)
    except DomainBedError as exc:
        print(f"merge: error: {one_line(exc, last=False)}", file=sys.stderr)
        return 1
    n = len(result.get("members") or [])
    print(f"{result['rule']}: {n} run{'s' if n != 1 else ''} averaged")
    if result.get("hparams"):
        from domainbed_aux.merging.selection import selected_text
        print(f"  hyperparameters (chosen on ID validation unless given): "
              f"{selected_text(result['hparams'])}")
    for split, acc in sorted((result.get("accuracies") or {}).items()):
        print(f"  {split}: {100 * acc:.2f}%")
    print(f"model folder: {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
