"""The registry of Table 1 rows: each row is registered where it is computed.

A ``Table1Row`` names a row, the family of runs it reads, its place in the table and the
function that scores one cell from runs. A run's family is its algorithm's, declared where
the algorithm registers (``@register_algorithm(family=...)``, read from the algorithm
registry's index). The modules that compute rows register them with
``register(Table1Row(...))``: the ID-validation rows in ``report.id_val``, the soup rows in
``scoring.soups``, the Ensemble* rows in ``scoring.ensembles``, WiSE-FT in
``analysis.wise_ft``, the mean members in ``report.members``. ``TABLE1_ROWS`` finds them by
their source (every module of the package, or of an extension's ``TABLE1_ROWS.search``,
that builds a ``Table1Row``) and imports them the first time the rows are asked for. This
module itself is torch-free.
"""

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from domainbed.algorithms.registry import ALGORITHM_REGISTRY
from domainbed.algorithms.registry import family_of as _algorithm_family
from domainbed.registry import Registry

DAGGER_SEED = "all"  # the trial-seed key of pooled (dagger) cells: one value for every trial

# score(table, runs, method) -> (accuracy, details or None); ``table`` is the provider
# (``report.provider.Table1Rows``: split, evaluators, cached, ...), ``runs`` the runs of one
# cell (one trial seed; every trial seed for a pooled row)
CellScore = Callable[[Any, Sequence[Any], type], Tuple[Optional[float], Optional[dict]]]


@dataclass(frozen=True)
class Table1Row:
    name: str
    family: str              # an algorithm family (``@register_algorithm(family=...)``)
    position: float          # the row's place in Table 1 (rows are sorted by it)
    score: CellScore
    pooled: bool = False     # one cell over every trial seed (dagger): only with >1 trial
    optional: bool = False   # a DomainBedError leaves the row out (with a note)


# the modules that register rows: found by their source, imported when rows are asked for
TABLE1_ROWS: Registry = Registry("Table-1 row", marker="Table1Row(", search=["domainbed_aux"],
                                 extensible=True)
_ROWS: Dict[str, Table1Row] = {}


def families() -> Dict[str, List[str]]:
    """Family -> the registered algorithms whose runs it holds (from the algorithms'
    declarations), in index order."""
    out: Dict[str, List[str]] = {}
    for entry in ALGORITHM_REGISTRY.entries():
        family = entry.metadata.get("family")
        if family is not None:
            out.setdefault(family, []).append(entry.name)
    return out


def register(row: Table1Row) -> Table1Row:
    """Add ``row`` (a row of the same name is replaced) and return it."""
    known = families()
    if row.family not in known:
        raise ValueError(f"row {row.name!r}: unknown family {row.family!r}; "
                         f"known: {', '.join(known)}")
    for other in _ROWS.values():
        if other.position == row.position and other.name != row.name:
            raise ValueError(f"rows {other.name!r} and {row.name!r} at one position "
                             f"{row.position}")
    _ROWS[row.name] = row
    return row


def table1_rows(families: Optional[Sequence[str]] = None) -> List[Table1Row]:
    """The registered rows in table order, of every family or of ``families``."""
    TABLE1_ROWS.load()  # imports the modules that register rows (once: they are cached)
    return [row for row in sorted(_ROWS.values(), key=lambda r: r.position)
            if families is None or row.family in families]


def row_names(robust: bool = False, families: Optional[Sequence[str]] = None) -> List[str]:
    """The row names in table order (the robust variants after the plain ones), of every
    family or of the ``families`` given."""
    names = [row.name for row in table1_rows(families)]
    return names + ([robust_name(n) for n in names] if robust else [])


def robust_name(name: str) -> str:
    keep = name[1:2].isupper()  # "MA ...", "SWAD ...", "WiSE-FT ..." keep their capitals
    return "Robust " + (name if keep else name[0].lower() + name[1:])


def family_of(run: Any) -> Optional[str]:
    """The family of a run (a ``RunInfo``) by its algorithm's declaration, or None."""
    return _algorithm_family(run.algorithm)
