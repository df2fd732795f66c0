"""Upstream DomainBed's ``collect_results`` output, line for line (text and LaTeX).

Same tables, orders, widths and cells as upstream: a cell is the mean +/- standard error
over the trial seeds that could be scored (groups a selection method cannot score are
dropped, "X" only when none is left); every algorithm of the sweep gets a row in every
dataset's table; datasets follow ``domainbed.datasets.DATASETS`` and algorithms
``domainbed.algorithms.ALGORITHMS`` (unknown algorithms after them, first seen first).
The functions keep upstream's names and signatures; ``print_*`` print to stdout, the
``*_lines`` variants return the lines. No torch import here.
"""

import sys
from typing import Any, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from domainbed.algorithms.registry import algorithm_names
from domainbed.datasets.registry import dataset_names, declared_environments
from domainbed.lib.query import Q
from domainbed.lib.reporting import get_grouped_records, record_n_envs, sweep_accs
from domainbed.lib.text_rows import format_row

LATEX_PREAMBLE = [r"\documentclass{article}", r"\usepackage{booktabs}",
                  r"\usepackage{adjustbox}", r"\begin{document}",
                  r"\section{Full DomainBed results}"]
LATEX_END = r"\end{document}"


def remove_key(d: dict, key: str) -> dict:
    """A shallow copy of ``d`` without ``key``."""
    return {k: v for k, v in d.items() if k != key}


