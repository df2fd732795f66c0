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
from domainbed.lib.misc import show_progress
from domainbed.reports.writers import add_format_arguments

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
    from domainbed_aux.merging.options import add_base_and_check_arguments
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


def regime_text(regime, fmt: str) -> str:
    """The regime section in the report's format (LaTeX: as comment lines)."""
    from domainbed_aux.report.regime import render_regime
    if fmt == "json":
        return ""
    text = render_regime(regime, markdown=fmt == "markdown")
    if fmt == "latex":
        return "".join(f"% {line}\n" if line else "%\n" for line in text.splitlines())
    return text


def checks_text(checks, fmt: str) -> str:
    """The checks-before-merging section in the report's format (LaTeX: comment lines)."""
    from domainbed_aux.report.checks import render_checks
    text = render_checks(checks, markdown=fmt == "markdown")
    if not text:
        return ""
    text = "\n" + text
    if fmt == "latex":
        return "".join(f"% {line}\n" if line else "%\n" for line in text.splitlines())
    return text


def rule_details(provider) -> dict:
    """``{cell: {"rule", "hparams", "selection"}}`` of the rows of merge rules (JSON)."""
    out = {}
    for key, detail in sorted(provider.details.items()):
        if isinstance(detail, dict) and "hparams" in detail:
            out[key] = {"rule": detail.get("rule"), "hparams": detail["hparams"],
                        "selection": (detail.get("details") or {}).get("selection")}
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    from domainbed.lib.device import get_device
    from domainbed.lib.misc import atomic_write_text
    from domainbed.reports import render
    from domainbed_aux.report import build_table1
    from domainbed_aux.report.regime import (check_regime, read_curves, regime_to_dict,
                                             warn_regime)
    try:
        report, provider = build_table1(
            [d for d in args.input_dir.split(",") if d], args.data_dir, args.full_domain,
            None if args.no_cache else args.cache_dir, progress=show_progress(args.no_progress),
            device=get_device(), weights=args.weights, rules=parse_rules(args.rules),
            probe=args.probe, probe_dir=args.output_dir_lp)
        checks = {}
        if not args.no_checks:
            from domainbed_aux.report.checks import premerge_cells
            checks = premerge_cells(provider, args.probe, args.output_dir_lp)
            for cell, found in checks.items():
                if found.get("warning"):
                    log.warning("%s: %s", cell, found["warning"])
        stages = [_folders(args.foundation_dir), _folders(args.probe_dir),
                  _folders(args.aux_dir)]
        regime = check_regime(provider.runs, *(read_curves(f) for f in stages),
                              with_stages=any(stages))
        warn_regime(regime)
        text = render(report, args.fmt)
        if args.fmt == "json":
            import json
            data = json.loads(text)
            data["regime"] = regime_to_dict(regime)
            data["checks"] = checks
            data["rules"] = rule_details(provider)
            text = json.dumps(data, indent=2) + "\n"
        else:
            text += regime_text(regime, args.fmt)
            text += checks_text(checks, args.fmt)
        if args.output:
            atomic_write_text(args.output, text)
        if args.save_models:
            from domainbed_aux.scoring.save import save_table1_models
            saved = save_table1_models(provider, args.save_models,
                                       [d for d in args.input_dir.split(",") if d])
            print(f"{len(saved)} model folders written under {args.save_models}",
                  file=sys.stderr)
    except DomainBedError as exc:
        message = one_line(exc, last=False)
        print(f"report: error: {message}", file=sys.stderr)
        return 1
    sys.stdout.write(text)
    counts = provider.counts
    print(f"({counts['computed']} evaluations computed, {counts['cached']} read from cache)",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
