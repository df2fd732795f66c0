"""The registry of Table 1 rows: each row is registered where it is computed.

A ``Table1Row`` names a row, the family of runs it reads (``FAMILIES``), its place in the
table and the function that scores one cell from runs. The modules that compute rows register
them: the ID-validation rows in ``report.id_val``, the soup rows in ``scoring.soups``, the
Ensemble* rows in ``scoring.ensembles``, WiSE-FT in ``analysis.wise_ft``, the mean members in
``report.members`` (``ROW_MODULES``,
imported the first time the rows are asked for). This module itself is torch-free.
"""

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

DAGGER_SEED = "all"  # the trial-seed key of pooled (dagger) cells: one value for every trial

# family name -> the algorithms whose runs it holds
FAMILIES: Dict[str, Tuple[str, ...]] = {
    "erm": ("ERM",),
    "lpft": ("LPFT",),
    "coral": ("CORAL",),
    "swad": ("SWAD",),
    "ma": ("MA",),
    "inter": ("InterTraining", "Ratatouille"),
    "fusing": ("Fusing",),
}

# score(table, runs, method) -> (accuracy, details or None); ``table`` is the provider
# (``report.provider.Table1Rows``: split, evaluators, cached, ...), ``runs`` the runs of one
# cell (one trial seed; every trial seed for a pooled row)
CellScore = Callable[[Any, Sequence[Any], type], Tuple[Optional[float], Optional[dict]]]


@dataclass(frozen=True)
class Table1Row:
    name: str
    family: str              # a key of FAMILIES
    position: float          # the row's place in Table 1 (rows are sorted by it)
    score: CellScore
    pooled: bool = False     # one cell over every trial seed (dagger): only with >1 trial
    optional: bool = False   # a DomainBedError leaves the row out (with a note)


_ROWS: Dict[str, Table1Row] = {}

# the modules that register rows of Table 1
ROW_MODULES = ("domainbed_aux.report.id_val", "domainbed_aux.analysis.wise_ft",
               "domainbed_aux.scoring.ensembles", "domainbed_aux.scoring.soups",
               "domainbed_aux.report.members")


def register(row: Table1Row) -> Table1Row:
    """Add ``row`` (a row of the same name is replaced) and return it."""
    if row.family not in FAMILIES:
        raise ValueError(f"row {row.name!r}: unknown family {row.family!r}; "
                         f"known: {', '.join(FAMILIES)}")
    for other in _ROWS.values():
        if other.position == row.position and other.name != row.name:
            raise ValueError(f"rows {other.name!r} and {row.name!r} at one position "
                             f"{row.position}")
    _ROWS[row.name] = row
    return row


def table1_rows(families: Optional[Sequence[str]] = None) -> List[Table1Row]:
    """The registered rows in table order, of every family or of ``families``."""
    for module in ROW_MODULES:
        importlib.import_module(module)  # registers its rows (once: modules are cached)
    return [row for row in sorted(_ROWS.values(), key=lambda r: r.position)
            if families is None or row.family in families]


def row_names(robust: bool = False, families: Optional[Sequence[str]] = None) -> List[str]:
    """The row names in table order (the robust variants after the plain ones), of every
    family or of the ``families`` given (keys of ``FAMILIES``)."""
    names = [row.name for row in table1_rows(families)]
    return names + ([robust_name(n) for n in names] if robust else [])


def robust_name(name: str) -> str:
    keep = name[1:2].isupper()  # "MA ...", "SWAD ...", "WiSE-FT ..." keep their capitals
    return "Robust " + (name if keep else name[0].lower() + name[1:])


def family_of(run: Any) -> Optional[str]:
    """The family of a run (a ``RunInfo``) by its algorithm, or None."""
    for family, algorithms in FAMILIES.items():
        if run.algorithm in algorithms:
            return family
    return None
