"""Build result tables from records: one per dataset and selection method, then averages.

A cell holds one accuracy per trial seed and shows ``mean +/- se`` in percent, with
se = 100 * std(x) / sqrt(n) (population std). Avg columns are plain means of the cells of the
row, "X" when any of them is missing. The rows are those of the *row providers* given
(``domainbed.reports.rows``), provider after provider; by default ``AlgorithmRows``: one row
per algorithm, in the order of ``domainbed.algorithms.ALGORITHMS`` (unknown ones after,
alphabetically). This is how other reports (e.g. weight-averaging rows) build their tables
without touching this module.
"""

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from domainbed.algorithms.registry import algorithm_names
from domainbed.datasets import registry as dataset_registry
from domainbed.lib.query import Q
from domainbed.lib.reporting import LoadReport, get_grouped_records, record_n_envs
from domainbed.model_selection import (IIDAccuracySelectionMethod, LeaveOneOutSelectionMethod,
                                       OracleSelectionMethod)
from domainbed.reports.rows import (AlgorithmRows, ReportContext, RowProvider,  # noqa: F401
                                    ordered_names)

log = logging.getLogger(__name__)

DEFAULT_SELECTION_METHODS = (IIDAccuracySelectionMethod, LeaveOneOutSelectionMethod,
                             OracleSelectionMethod)

Accs = Dict[Any, Optional[float]]  # trial_seed -> accuracy in [0, 1] (None: not selectable)


def _missing(value: Optional[float]) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _seed_order(seed: Any) -> Tuple[str, Any]:
    return str(type(seed)), seed


def mean_se(values: Sequence[float]) -> Tuple[float, float]:
    """Mean and standard error, in percent, of accuracies in [0, 1] (population std)."""
    arr = np.asarray(values, dtype=float)
    return 100.0 * float(arr.mean()), 100.0 * float(arr.std()) / math.sqrt(len(arr))


def format_mean(values: Sequence[Optional[float]], pm: str = "+/-") -> str:
    """``"{mean:.1f} +/- {se:.1f}"`` in percent, or "X" when empty or any value is missing."""
    if not values or any(_missing(v) for v in values):
        return "X"
    mean, se = mean_se(values)
    return f"{mean:.1f} {pm} {se:.1f}"


@dataclass
class Cell:
    """Accuracies of one table cell, one per trial seed."""

    trial_seeds: List[Any]
    values: List[Optional[float]]

    @classmethod
    def from_accs(cls, accs: Accs) -> "Cell":
        seeds = sorted(accs, key=_seed_order)
        return cls(seeds, [accs[s] for s in seeds])

    @property
    def missing(self) -> bool:
        return not self.values or any(_missing(v) for v in self.values)

    @property
    def mean(self) -> Optional[float]:
        return None if self.missing else mean_se(self.values)[0]

    @property
    def se(self) -> Optional[float]:
        return None if self.missing else mean_se(self.values)[1]

    def format(self, pm: str = "+/-") -> str:
        return format_mean(self.values, pm)


@dataclass
class Row:
    name: str
    cells: List[Cell]

    @property
    def avg(self) -> Optional[float]:
        """Plain mean (percent) of the cell means; None ("X") when a cell is missing."""
        if not self.cells or any(c.missing for c in self.cells):
            return None
        return float(np.mean([c.mean for c in self.cells]))


@dataclass
class Table:
    title: str
    columns: List[str]          # the cell columns; "Avg" is implied at the end
    rows: List[Row]
    dataset: Optional[str] = None  # None for the averages table


@dataclass
class Section:
    """The tables of one selection method."""

    method: type
    tables: List[Table]


@dataclass
class Report:
    sections: List[Section]
    n_records: int
    load: Optional[LoadReport] = None
    notes: List[str] = field(default_factory=list)


def _registered_algorithms() -> Optional[List[str]]:
    """``ALGORITHMS`` (torch-free: the registry's index), or None when it cannot be read."""
    try:
        return algorithm_names()
    except Exception as exc:  # missing or half-written module: degrade to alphabetical rows
        log.warning("cannot read the algorithm registry (%s); algorithm rows sorted by name",
                    exc)
        return None


