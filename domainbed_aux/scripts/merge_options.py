"""The command-line options of merging, shared by ``inference`` and ``merge`` (declared once),
and the help text that lists the registered rules."""

import argparse
import json
from typing import Any, Dict, Sequence


def hparams_json(text: str) -> Dict[str, Any]:
    """``--rule_hparams``: a JSON object of hyperparameter values."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON ({exc}); example: "
                                         "'{\"density\": 0.2, \"lambda\": 1.0}'") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("give a JSON object, e.g. '{\"lambda\": 0.5}'")
    return value


def rules_help() -> str:
    """One line per registered rule: its name, definition and searched hyperparameters."""
    from domainbed_aux.merging.registry import get_rule, rule_names
    lines = ["merge rules (hyperparameters: default, then the grid chosen on ID validation):"]
    for name in rule_names():
        rule = get_rule(name)
        hp = "; ".join(f"{h.name}={h.default}" + (f" in {list(h.grid)}" if h.grid else "")
                       for h in rule.hparams)
        lines.append(f"  {name}: {rule.definition}" + (f" [{hp}]" if hp else ""))
    return "\n".join(lines)


def add_base_and_check_arguments(group) -> None:
    """``--probe`` and ``--output_dir_lp`` (where theta_0 is) and ``--no_checks``: shared by
    ``inference``, ``merge`` and the report."""
    group.add_argument("--probe", default=None, metavar="FILE",
                       help="theta_0 for rules on task vectors: the linear probe the runs "
                            "started from (default: found from the runs' records)")
    group.add_argument("--output_dir_lp", default=None, metavar="DIR",
                       help="where the runs' linear probes are (the sweep's --output_dir_lp; "
                            "default: found from the runs' records)")
    group.add_argument("--no_checks", action="store_true",
                       help="skip the checks before merging (per set of members: pairwise "
                            "cosines and distances, the midpoint of the most distant pair, "
                            "the collapse warning)")


def add_merge_arguments(parser: argparse.ArgumentParser, choices: Sequence[str],
                        default: str = "uniform") -> None:
    """``--weight_selection`` (``choices``: read from the registry when the parser is
    built) and the options of merge rules."""
    parser.add_argument("--weight_selection", default=default, choices=list(choices),
                        help="the merge rule (see the list below), default %(default)s")
    group = parser.add_argument_group(
        "merge rules", "hyperparameters a rule has are chosen on the pooled ID-validation "
        "split (never the test domain) unless fixed with --rule_hparams")
    group.add_argument("--rule_hparams", type=hparams_json, default=None, metavar="JSON",
                       help="fix hyperparameters of the rule, e.g. '{\"density\": 0.2}'")
    group.add_argument("--greedy", nargs="?", const="paper", choices=("paper", "strict"),
                       default=None, help="select the members greedily over the rule (add "
                       "runs by ID-validation accuracy while the rule's result does not "
                       "degrade: paper, the default, keeps ties; strict needs an improvement)")
    add_base_and_check_arguments(group)
    group.add_argument("--merge_seed", type=int, default=0,
                       help="seed of rules that draw (DARE's masks), default 0")
    group.add_argument("--plot", action="store_true",
                       help="also draw the checks' pairwise matrices as a PNG")
    parser.epilog = rules_help()
    parser.formatter_class = argparse.RawDescriptionHelpFormatter


def merge_kwargs(args: argparse.Namespace) -> Dict[str, Any]:
    """The keyword arguments of ``scoring.soups.soup_and_weights`` from parsed options."""
    return {"hparams": args.rule_hparams, "greedy": args.greedy, "probe": args.probe,
            "probe_dir": args.output_dir_lp, "seed": args.merge_seed}
