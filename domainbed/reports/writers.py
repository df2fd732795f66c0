"""Write a ``Report`` as text, Markdown, LaTeX or JSON (``render(report, fmt)``)."""

import json
from typing import Callable, Dict, List

from domainbed.errors import DomainBedError
from domainbed.lib.atomic import atomic_write_text  # noqa: F401  (torch-free; re-exported)
from domainbed.lib import run_dir as rd
from domainbed.reports.tables import Report, Table

ROW_HEADER = "Algorithm"


def add_format_arguments(parser) -> None:
    """``--latex | --markdown | --json`` (default: text) into ``args.fmt``."""
    fmt = parser.add_mutually_exclusive_group()
    for name in ("latex", "markdown", "json"):
        fmt.add_argument(f"--{name}", dest="fmt", action="store_const", const=name)
    parser.set_defaults(fmt="text")


def _avg(value) -> str:
    return "X" if value is None else f"{value:.1f}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _cells(table: Table, pm: str) -> List[List[str]]:
    """The table as strings: header row first, "Avg" as last column."""
    lines = [[ROW_HEADER] + list(table.columns) + ["Avg"]]
    for row in table.rows:
        lines.append([row.name] + [c.format(pm) for c in row.cells] + [_avg(row.avg)])
    return lines


def _summary(report: Report) -> List[str]:
    lines = []
    if report.load is not None:
        load = report.load
        lines.append(f"{_count(load.n_runs, 'run')} counted, {_count(load.n_skipped, 'run')} "
                     f"without `{rd.DONE}` ignored, {_count(report.n_records, 'record')}")
        if load.n_bad_lines:
            lines.append(f"{_count(load.n_bad_lines, 'undecodable results.jsonl line')} "
                         "skipped")
        if getattr(load, "n_malformed", 0):
            lines.append(f"{_count(load.n_malformed, 'record')} with values of the wrong "
                         "type skipped")
        if load.empty_dirs:
            lines.append(f"{_count(len(load.empty_dirs), 'run')} with `{rd.DONE}` but no "
                         "record ignored")
        diverged = getattr(load, "diverged_dirs", [])
        if diverged:
            lines.append(f"{_count(len(diverged), 'run')} diverged (non-finite loss; "
                         "counted with the scores of the diverged model): "
                         + ", ".join(diverged))
    else:
        lines.append(_count(report.n_records, "record"))
    lines.extend(f"Note: {note}" for note in report.notes)
    return lines


def to_text(report: Report) -> str:
    out = [f"# {line}" for line in _summary(report)]
    for section in report.sections:
        for table in section.tables:
            out.append("")
            out.append(f"-------- {table.title}, model selection method: {section.method.name}")
            lines = _cells(table, "+/-")
            widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
            for line in lines:
                out.append("  ".join(s.ljust(w) for s, w in zip(line, widths)).rstrip())
    return "\n".join(out) + "\n"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(report: Report) -> str:
    out = ["# Results", ""] + [f"- {line}" for line in _summary(report)]
    for section in report.sections:
        out += ["", f"## Model selection: {section.method.name}"]
        for table in section.tables:
            lines = _cells(table, "+/-")
            out += ["", f"### {table.title}", ""]
            out.append("| " + " | ".join(_md_escape(s) for s in lines[0]) + " |")
            out.append("|" + "|".join([" --- "] + [" ---: "] * (len(lines[0]) - 1)) + "|")
            out += ["| " + " | ".join(_md_escape(s) for s in line) + " |" for line in lines[1:]]
    return "\n".join(out) + "\n"


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                  "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def to_latex(report: Report) -> str:
    """A standalone document (booktabs, adjustbox) with one tabular per table."""
    out = [r"\documentclass{article}", r"\usepackage{booktabs}", r"\usepackage{adjustbox}",
           r"\begin{document}", ""]
    out += [latex_escape(line) + r"\\" for line in _summary(report)]
    for section in report.sections:
        out += ["", r"\section*{Model selection: " + latex_escape(section.method.name) + "}"]
        for table in section.tables:
            lines = _cells(table, r"$\pm$")
            escaped = [[latex_escape(line[0])] + line[1:] for line in lines[1:]]
            out += ["", r"\subsubsection*{" + latex_escape(table.title) + "}", "",
                    r"\begin{center}", r"\adjustbox{max width=\textwidth}{%",
                    r"\begin{tabular}{l" + "c" * (len(lines[0]) - 1) + "}", r"\toprule",
                    " & ".join(r"\textbf{" + latex_escape(s) + "}" for s in lines[0]) + r" \\",
                    r"\midrule"]
            out += [" & ".join(line) + r" \\" for line in escaped]
            out += [r"\bottomrule", r"\end{tabular}}", r"\end{center}"]
    out += ["", r"\end{document}"]
    return "\n".join(out) + "\n"


