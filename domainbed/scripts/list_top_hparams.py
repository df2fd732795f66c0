"""Hyperparameters ranked by validation accuracy, per trial seed, for one dataset, algorithm
and test env: ``python -m domainbed.scripts.list_top_hparams --input_dir DIR --dataset D
--algorithm A --test_env k``.
"""

import argparse
import json
import logging
import sys
from typing import List, Optional

from domainbed.errors import DomainBedError
from domainbed.lib.query import Q
from domainbed.lib.reporting import DEFAULT_MAX_DEPTH, get_grouped_records, load_records
from domainbed.model_selection import SELECTION_METHODS, get_selection_method


def top_hparams(records, dataset: str, algorithm: str, test_env: int, method) -> Q:
    """``Q`` of ``(trial_seed, hparams_accs)`` for the matching groups, by trial seed;
    ``hparams_accs`` is ``method.hparams_accs`` (best validation accuracy first)."""
    groups = [g for g in get_grouped_records(records)
              if g["dataset"] == dataset and g["algorithm"] == algorithm
              and g["test_env"] == test_env]
    return Q([(g["trial_seed"], method.hparams_accs(g["records"])) for g in groups])


def _acc(value) -> str:
    return "X" if value is None else f"{value:.4f}"


def format_top_hparams(ranking, top: Optional[int] = None) -> str:
    out = []
    for trial_seed, accs in ranking:
        out.append(f"Trial seed {trial_seed}:")
        for acc, records in list(accs)[:top]:
            args = records[0]["args"]
            out.append(f"  val {_acc(acc['val_acc'])}  test {_acc(acc['test_acc'])}  "
                       f"hparams_seed {args.get('hparams_seed')}  "
                       f"hparams {json.dumps(records[0].get('hparams'), sort_keys=True)}")
            dirs = sorted({str(r["args"].get("output_dir")) for r in records})
            out += [f"      {d}" for d in dirs]
    return "\n".join(out) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input_dir", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--algorithm", required=True)
    parser.add_argument("--test_env", type=int, required=True)
    parser.add_argument("--selection_method", default="training_domain",
                        help=f"one of {', '.join(SELECTION_METHODS)}")
    parser.add_argument("--top", type=int, default=None, help="show only the best N")
    parser.add_argument("--max_depth", type=int, default=DEFAULT_MAX_DEPTH)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    try:
        method = get_selection_method(args.selection_method)
        records = load_records(args.input_dir, args.max_depth)
        ranking = top_hparams(records, args.dataset, args.algorithm, args.test_env, method)
        if not len(ranking):
            raise DomainBedError(
                f"no finished run of dataset {args.dataset!r}, algorithm {args.algorithm!r} "
                f"with test env {args.test_env} in {args.input_dir!r}; check the names "
                "(collect_results lists what the sweep holds)")
    except DomainBedError as exc:
        print(f"list_top_hparams: error: {exc}", file=sys.stderr)
        return 1
    print(f"Model selection: {method.name}")
    sys.stdout.write(format_top_hparams(ranking, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
