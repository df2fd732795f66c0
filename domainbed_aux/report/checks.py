"""The report's checks before merging: per cell of the averaged families (test domain, trial
seed), the checks of ``merging.premerge`` on the runs a soup of that cell averages, cached
like every evaluation; a section after the tables sums them up and prints every warning."""

from typing import Any, Dict, List, Optional

CHECKS_VERSION = "premerge@1"


def premerge_cells(provider, probe: Optional[str] = None,
                   probe_dir: Optional[str] = None) -> Dict[str, Dict[str, Any]]:
    """``{"<dataset>/<row prefix>/env<k>/<trial>": checks}`` for every cell of two runs or
    more of the families that Table 1 averages (robust runs apart)."""
    from domainbed_aux.report.registry import family_of
    from domainbed_aux.scoring.checks import check_runs_before_merging
    from domainbed_aux.scoring.soups import RULE_ROW_FAMILIES
    groups: Dict[tuple, List] = {}
    for run in provider.runs:
        family = family_of(run)
        if family in RULE_ROW_FAMILIES:
            key = (run.dataset, family, run.robust, run.test_envs[0], run.trial_seed)
            groups.setdefault(key, []).append(run)
    cells = {}
    for (dataset, family, robust, env, trial), runs in sorted(groups.items()):
        if len(runs) < 2:
            continue
        label = ("Robust " if robust else "") + RULE_ROW_FAMILIES[family][0]
        cells[f"{dataset}/{label}/env{env}/{trial}"] = provider.cached(
            "checks", CHECKS_VERSION, runs,
            lambda runs=runs: check_runs_before_merging(runs, provider.evaluators, probe,
                                                        probe_dir))
    return cells


def render_checks(cells: Dict[str, Dict[str, Any]], markdown: bool = False) -> str:
    """The section: how many cells, the spread of the uniform average's gain over its
    members, and every warning with its cell."""
    if not cells:
        return ""
    gains = [c["uniform"]["gain"] for c in cells.values() if c.get("uniform")]
    warnings = [(cell, c["warning"]) for cell, c in cells.items() if c.get("warning")]
    title = "Checks before merging (ID validation)"
    lines = [f"## {title}" if markdown else title, ""]
    text = f"{len(cells)} cells checked"
    if gains:
        text += (f"; the uniform average minus its members' mean: min "
                 f"{100 * min(gains):+.1f} / mean {100 * sum(gains) / len(gains):+.1f} / max "
                 f"{100 * max(gains):+.1f} points")
    lines.append(text + f"; {len(warnings)} warning{'s' if len(warnings) != 1 else ''}"
                 + (":" if warnings else " (details: --json)"))
    for cell, warning in warnings:
        lines.append(f"{'- ' if markdown else '  '}{cell}: {warning}")
    return "\n".join(lines) + "\n"
