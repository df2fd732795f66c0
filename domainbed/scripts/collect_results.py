"""Result tables of a sweep: ``python -m domainbed.scripts.collect_results --input_dir DIR``.

Prints the tables (text by default, or ``--markdown``, ``--latex``, ``--json``) for each model
selection method, and writes them next to the sweep as ``DIR/results.{txt,md,tex,json}``.
Text and LaTeX on stdout are upstream DomainBed's output byte for byte
(``domainbed.reports.upstream``); our notes (runs counted, ignored and diverged, ...) go to
stderr. Markdown and JSON are ours and hold the notes.
Upstream's module functions (``format_mean``, ``print_table``, ``print_results_tables``,
``merge_records``, ``recursive_freeze``, ``remove_key``) are importable from here.
"""

import argparse
import logging
import os
import sys
from typing import List, Optional, Sequence, Tuple

from domainbed.errors import DomainBedError, one_line
from domainbed.scripts.cli import exit_on_interrupt, os_error_line
from domainbed.lib.reporting import (DEFAULT_MAX_DEPTH, get_grouped_records,
                                     load_records_with_report)
from domainbed.model_selection import SELECTION_METHODS, get_selection_method
from domainbed.reports import (FORMATS, RowProvider, build_report, default_row_providers,
                               render)
from domainbed.reports.upstream import (format_mean, merge_records, print_results_tables,
                                        print_table, recursive_freeze, remove_key,
                                        report_lines)
from domainbed.reports.writers import add_format_arguments, atomic_write_text, extras_text

UPSTREAM_FORMATS = {"text": False, "latex": True}  # format -> latex flag of upstream's output

log = logging.getLogger("domainbed.collect_results")


def collect_results(input_dir: str, fmt: str = "text",
                    selection_methods: Optional[Sequence[str]] = None,
                    output: Optional[str] = None, save: bool = True,
                    row_providers: Sequence[RowProvider] = (),
                    max_depth: int = DEFAULT_MAX_DEPTH) -> str:
    """Load the finished runs under ``input_dir`` and return the report in ``fmt``.

    With ``save`` the report is also written to ``input_dir/results.<ext>``; with ``output``
    to that file too. ``selection_methods`` are names accepted by ``get_selection_method``
    (default: all registered). Raises ``DomainBedError`` for a missing or empty input dir.
    Text and LaTeX are upstream's output byte for byte (then our tables, when
    ``row_providers`` add rows); our notes are returned by ``collect_results_and_notes``.
    """
    return collect_results_and_notes(input_dir, fmt, selection_methods, output, save,
                                     row_providers, max_depth)[0]


def collect_results_and_notes(input_dir: str, fmt: str = "text",
                              selection_methods: Optional[Sequence[str]] = None,
                              output: Optional[str] = None, save: bool = True,
                              row_providers: Sequence[RowProvider] = (),
                              max_depth: int = DEFAULT_MAX_DEPTH) -> Tuple[str, str]:
    """``(report, notes)``: see ``collect_results``; ``notes`` are our ``#`` lines (runs
    counted and ignored, diverged runs, notes) for the upstream formats, which ``main``
    prints on stderr so that stdout stays upstream's text; "" for our own formats, which
    hold them."""
    if fmt not in FORMATS:
        raise DomainBedError(f"unknown report format {fmt!r}; known formats: {', '.join(FORMATS)}")
    names = list(selection_methods) if selection_methods else SELECTION_METHODS.names()
    methods = [get_selection_method(name) for name in names]
    records, load_report = load_records_with_report(input_dir, max_depth)
    # grouped once, each method scores each group once, for upstream's tables and ours
    grouped, cache = get_grouped_records(records), {}
    providers = default_row_providers() + list(row_providers)  # the algorithms', then these
    report = build_report(records, methods, providers, load_report, grouped, cache)
    notes = ""
    if fmt in UPSTREAM_FORMATS:
        latex = UPSTREAM_FORMATS[fmt]
        text = "\n".join(report_lines(records, methods, latex, grouped, cache)) + "\n"
        if row_providers:
            text += extras_text(report, latex, with_tables=True)
        notes = extras_text(report, latex=False).lstrip("\n")
    else:
        text = render(report, fmt)
    targets = [os.path.join(input_dir, FORMATS[fmt][1])] if save else []
    targets += [output] if output else []
    for path in targets:
        try:
            atomic_write_text(path, text)
        except OSError as exc:
            if path == output:
                raise DomainBedError(f"cannot write the report to {path!r}: {exc}") from exc
            log.warning("cannot write the report next to the sweep (%s): %s", path, exc)
    return text, notes


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input_dir", required=True, help="the sweep's output directory")
    add_format_arguments(parser)
    parser.add_argument("--selection_methods", nargs="+", default=None,
                        help=f"default: all of {', '.join(SELECTION_METHODS)}")
    parser.add_argument("--output", default=None, help="also write the report to this file")
    parser.add_argument("--no_save", action="store_true",
                        help="do not write results.<ext> into --input_dir")
    parser.add_argument("--max_depth", type=int, default=DEFAULT_MAX_DEPTH,
                        help="how many folder levels below --input_dir to look for runs")
    return parser.parse_args(argv)


__all__ = ["collect_results", "format_mean", "main", "merge_records", "print_results_tables",
           "print_table", "recursive_freeze", "remove_key"]


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    try:
        text, notes = collect_results_and_notes(
            args.input_dir, args.fmt, args.selection_methods, args.output,
            save=not args.no_save, max_depth=args.max_depth)
    except DomainBedError as exc:
        print(f"collect_results: error: {one_line(exc)}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"collect_results: error: {os_error_line(exc)}", file=sys.stderr)
        return 1
    sys.stdout.write(text)  # upstream's text byte for byte (text and LaTeX)
    sys.stdout.flush()
    sys.stderr.write(notes)
    return 0


if __name__ == "__main__":
    sys.exit(exit_on_interrupt(main, "collect_results: interrupted (Ctrl-C)"))