def extras_text(report: Report, latex: bool, with_tables: bool = False) -> str:
    """What we add after upstream's ``collect_results`` output: the summary (runs counted,
    runs without ``done`` ignored, records) and notes, as ``#`` lines (LaTeX: ``%`` comments
    after ``\\end{document}``); with ``with_tables`` also our tables, which hold the rows
    of row providers (LaTeX: as comment lines)."""
    if latex:
        body = to_latex(report) if with_tables else ""
        lines = [f"% {line}" for line in _summary(report)]
        if body:
            lines += ["%"] + [f"% {line}" if line else "%" for line in body.splitlines()]
        return "".join(line + "\n" for line in lines)
    if with_tables:
        return "\n" + to_text(report)
    return "\n" + "".join(f"# {line}\n" for line in _summary(report))


def report_to_dict(report: Report) -> dict:
    """Machine-readable report. Accuracies (``mean``, ``se``, ``values``, ``avg``) are in
    percent; a missing cell has ``mean`` and ``se`` null; ``values`` follow ``trial_seeds``."""
    def cell(c):
        values = [None if v is None else 100.0 * v for v in c.values]
        return {"mean": c.mean, "se": c.se, "n": len(c.values), "values": values,
                "trial_seeds": c.trial_seeds}

    def table(t: Table):
        return {"columns": list(t.columns),
                "rows": {row.name: {"cells": {col: cell(c) for col, c in zip(t.columns, row.cells)},
                                    "avg": row.avg}
                         for row in t.rows}}

    load = report.load
    result = {
        "units": "percent",
        "n_records": report.n_records,
        "n_runs": None if load is None else load.n_runs,
        "n_runs_ignored_without_done": None if load is None else load.n_skipped,
        "n_bad_lines": None if load is None else load.n_bad_lines,
        "diverged_runs": None if load is None else list(getattr(load, "diverged_dirs", [])),
        "notes": list(report.notes),
        "selection_methods": {},
    }
    for section in report.sections:
        datasets = {t.dataset: table(t) for t in section.tables if t.dataset is not None}
        averages = [table(t) for t in section.tables if t.dataset is None]
        result["selection_methods"][section.method.name] = {
            "datasets": datasets, "averages": averages[0] if averages else None}
    return result


def to_json(report: Report) -> str:
    return json.dumps(report_to_dict(report), indent=2, sort_keys=False) + "\n"


# format name -> (writer, file name written next to the sweep)
FORMATS: Dict[str, tuple] = {
    "text": (to_text, "results.txt"),
    "markdown": (to_markdown, "results.md"),
    "latex": (to_latex, "results.tex"),
    "json": (to_json, "results.json"),
}


def render(report: Report, fmt: str = "text") -> str:
    """The report as a string in ``fmt`` (one of ``FORMATS``)."""
    if fmt not in FORMATS:
        raise DomainBedError(f"unknown report format {fmt!r}; known formats: {', '.join(FORMATS)}")
    writer: Callable[[Report], str] = FORMATS[fmt][0]
    return writer(report)