def _registered_datasets() -> Optional[List[str]]:
    """``DATASETS`` (see ``_registered_algorithms``)."""
    try:
        return dataset_registry.dataset_names()
    except Exception as exc:  # as above: tables still come out, with env{i} column names
        log.warning("cannot read the dataset registry (%s); environments named env0, env1, ...",
                    exc)
        return None


def _environment_names(dataset: str, n_envs: int, known: Optional[List[str]],
                       notes: List[str]) -> List[str]:
    fallback = [f"env{i}" for i in range(n_envs)]
    if known is None:
        return fallback
    if dataset not in known:
        notes.append(f"dataset {dataset!r} is not registered in domainbed.datasets: its "
                     f"environment columns are named env0..env{n_envs - 1}")
        return fallback
    try:
        names = dataset_registry.declared_environments(dataset)
        if names is None:  # the class reads them from disk: ask it (imports it)
            names = dataset_registry.get_dataset_class(dataset).environments()
    except Exception as exc:  # e.g. environments read from a data_dir we do not have
        notes.append(f"environment names of {dataset!r} unavailable ({exc}): columns are "
                     "named env0, env1, ...")
        return fallback
    if len(names) != n_envs:
        notes.append(f"records of {dataset!r} have {n_envs} environments but the dataset "
                     f"declares {len(names)}: columns are named env0..env{n_envs - 1}")
        return fallback
    return [str(n) for n in names]


def _normalise_values(values: Mapping[Any, Any], env_names: List[str]) -> Dict[int, Accs]:
    """Provider values -> {env index: {trial_seed: acc}}."""
    by_name = {name: i for i, name in enumerate(env_names)}
    result: Dict[int, Accs] = {}
    for env, accs in values.items():
        index = env if isinstance(env, int) else by_name.get(env)
        if index is None:
            raise ValueError(f"row provider gave unknown environment {env!r}; "
                             f"environments: {env_names} or their indices")
        result[index] = dict(accs) if isinstance(accs, Mapping) else dict(enumerate(accs))
    return result


def _averages_cell(data: Optional[Dict[int, Accs]], envs: Sequence[int]) -> Cell:
    """Per trial seed, the mean over the environments ``envs`` (None if one is missing)."""
    if not data:
        return Cell([], [])
    seeds = sorted({s for env in envs for s in data.get(env, {})}, key=_seed_order)
    values = []
    for seed in seeds:
        accs = [data.get(env, {}).get(seed) for env in envs]
        values.append(None if any(_missing(a) for a in accs) else float(np.mean(accs)))
    return Cell(seeds, values)


def default_row_providers() -> List[RowProvider]:
    """The rows of a plain report: one per algorithm."""
    return [AlgorithmRows()]


