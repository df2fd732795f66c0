"""The Table 1 report: every row on a tiny sweep, ID-val rows as the core selects, cache."""

import json
import os
import re
import shutil

import pytest

from domainbed.model_selection import IIDAccuracySelectionMethod
from domainbed.lib.query import Q
from domainbed.errors import DomainBedError
from domainbed_aux.scoring.runs import read_run
from domainbed_aux.report import build_table1, row_names
from domainbed_aux.scripts import report as report_script
from domainbed_aux.scoring.soups import soup



def _patch(run_dir, algorithm, init=None, init_from=None):
    path = os.path.join(run_dir, "results.jsonl")
    with open(path) as f:
        records = [json.loads(line) for line in f]
    for record in records:
        record["args"]["algorithm"] = algorithm
        if init is not None:
            record["init"] = init
        if init_from is not None:
            record["args"]["init_from"] = init_from
    with open(path, "w") as f:
        f.write("".join(json.dumps(r) + "\n" for r in records))


@pytest.fixture(scope="session")
def table_sweep(trained_sweep, tmp_path_factory):  # noqa: F811
    """The trained ERM runs, plus copies relabelled InterTraining, Fusing, robust, CORAL,
    SWAD, MA, LPFT (the ID-val rows read records only)."""
    root = tmp_path_factory.mktemp("table") / "sweep"
    for path in sorted(trained_sweep.iterdir()):
        if not (path / "done").exists():
            continue
        shutil.copytree(path, root / path.name)
        for algorithm, init, tag in (("InterTraining", None, "inter"), ("Fusing", None, "fus"),
                                     ("InterTraining", {"robust": True}, "rob"),
                                     ("CORAL", None, "coral"), ("SWAD", None, "swad"),
                                     ("MA", None, "ma"), ("LPFT", None, "lpft")):
            copy = root / f"{tag}_{path.name}"
            shutil.copytree(path, copy)
            _patch(str(copy), algorithm, init)
    return root


@pytest.mark.slow
def test_report_prints_every_row_with_numbers(table_sweep, capsys):
    assert report_script.main(["--input_dir", str(table_sweep), "--no_progress"]) == 0
    out = capsys.readouterr()
    lines = out.out.splitlines()
    robust_inter = ["Robust inter-training (ID val)", "Robust ensemble* of inter-training",
                    "Robust ratatouille uniform", "Robust ratatouille greedy",
                    "Robust ratatouille uniform (dagger)"]
    wise = "WiSE-FT (a=0.5)"
    names = [n for n in row_names() if n != wise] + robust_inter
    assert set(robust_inter) <= set(row_names(robust=True))
    assert {"CORAL (ID val)", "SWAD (loss-aware trajectory)",
            "MA (uniform trajectory)"} <= set(names)
    # the ERM runs were trained from scratch (a small CNN): nothing to interpolate back to
    assert not any(l.startswith(wise) for l in lines)
    assert "row Debug28/WiSE-FT (a=0.5) left out: " in out.out
    for name in names:
        row = [l for l in lines if l.startswith(name + "  ")]
        assert row, f"missing row {name!r}\n{out.out}"
        assert re.search(r"\d+\.\d \+/- \d+\.\d", row[0][len(name):]), row[0]
    assert not any(l.split("  ")[0] in ("ERM", "InterTraining", "Fusing") for l in lines)
    assert "Robust model soups uniform" not in out.out  # no robust ERM run: row skipped
    assert "evaluations computed" in out.err
    # the regime section follows the tables; the note counts the runs of each cell
    assert "Regime: are the runs near convergence" in out.out
    assert "[ok]" in out.out or "[FAILED]" in out.out
    assert re.search(r"Debug28: runs per cell \(test domain, trial seed\): .*ERM \d", out.out)
    # a second report reads every evaluation from the cache
    assert report_script.main(["--input_dir", str(table_sweep), "--no_progress",
                               "--markdown"]) == 0
    again = capsys.readouterr()
    assert "0 evaluations computed" in again.err and "| Ratatouille greedy |" in again.out


