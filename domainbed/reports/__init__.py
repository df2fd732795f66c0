"""Result tables: build them from records (``tables``), write them out (``writers``).

``build_report(records, ...)`` gives a ``Report``; ``render(report, fmt)`` turns it into text,
Markdown, LaTeX or JSON. ``domainbed.scripts.collect_results`` is the command-line wrapper.
"""

from domainbed.reports.tables import (Cell, Report, Row, RowProvider, Section, Table,
                                      build_report, format_mean, mean_se)
from domainbed.reports.writers import FORMATS, render

__all__ = ["Cell", "FORMATS", "Report", "Row", "RowProvider", "Section", "Table",
           "build_report", "format_mean", "mean_se", "render"]
