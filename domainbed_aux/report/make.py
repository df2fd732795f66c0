"""The report as a typed call: ``make_report(ReportRequest(...)) -> exit status``.

What ``python -m domainbed_aux.scripts.report`` runs after parsing its flags, and what the
recipe's report stage calls directly: Table 1 of the runs in ``input_dirs`` (with the rows
of ``rules``), the regime section (the runs of the other stages in ``foundation_dirs``,
``probe_dirs``, ``aux_dirs``) and the checks before merging, rendered as ``fmt``, printed on
stdout and written to ``output``.
"""

import json
import logging
import sys
from dataclasses import dataclass, field
from typing import List, Optional

from domainbed.errors import DomainBedError, one_line
from domainbed.lib.misc import show_progress

log = logging.getLogger("domainbed_aux.report")


@dataclass
class ReportRequest:
    """One report; see ``python -m domainbed_aux.scripts.report --help`` for each field."""

    input_dirs: List[str]
    data_dir: Optional[str] = None
    fmt: str = "text"  # text, markdown, latex or json
    full_domain: bool = False
    weights: str = "best"
    cache_dir: Optional[str] = "default"  # None: recompute every evaluation
    output: Optional[str] = None
    save_models: Optional[str] = None
    no_progress: bool = False
    foundation_dirs: List[str] = field(default_factory=list)
    probe_dirs: List[str] = field(default_factory=list)
    aux_dirs: List[str] = field(default_factory=list)
    rules: List[str] = field(default_factory=list)
    probe: Optional[str] = None
    output_dir_lp: Optional[str] = None
    checks: bool = True


def make_report(request: ReportRequest) -> int:
    """Build, print and write the report; returns 0, or 1 after a one-line error."""
    from domainbed.lib.device import get_device
    from domainbed.lib.misc import atomic_write_text
    from domainbed.reports import render
    from domainbed_aux.report import build_table1
    from domainbed_aux.report.regime import (check_regime, read_curves, regime_to_dict,
                                             warn_regime)
    try:
        report, provider = build_table1(
            list(request.input_dirs), request.data_dir, request.full_domain,
            request.cache_dir, progress=show_progress(request.no_progress),
            device=get_device(), weights=request.weights, rules=list(request.rules),
            probe=request.probe, probe_dir=request.output_dir_lp)
        checks = {}
        if request.checks:
            from domainbed_aux.report.checks import premerge_cells
            checks = premerge_cells(provider, request.probe, request.output_dir_lp)
            for cell, found in checks.items():
                if found.get("warning"):
                    log.warning("%s: %s", cell, found["warning"])
        stages = [list(request.foundation_dirs), list(request.probe_dirs),
                  list(request.aux_dirs)]
        regime = check_regime(provider.runs, *(read_curves(f) for f in stages),
                              with_stages=any(stages))
        warn_regime(regime)
        text = render(report, request.fmt)
        if request.fmt == "json":
            data = json.loads(text)
            data["regime"] = regime_to_dict(regime)
            data["checks"] = checks
            data["rules"] = rule_details(provider)
            text = json.dumps(data, indent=2) + "\n"
        else:
            text += regime_text(regime, request.fmt)
            text += checks_text(checks, request.fmt)
        if request.output:
            atomic_write_text(request.output, text)
        if request.save_models:
            from domainbed_aux.scoring.save import save_table1_models
            saved = save_table1_models(provider, request.save_models, list(request.input_dirs))
            print(f"{len(saved)} model folders written under {request.save_models}",
                  file=sys.stderr)
    except DomainBedError as exc:
        print(f"report: error: {one_line(exc, last=False)}", file=sys.stderr)
        return 1
    sys.stdout.write(text)
    counts = provider.counts
    print(f"({counts['computed']} evaluations computed, {counts['cached']} read from cache)",
          file=sys.stderr)
    return 0


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
