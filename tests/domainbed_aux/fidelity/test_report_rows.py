"""The Table 1 report of a real recipe sweep: every row, and dagger rows only with more
than one trial seed (one trial: a dagger soup would repeat the uniform row)."""

import re

import pytest

from domainbed_aux.report import row_names

pytestmark = pytest.mark.slow


def test_recipe_report_prints_every_row_and_no_dagger_row_for_one_trial(recipe_run):
    report = (recipe_run / "report.txt").read_text()
    lines = report.splitlines()
    for name in row_names():
        line = next((l for l in lines if l.startswith(name + " ")), None)
        if "(dagger)" in name:
            assert line is None, f"dagger row {name!r} with one trial seed:\n{report}"
            continue
        assert line is not None, f"row {name!r} missing from the report:\n{report}"
        assert re.search(r"\d+\.\d \+/- \d+\.\d", line), line
    assert "best-ID-validation checkpoint" in report
