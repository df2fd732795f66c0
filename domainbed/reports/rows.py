"""Row providers: what fills the rows of the result tables.

A row provider is a callable ``provider(records, dataset, method) -> [(row_name, values)]``
where ``records`` are the loaded records of ``dataset``, ``method`` is a selection method and
``values`` maps a test env (index or name) to its accuracies, one per trial seed (a
``{trial_seed: acc}`` dict or a list). ``build_report`` builds the rows of the providers it is
given, and only those. A provider may also define

- ``prepare(context)``: called once with the ``ReportContext`` before any row is asked for
  (it may append to ``context.notes``);
- ``row_order(names)``: the order of its rows (default: as they first come, dataset by
  dataset in table order).

``AlgorithmRows`` is the core's provider: one row per algorithm, its selection score.
"""

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple

from domainbed.lib.query import Q
from domainbed.lib.reporting import sweep_accs

RowProvider = Callable[[Q, str, type], Iterable[Tuple[str, Mapping[Any, Any]]]]


@dataclass
class ReportContext:
    """What the report builder knows before it asks for rows."""

    records: Q
    grouped: Q                                  # ``get_grouped_records(records)``
    datasets: List[str]                         # the table order
    known_algorithms: Optional[List[str]]       # registry order; None: not importable
    cache: Optional[dict] = None                # shared selection scores (``sweep_accs``)
    notes: List[str] = field(default_factory=list)


def ordered_names(names: Iterable[Any], known: Optional[List[str]]) -> List[Any]:
    """Known names in registry order, then the others alphabetically."""
    names = set(names)
    position = {n: i for i, n in enumerate(known or [])}
    return sorted(names, key=lambda n: (0, position[n], "") if n in position else (1, 0, str(n)))


class AlgorithmRows:
    """One row per algorithm: the selection method's score of its runs, per test env and trial
    seed (``domainbed.lib.reporting.sweep_accs``); rows in ``ALGORITHMS`` order, unknown
    algorithms after, alphabetically (a note names them)."""

    def __init__(self) -> None:
        self.context: Optional[ReportContext] = None
        self._cache: dict = {}

    def prepare(self, context: ReportContext) -> None:
        self.context = context
        self._cache = context.cache if context.cache is not None else {}
        known = context.known_algorithms
        if known is not None:
            for name in self.row_order({g["algorithm"] for g in context.grouped}):
                if name not in known:
                    context.notes.append(f"algorithm {name!r} is not in "
                                         "domainbed.algorithms.ALGORITHMS: its rows come after "
                                         "the known ones")

    def row_order(self, names: Iterable[Any]) -> List[Any]:
        return ordered_names(names, self.context.known_algorithms if self.context else None)

    def __call__(self, records: Q, dataset: str, method: type) -> List[Tuple[str, dict]]:
        if self.context is None:
            raise RuntimeError("AlgorithmRows is prepared by build_report before use")
        grouped = self.context.grouped
        rows: Dict[Any, Dict[int, Dict[Any, Optional[float]]]] = {}
        for g, acc in zip(grouped, sweep_accs(grouped, method, self._cache)):
            if g["dataset"] == dataset:
                rows.setdefault(g["algorithm"], {}).setdefault(g["test_env"], {})[
                    g["trial_seed"]] = acc
        return [(name, rows[name]) for name in self.row_order(rows)]
