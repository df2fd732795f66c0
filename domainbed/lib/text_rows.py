"""Upstream DomainBed's fixed-width table rows, without torch (``collect_results`` uses it).

A cell is formatted with ``{:.10f}`` when it is a float, turned into text, padded with spaces
to ``colwidth`` characters and cut to ``colwidth``. Text rows join cells with two spaces and
end with one space; LaTeX rows join them with `` & `` and end with `` \\``.
"""

from typing import Any, Iterable


def format_cell(value: Any, colwidth: int) -> str:
    if isinstance(value, float):
        value = "{:.10f}".format(value)
    return str(value).ljust(colwidth)[:colwidth]


def format_row(row: Iterable[Any], colwidth: int = 10, latex: bool = False) -> str:
    """One row as upstream's ``misc.print_row`` prints it (without the newline)."""
    sep, end = (" & ", "\\\\") if latex else ("  ", "")
    return sep.join(format_cell(x, colwidth) for x in row) + " " + end