def recursive_freeze(obj: Any) -> Any:
    """A hashable copy: dicts become frozensets of items, lists and tuples tuples, sets
    frozensets."""
    if isinstance(obj, dict):
        return frozenset((k, recursive_freeze(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return tuple(recursive_freeze(v) for v in obj)
    if isinstance(obj, set):
        return frozenset(recursive_freeze(v) for v in obj)
    return obj


def merge_records(records) -> Q:
    """One record per group of records whose ``args`` agree once ``holdout_fraction`` is
    removed (later records' keys win), as upstream's auto-lr selection needs."""
    groups = {}
    for record in records:
        key = recursive_freeze(remove_key(record["args"], "holdout_fraction"))
        groups.setdefault(key, {}).update(record)
    return Q(list(groups.values()))


def format_mean(data: Sequence[float], latex: bool) -> Tuple[Optional[float], Optional[float],
                                                            str]:
    """``(mean, err, text)`` in percent: err = 100 * population std / sqrt(n); text is
    ``"{:.1f} +/- {:.1f}"`` (LaTeX: ``$\\pm$``); empty data gives ``(None, None, "X")``."""
    if len(data) == 0:
        return None, None, "X"
    mean = 100 * np.mean(list(data))
    err = 100 * np.std(list(data) / np.sqrt(len(data)))
    if latex:
        return mean, err, "{:.1f} $\\pm$ {:.1f}".format(mean, err)
    return mean, err, "{:.1f} +/- {:.1f}".format(mean, err)


def table_lines(table: List[list], header_text: str, row_labels: Sequence[str],
                col_labels: Sequence[str], colwidth: int = 10, latex: bool = True) -> List[str]:
    """The lines upstream's ``print_table`` prints. Like upstream it inserts each row's label
    into ``table`` and the header row at index 0 (``table`` is changed in place)."""
    lines = [""]
    n_cells = len(table[0]) if table else 0
    if latex:
        lines += [r"\begin{center}", r"\adjustbox{max width=\textwidth}{%",
                  r"\begin{tabular}{l" + "c" * n_cells + "}", r"\toprule"]
    else:
        lines.append("-------- " + header_text)
    for row, label in zip(table, row_labels):
        row.insert(0, label)
    if latex:
        col_labels = ["\\textbf{" + str(label).replace("%", "\\%") + "}"
                      for label in col_labels]
    table.insert(0, list(col_labels))
    for i, row in enumerate(table):
        lines.append(format_row(row, colwidth=colwidth, latex=latex))
        if latex and i == 0:
            lines.append(r"\midrule")
    if latex:
        lines += [r"\bottomrule", r"\end{tabular}}", r"\end{center}"]
    return lines


def print_table(table: List[list], header_text: str, row_labels: Sequence[str],
                col_labels: Sequence[str], colwidth: int = 10, latex: bool = True) -> None:
    """Print a table as upstream does (see ``table_lines``)."""
    for line in table_lines(table, header_text, row_labels, col_labels, colwidth, latex):
        print(line)


def _algorithm_order(records) -> List[str]:
    """Every algorithm of the records: ``ALGORITHMS`` order, then unknown ones first seen
    first (the names come from the registry's index: no torch import)."""
    seen = list(dict.fromkeys(_args(r)["algorithm"] for r in records
                              if "algorithm" in _args(r)))
    known = algorithm_names()
    known_set = set(known)
    return [a for a in known if a in seen] + [a for a in seen if a not in known_set]


def _environment_labels(dataset: str, records) -> List[str]:
    """The dataset class's ``ENVIRONMENTS``; for a dataset that reads its domains from disk
    (``ImageFolder``) the count comes from the records (``env0``, ``env1``, ...)."""
    labels = declared_environments(dataset)
    if labels is not None:
        return [str(label) for label in labels]
    n_envs = max(record_n_envs(r) for r in records if _args(r).get("dataset") == dataset)
    return [f"env{i}" for i in range(n_envs)]


def _args(record) -> dict:
    args = record.get("args")
    return args if isinstance(args, dict) else {}


def scored_groups(records, selection_method, grouped: Optional[Q] = None,
                  cache: Optional[dict] = None) -> Q:
    """Upstream's groups with their ``sweep_acc``; groups the method cannot score dropped.

    ``grouped`` is ``get_grouped_records(records)`` when the caller has it already; with
    ``cache`` the scores are shared with other callers (see ``reporting.sweep_accs``)."""
    grouped = get_grouped_records(records) if grouped is None else grouped
    if getattr(selection_method, "merges_records", False):
        grouped = grouped.map(lambda g: dict(g, records=merge_records(g["records"])))
        cache = None  # scores of merged records are this function's own
    accs = sweep_accs(grouped, selection_method, cache)
    return Q([dict(g, sweep_acc=acc) for g, acc in zip(grouped, accs) if acc is not None])


def _avg_text(means: List[Optional[float]]) -> str:
    if any(m is None for m in means):
        return "X"
    return "{:.1f}".format(sum(means) / len(means))


def results_tables_lines(records, selection_method, latex: bool,
                         grouped: Optional[Q] = None, cache: Optional[dict] = None) -> List[str]:
    """The lines upstream's ``print_results_tables`` prints for one selection method
    (``grouped`` and ``cache``: see ``scored_groups``)."""
    grouped = scored_groups(records, selection_method, grouped, cache)
    algorithms = _algorithm_order(records)
    seen_datasets = set(_args(r).get("dataset") for r in records)
    shown = [d for d in dataset_names() if d in seen_datasets]
    lines: List[str] = []
    for dataset in shown:
        if latex:
            lines += ["", "\\subsubsection{{{}}}".format(dataset)]
        labels = _environment_labels(dataset, records)
        table = [[None] * (len(labels) + 1) for _ in algorithms]
        for i, algorithm in enumerate(algorithms):
            means = []
            for j in range(len(labels)):
                accs = grouped.filter(lambda g: (g["dataset"], g["algorithm"], g["test_env"])
                                      == (dataset, algorithm, j)).select("sweep_acc")
                mean, _, table[i][j] = format_mean(accs, latex)
                means.append(mean)
            table[i][-1] = _avg_text(means)
        header = "Dataset: {}, model selection method: {}".format(dataset, selection_method.name)
        lines += table_lines(table, header, algorithms, ["Algorithm", *labels, "Avg"],
                             colwidth=20, latex=latex)

    if latex:
        lines += ["", "\\subsubsection{Averages}"]
    table = [[None] * (len(shown) + 1) for _ in algorithms]
    for i, algorithm in enumerate(algorithms):
        means = []
        for j, dataset in enumerate(shown):
            trial_means = grouped.filter(
                lambda g: (g["algorithm"], g["dataset"]) == (algorithm, dataset)
            ).group("trial_seed").map(lambda trial_seed, group: group.select("sweep_acc").mean())
            mean, _, table[i][j] = format_mean(trial_means, latex)
            means.append(mean)
        table[i][-1] = _avg_text(means)
    header = "Averages, model selection method: {}".format(selection_method.name)
    lines += table_lines(table, header, algorithms, ["Algorithm", *shown, "Avg"],
                         colwidth=25, latex=latex)
    return lines


def print_results_tables(records, selection_method, latex: bool) -> None:
    """Print upstream's per-dataset and averages tables for one selection method."""
    for line in results_tables_lines(records, selection_method, latex):
        print(line)


def report_lines(records, selection_methods: Iterable[type], latex: bool,
                 grouped: Optional[Q] = None, cache: Optional[dict] = None) -> List[str]:
    """The whole of upstream's ``collect_results`` output (without its trailing newline);
    ``grouped`` and ``cache``: see ``scored_groups``."""
    records = Q(records)
    grouped = get_grouped_records(records) if grouped is None else grouped
    lines: List[str] = []
    if latex:
        lines += LATEX_PREAMBLE + ["% Total records: {}".format(len(records))]
    else:
        lines.append("Total records: {}".format(len(records)))
    for method in selection_methods:
        if latex:
            lines += ["", "\\subsection{{Model selection: {}}}".format(method.name)]
        lines += results_tables_lines(records, method, latex, grouped, cache)
    if latex:
        lines.append(LATEX_END)
    return lines


def write_report(records, selection_methods: Iterable[type], latex: bool,
                 stream=None) -> None:
    """Write ``report_lines`` to ``stream`` (default stdout), one per line."""
    stream = stream if stream is not None else sys.stdout
    for line in report_lines(records, selection_methods, latex):
        stream.write(line + "\n")
