"""``build_table1``: the Table 1 ``Report`` of the runs under some folders."""

import os
from typing import Dict, List, Optional, Sequence

from domainbed.errors import DomainBedError
from domainbed.lib.query import Q

from domainbed_aux.report.cache import CACHE_DIR_NAME, EvaluationCache
from domainbed_aux.report.provider import Table1Rows
from domainbed_aux.report.registry import families, family_of
from domainbed_aux.scoring.evaluation import EvaluatorCache
from domainbed_aux.scoring.runs import find_runs


def build_table1(input_dirs: Sequence[str], data_dir: Optional[str] = None,
                 full_domain: bool = False, cache_dir: Optional[str] = "default",
                 progress: bool = False, device=None, weights: str = "best",
                 rules: Sequence[str] = (), probe: Optional[str] = None,
                 probe_dir: Optional[str] = None):
    """The Table 1 ``Report`` (render it with ``domainbed.reports.render``) and the provider.

    ``cache_dir``: "default" = ``<first input dir>/.ratatouille_cache``, None = no cache.
    ``rules``: merge rules (``domainbed_aux.merging``) that add a row per family of soups
    (``scoring.soups.rule_rows``), their hyperparameters chosen on ID validation per cell;
    ``probe`` / ``probe_dir``: where theta_0 is when the runs' records do not lead to it.
    Raises ``DomainBedError`` when no finished run with a model file and one test env exists.
    """
    from domainbed.lib.reporting import LoadReport
    from domainbed.model_selection import IIDAccuracySelectionMethod
    from domainbed.reports import build_report
    runs = find_runs(input_dirs, weights=weights)
    runs = [r for r in runs if len(r.test_envs) == 1 and r.test_envs[0] >= 0]
    if not runs:
        raise DomainBedError(f"no finished run with one test environment and a model file "
                             f"under {', '.join(input_dirs)}; the report needs the sweep's "
                             "run directories (with `done` and model.safetensors)")
    if not any(family_of(r) for r in runs):
        known = sorted(a for algs in families().values() for a in algs)
        raise DomainBedError(f"no run of the algorithms of Table 1 ({', '.join(known)}) "
                             f"under {', '.join(input_dirs)}")
    if cache_dir == "default":
        cache_dir = os.path.join(input_dirs[0], CACHE_DIR_NAME)
    from domainbed_aux.scoring.soups import rule_rows
    provider = Table1Rows(runs, EvaluatorCache(data_dir=data_dir, device=device),
                          EvaluationCache(cache_dir), full_domain, progress,
                          rule_rows(rules, probe, probe_dir))
    records = Q([r for run in runs for r in run.records])
    load = LoadReport(input_dir=",".join(input_dirs), n_runs=len(runs), n_records=len(records))
    report = build_report(records, [IIDAccuracySelectionMethod], [provider], load,
                          columns="tested")
    for row, why in sorted(provider.skipped.items()):
        report.notes.append(f"row {row} left out: {why}")
    from domainbed_aux.report.members import cell_counts
    report.notes.extend(cell_counts(runs))
    split = "the whole test domain" if full_domain else "env{test}_in"
    dagger = len({r.trial_seed for r in runs}) > 1
    report.notes.append(f"every row is scored on {split}" + (
        "; dagger rows hold one value (every trial seed averaged), shown as 'x +/- 0.0'"
        if dagger else ""))
    which = ("each run's best-ID-validation checkpoint (model_best.safetensors; MA and SWAD: "
             "their averaged final model)" if weights == "best"
             else "each run's final weights (model.safetensors)")
    report.notes.append(f"soups, ensembles and WiSE-FT use {which}")
    report.notes.extend(rule_notes(provider))
    return report, provider


def rule_notes(provider) -> List[str]:
    """Per row of a merge rule with searched hyperparameters, the values ID validation chose
    and in how many cells."""
    from domainbed_aux.merging import get_rule
    from domainbed_aux.merging.selection import selected_text
    chosen: Dict[str, Dict[str, int]] = {}
    for key, detail in sorted(provider.details.items()):
        if isinstance(detail, dict) and detail.get("hparams"):
            searched = {h.name for h in get_rule(detail["rule"]).hparams if len(h.values()) > 1}
            values = {k: v for k, v in detail["hparams"].items() if k in searched}
            if not values:
                continue
            dataset, row = key.split("/")[:2]
            text = selected_text(values)
            counts = chosen.setdefault(f"{dataset}: {row}", {})
            counts[text] = counts.get(text, 0) + 1
    return [f"{row}: hyperparameters chosen on ID validation: " + "; ".join(
        f"{text} ({n} cell{'s' if n > 1 else ''})" for text, n in sorted(
            counts.items(), key=lambda item: -item[1])) for row, counts in chosen.items()]
