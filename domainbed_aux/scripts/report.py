"""The paper's Table 1 for a sweep: ``python -m domainbed_aux.scripts.report --input_dir DIR``.

Rows: vanilla fine-tuning, LP-FT, CORAL, SWAD, MA, WiSE-FT, Ensemble*, model soups (uniform,
greedy, dagger), inter-training, its Ensemble*, fusing, ratatouille (uniform, greedy, dagger)
and their robust variants (the rows whose runs exist), per
dataset and test domain, scored on ``env{test}_in`` (``--full_domain``: the whole test
domain). Text by default, or ``--markdown``, ``--latex``, ``--json``. ``--rules ties,...``
(or ``all``) adds a row per merge rule (``domainbed_aux.merging``) beside each family's
soups, its hyperparameters chosen on ID validation per cell; a section after the tables
gives the checks before merging of every averaged cell (``--no_checks`` skips them).
"""

import argparse
import logging
import sys

from domainbed.errors import DomainBedError, one_line
from domainbed.reports.writers import add_format_arguments
from domainbed_aux.report.make import (ReportRequest, checks_text, make_report,  # noqa: F401
                                       regime_text, rule_details)

log = logging.getLogger("domainbed_aux.report")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--input_dir", required=True, help="sweep folder(s), comma-separated")
    p.add_argument("--data_dir", default=None, help="override the runs' recorded --data_dir")
    add_format_arguments(p)
    p.add_argument("--full_domain", action="store_true",
                   help="score every row on the whole test domain instead of env{test}_in")
    p.add_argument("--weights", choices=("best", "final"), default="best",
                   help="which weights of each run soups, ensembles and WiSE-FT use: best = "
                        "its best-ID-validation checkpoint (the paper's; default), final = "
                        "its weights after the last step")
    p.add_argument("--cache_dir", default="default",
                   help="evaluation cache (default: <first input dir>/.ratatouille_cache)")
    p.add_argument("--no_cache", action="store_true", help="recompute every evaluation")
    p.add_argument("--output", default=None, help="also write the report to this file")
    p.add_argument("--save_models", default=None, metavar="DIR",
                   help="also write a model folder per averaged cell (soup rows) into "
                        "DIR/<dataset>/test<k>/<row>/trial<t> (see docs/models.md)")
    p.add_argument("--no_progress", action="store_true",
                   help="no progress bars (they are off anyway when stderr is not a terminal)")
    regime = p.add_argument_group(
        "regime", "the runs of the recipe's other stages, for the regime section (are the "
        "runs near convergence, as in the paper? see docs/report.md); the target runs' "
        "criteria are always checked")
    regime.add_argument("--foundation_dir", default=None,
                        help="the pretraining sweep folder (comma-separated for several)")
    regime.add_argument("--probe_dir", default=None,
                        help="the linear probes' run folders (e.g. <lp>/runs)")
    regime.add_argument("--aux_dir", default=None, help="the auxiliary sweeps' folder")
    merging = p.add_argument_group(
        "merge rules", "rows beyond uniform and greedy soups, and the checks before merging")
    merging.add_argument("--rules", default=None, metavar="RULE[,RULE...]|all",
                         help="add a row per merge rule for the runs of each averaged family "
                              "(model soups, ratatouille), hyperparameters chosen on ID "
                              "validation per cell; 'all': every rule not already in Table 1 "
                              "(known: %s)" % ", ".join(rule_choices()))
    from domainbed_aux.scripts.merge_options import add_base_and_check_arguments
    add_base_and_check_arguments(merging)
    return p.parse_args(argv)


def rule_choices() -> list:
    """The rules ``--rules`` takes: every registered rule that is not a row already."""
    from domainbed_aux.merging import get_rule, rule_names
    return [n for n in rule_names() if not get_rule(n).in_table1]


def parse_rules(value) -> list:
    """``--rules``: names (comma-separated) or ``all``; an unknown name is a one-line error."""
    if not value:
        return []
    known = rule_choices()
    names = known if value.strip() == "all" else [n.strip() for n in value.split(",")
                                                  if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise DomainBedError(f"--rules: unknown rule {unknown[0]!r}; known: {', '.join(known)} "
                             "(or all)")
    return names


def _folders(value) -> list:
    return [d for d in (value or "").split(",") if d]


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        request = ReportRequest(
            input_dirs=_folders(args.input_dir), data_dir=args.data_dir, fmt=args.fmt,
            full_domain=args.full_domain, weights=args.weights,
            cache_dir=None if args.no_cache else args.cache_dir, output=args.output,
            save_models=args.save_models, no_progress=args.no_progress,
            foundation_dirs=_folders(args.foundation_dir), probe_dirs=_folders(args.probe_dir),
            aux_dirs=_folders(args.aux_dir), rules=parse_rules(args.rules), probe=args.probe,
            output_dir_lp=args.output_dir_lp, checks=not args.no_checks)
    except DomainBedError as exc:
        print(f"report: error: {one_line(exc, last=False)}", file=sys.stderr)
        return 1
    return make_report(request)


if __name__ == "__main__":
    sys.exit(main())
