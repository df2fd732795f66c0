"""Result tables: build them from records (``tables``), write them out (``writers``).

``build_report(records, methods, row_providers)`` gives a ``Report`` of the providers' rows
(``rows``; default: one row per algorithm); ``render(report, fmt)`` turns it into text,
Markdown, LaTeX or JSON. ``domainbed.scripts.collect_results`` is the command-line wrapper.
"""

from domainbed.reports.rows import AlgorithmRows, ReportContext, RowProvider
from domainbed.reports.tables import (Cell, Report, Row, Section, Table, build_report,
                                      default_row_providers, format_mean, mean_se)
from domainbed.reports.writers import FORMATS, render

__all__ = ["AlgorithmRows", "Cell", "FORMATS", "Report", "ReportContext", "Row", "RowProvider",
           "Section", "Table", "build_report", "default_row_providers", "format_mean",
           "mean_se", "render"]