@pytest.mark.slow
def test_report_values_match_selection_and_soups(table_sweep):
    report, provider = build_table1([str(table_sweep)])  # cached by the test above, if run
    table = report.sections[0].tables[0]
    rows = {row.name: row for row in table.rows}
    erm = [read_run(str(p)) for p in sorted(table_sweep.iterdir()) if p.name.startswith("erm")]
    for trial in (0, 1):
        runs = [r for r in erm if r.trial_seed == trial]
        cell = rows["Vanilla fine-tuning (ID val)"].cells[0]
        selected = IIDAccuracySelectionMethod.sweep_acc(Q([x for r in runs for x in r.records]))
        assert cell.values[cell.trial_seeds.index(trial)] == pytest.approx(selected)
        uniform = rows["Model soups uniform"].cells[0]
        assert uniform.values[uniform.trial_seeds.index(trial)] == pytest.approx(
            soup(runs, "uniform")["accuracies"]["test_in"])
        # the mean member: each run's own test accuracy at the weights the soups average
        member = rows["Mean member: vanilla fine-tuning"].cells[0]
        mean = sum(r.selected_record["env0_in_acc"] for r in runs) / len(runs)
        assert member.values[member.trial_seeds.index(trial)] == pytest.approx(mean)
    dagger = rows["Model soups uniform (dagger)"].cells[0]
    assert dagger.trial_seeds == ["all"] and dagger.format() .endswith("+/- 0.0")
    # only the tested environments are columns (no run tests env 1 or 2), noted
    assert table.columns == ["0"] and len(rows["Model soups uniform (dagger)"].cells) == 1
    assert any("no run tests 1, 2" in n for n in report.notes)
    # relabelled copies hold the same weights: the same numbers as the ERM rows
    assert rows["Ratatouille uniform"].cells[0].values == uniform.values
    for name in ("LP-FT (ID val)", "CORAL (ID val)", "SWAD (loss-aware trajectory)",
                 "MA (uniform trajectory)"):
        assert rows[name].cells[0].values == rows["Vanilla fine-tuning (ID val)"].cells[0].values
    assert sum(provider.counts.values()) > 0


def test_report_errors_on_empty_input(tmp_path, capsys):
    with pytest.raises(DomainBedError, match="no finished run"):
        build_table1([str(tmp_path)])
    assert report_script.main(["--input_dir", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("report: error:") and "\n" not in err


@pytest.mark.slow
def test_wise_ft_row_interpolates_the_best_run_halfway_to_its_init(trained_sweep, tmp_path):  # noqa: F811
    from domainbed_aux.analysis.wise_ft import wise_ft
    from domainbed_aux.scoring.evaluation import RunEvaluator
    root = tmp_path / "sweep"
    trial0 = sorted(p for p in trained_sweep.iterdir() if p.name.startswith("erm_t0"))
    # each run "started" from the other run's weights: a known init to go back to
    for path, other in zip(trial0, reversed(trial0)):
        shutil.copytree(path, root / path.name)
        _patch(str(root / path.name), "ERM", init_from=str(other / "model.safetensors"))
    report, provider = build_table1([str(root)], cache_dir=None)
    rows = {row.name: row for row in report.sections[0].tables[0].rows}
    cell = rows["WiSE-FT (a=0.5)"].cells[0]
    runs = [read_run(str(p)) for p in sorted(root.iterdir())]
    best = sorted(runs, key=lambda r: (-r.id_val_acc, r.run_dir))[0]
    expected = wise_ft(RunEvaluator(best), [0.0, 0.5])["accuracies"]["test_in"]
    assert cell.values == [pytest.approx(expected[1])]
    assert provider.details["Debug28/WiSE-FT (a=0.5)/env0/0"]["run"] == best.run_dir
    # a = 0 is the run's best checkpoint: its recorded test accuracy
    assert expected[0] == pytest.approx(best.selected_record["env0_in_acc"])