def build_report(records, selection_methods: Sequence[type] = DEFAULT_SELECTION_METHODS,
                 row_providers: Optional[Sequence[RowProvider]] = None,
                 load_report: Optional[LoadReport] = None, grouped: Optional[Q] = None,
                 cache: Optional[dict] = None, columns: str = "all") -> Report:
    """Result tables for each selection method: one per dataset, then "Averages".

    ``columns``: "all" (upstream's: every environment of a dataset, "X" where no run tests
    it) or "tested" (only the environments some run tests, the Avg over those, and a note
    naming the others).

    The rows are those of ``row_providers`` (default: ``default_row_providers()``, one row
    per algorithm), provider after provider; two providers may not give rows of one name.
    Records of unknown datasets or algorithms are reported too (``env{i}`` column names,
    rows after the known algorithms) and a note says so. ``grouped`` is
    ``get_grouped_records(records)`` when the caller has it; with ``cache`` the selection
    scores are shared with other callers (``domainbed.lib.reporting.sweep_accs``).
    """
    providers = default_row_providers() if row_providers is None else list(row_providers)
    notes: List[str] = []
    grouped = get_grouped_records(records) if grouped is None else grouped
    if not len(grouped):
        notes.append("no finished run with a test environment: no table to show")
        return Report([], n_records=len(records), load=load_report, notes=notes)
    by_dataset: Dict[str, list] = {}
    for group in grouped:
        by_dataset.setdefault(group["dataset"], []).append(group)

    known_datasets = _registered_datasets()
    known_algorithms = _registered_algorithms()
    datasets = ordered_names(by_dataset, known_datasets)
    for module, known in (("algorithms", known_algorithms), ("datasets", known_datasets)):
        if known is None:
            notes.append(f"the {module[:-1]} registry could not be read: rows and columns are "
                         "sorted by name and environments are named env0, env1, ...")
    context = ReportContext(records, grouped, datasets, known_algorithms, cache, notes)
    for provider in providers:
        prepare = getattr(provider, "prepare", None)
        if prepare is not None:
            prepare(context)

    env_names: Dict[str, List[str]] = {}
    shown: Dict[str, List[int]] = {}  # dataset -> the environment columns shown
    for dataset in datasets:
        groups = by_dataset[dataset]
        n_envs = max(max(record_n_envs(g["records"][0]), g["test_env"] + 1) for g in groups)
        env_names[dataset] = _environment_names(dataset, n_envs, known_datasets, notes)
        shown[dataset] = list(range(n_envs))
        if columns == "tested":
            tested = sorted({g["test_env"] for g in groups})
            left = [env_names[dataset][i] for i in range(n_envs) if i not in tested]
            if left:
                shown[dataset] = tested
                notes.append(f"{dataset}: columns are the test domains with runs; no run "
                             f"tests {', '.join(left)} (Avg over the columns shown)")

    records_of: Dict[str, list] = {}
    for record in records:
        args = record.get("args")
        dataset = args.get("dataset") if isinstance(args, dict) else None
        records_of.setdefault(dataset, []).append(record)

    sections = []
    for method in selection_methods:
        # dataset -> row name -> env -> {trial_seed: acc}
        data: Dict[str, Dict[str, Dict[int, Accs]]] = {d: {} for d in datasets}
        row_names = _provider_rows(providers, records_of, datasets, env_names, method, data)
        tables = []
        for dataset in datasets:
            envs = shown[dataset]
            rows = [Row(name, [Cell.from_accs(data[dataset][name].get(env, {}))
                               for env in envs])
                    for name in row_names if name in data[dataset]]
            tables.append(Table(f"Dataset: {dataset}", [env_names[dataset][i] for i in envs],
                                rows, dataset))
        avg_rows = [Row(name, [_averages_cell(data[d].get(name), shown[d])
                               for d in datasets]) for name in row_names]
        tables.append(Table("Averages", list(datasets), avg_rows))
        sections.append(Section(method, tables))
    return Report(sections, n_records=len(records), load=load_report, notes=notes)


def _provider_rows(providers: Sequence[RowProvider], records_of: Dict[str, list],
                   datasets: List[str], env_names: Dict[str, List[str]], method: type,
                   data: Dict[str, Dict[str, Dict[int, Accs]]]) -> List[str]:
    """Fill ``data`` with the providers' rows for ``method``; the row names in table order."""
    owner: Dict[Any, int] = {}  # row name -> index of the provider that gives it
    row_names: List[str] = []
    for index, provider in enumerate(providers):
        names: List[str] = []
        for dataset in datasets:
            for name, values in provider(Q(records_of.get(dataset, [])), dataset, method):
                if owner.setdefault(name, index) != index:
                    raise ValueError(
                        f"row provider {provider!r} gave a row named {name!r}, a row of "
                        f"{providers[owner[name]]!r}; give it another name")
                data[dataset][name] = _normalise_values(values, env_names[dataset])
                if name not in names:
                    names.append(name)
        order = getattr(provider, "row_order", None)
        row_names += order(names) if order is not None else names
    return row_names
