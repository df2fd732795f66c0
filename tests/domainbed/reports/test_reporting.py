import logging
import os

import pytest

import domainbed
from domainbed.errors import DomainBedError
from domainbed.lib import reporting
from domainbed.lib.query import Q
from domainbed.model_selection import IIDAccuracySelectionMethod, OracleSelectionMethod
from domainbed.reports import AlgorithmRows, build_report, format_mean, mean_se
from domainbed.reports.synthetic import make_record, write_run


def test_load_records_counts_only_runs_with_done(tmp_path):
    write_run(str(tmp_path / "a"), [make_record(step=0), make_record(step=100)])
    write_run(str(tmp_path / "b"), [make_record(step=0, seed=1)])
    write_run(str(tmp_path / "c"), [make_record(step=0, seed=2)], done=False)
    records, report = reporting.load_records_with_report(str(tmp_path))
    assert isinstance(records, Q)
    assert len(records) == 3
    assert sorted({r["args"]["seed"] for r in records}) == [0, 1]
    assert (report.n_runs, report.n_skipped, report.n_records) == (2, 1, 3)
    assert report.skipped_dirs == [str(tmp_path / "c")]
    assert len(reporting.load_records(str(tmp_path))) == 3


def test_truncated_last_line_is_skipped_with_a_warning(tmp_path, caplog):
    records = [make_record(step=s) for s in (0, 100, 200)]
    write_run(str(tmp_path / "run"), records, truncated_tail='{"step": 300, "env0_in')
    with caplog.at_level(logging.WARNING):
        loaded, report = reporting.load_records_with_report(str(tmp_path))
    assert [r["step"] for r in loaded] == [0, 100, 200]
    assert report.n_bad_lines == 1
    assert "last line" in caplog.text


def test_corrupt_middle_line_is_skipped_and_named(tmp_path, caplog):
    write_run(str(tmp_path / "run"), [make_record(step=0)], truncated_tail="not json\n")
    with open(tmp_path / "run" / "results.jsonl", "a") as f:
        f.write('{"step": 200, "args": {}}\n')
    with caplog.at_level(logging.WARNING):
        loaded, report = reporting.load_records_with_report(str(tmp_path))
    assert [r["step"] for r in loaded] == [0, 200]
    assert report.n_bad_lines == 1 and "line 2" in caplog.text


def test_missing_or_empty_input_dir_is_a_clear_error(tmp_path):
    with pytest.raises(DomainBedError, match="does not exist"):
        reporting.load_records(str(tmp_path / "nope"))
    with pytest.raises(DomainBedError, match="no run directory"):
        reporting.load_records(str(tmp_path))


def test_nested_sweeps_are_found_down_to_max_depth(tmp_path):
    # AUX/<Dataset>_notest/<run>/ as the auxiliary pool lays it out
    write_run(str(tmp_path / "PACS_notest" / "run0"), [make_record(test_envs=[-1])])
    write_run(str(tmp_path / "direct"), [make_record()])
    assert len(reporting.load_records(str(tmp_path))) == 2
    assert len(reporting.load_records(str(tmp_path), max_depth=1)) == 1


def test_sweep_folder_with_its_own_logs_is_not_a_run(tmp_path):
    (tmp_path / "out.txt").write_text("sweep log")
    write_run(str(tmp_path / "r"), [make_record()])
    assert len(reporting.load_records(str(tmp_path))) == 1


def test_input_dir_that_is_a_run_dir(tmp_path):
    write_run(str(tmp_path), [make_record(), make_record(step=100)])
    assert len(reporting.load_records(str(tmp_path))) == 2


def test_done_without_results_is_ignored(tmp_path):
    os.makedirs(tmp_path / "x")
    (tmp_path / "x" / "done").write_text("")
    write_run(str(tmp_path / "y"), [make_record()])
    records, report = reporting.load_records_with_report(str(tmp_path))
    assert len(records) == 1 and report.n_runs == 1
    assert report.empty_dirs == [str(tmp_path / "x")]


def test_grouping_puts_pair_runs_in_both_groups_and_drops_aux_runs():
    records = Q([
        make_record(test_envs=[0], trial_seed=0),
        make_record(test_envs=[0, 2], trial_seed=0),
        make_record(test_envs=[1], trial_seed=1, algorithm="CORAL"),
        make_record(test_envs=[-1]),
        make_record(test_envs=[]),
    ])
    groups = reporting.get_grouped_records(records)
    keys = [(g["trial_seed"], g["dataset"], g["algorithm"], g["test_env"]) for g in groups]
    assert keys == [(1, "Debug28", "CORAL", 1), (0, "Debug28", "ERM", 0),
                    (0, "Debug28", "ERM", 2)]
    assert [len(g["records"]) for g in groups] == [1, 2, 1]
    assert isinstance(groups[0]["records"], Q)


def test_record_n_envs_reads_env_keys():
    assert reporting.record_n_envs(make_record(n_envs=4)) == 4
    assert reporting.record_n_envs({"step": 0}) == 0


def test_error_bar_example():
    assert format_mean([0.1, 0.2, 0.3]) == "20.0 +/- 4.7"
    mean, se = mean_se([0.1, 0.2, 0.3])
    assert mean == pytest.approx(20.0)
    assert se == pytest.approx(100 * 0.0816496580927726 / 3 ** 0.5)
    assert format_mean([]) == "X"
    assert format_mean([0.5, None]) == "X"
    assert format_mean([0.5, float("nan")]) == "X"


def sweep_records(dataset="Debug28", algorithm="ERM", trials=(0, 1, 2), envs=(0, 1, 2),
                  test_acc=lambda trial, env: 0.1 * (trial + 1) + 0.01 * env, n_envs=3):
    """One run per (trial, test env): its env{t}_in_acc is ``test_acc(trial, t)``."""
    return [make_record(dataset=dataset, algorithm=algorithm, test_envs=[t], trial_seed=trial,
                        n_envs=n_envs, accs={t: (test_acc(trial, t), 0.5)})
            for trial in trials for t in envs]


def table(report, title, method_index=0):
    return next(t for t in report.sections[method_index].tables if t.title == title)


def test_dataset_table_cells_avg_and_averages():
    report = build_report(Q(sweep_records()), [IIDAccuracySelectionMethod])
    debug = table(report, "Dataset: Debug28")
    assert debug.columns == ["0", "1", "2"]  # Debug28.ENVIRONMENTS
    (row,) = debug.rows
    assert row.name == "ERM"
    # env 1: accs 0.11, 0.21, 0.31 -> 21.0 +/- 4.7
    assert [c.format() for c in row.cells] == ["20.0 +/- 4.7", "21.0 +/- 4.7", "22.0 +/- 4.7"]
    assert row.avg == pytest.approx(21.0)
    averages = table(report, "Averages")
    assert averages.columns == ["Debug28"]
    # per-trial env averages 0.11, 0.21, 0.31
    assert averages.rows[0].cells[0].format() == "21.0 +/- 4.7"
    assert averages.rows[0].avg == pytest.approx(21.0)


def test_missing_env_gives_x_in_cell_avg_and_averages():
    records = sweep_records(envs=(0, 1))  # no run for test env 2
    records += sweep_records(dataset="PACS", n_envs=4, envs=(0, 1, 2, 3))
    report = build_report(Q(records), [IIDAccuracySelectionMethod])
    row = table(report, "Dataset: Debug28").rows[0]
    assert [c.format() for c in row.cells][2] == "X"
    assert row.avg is None
    averages = table(report, "Averages")
    assert averages.columns == ["Debug28", "PACS"]  # registry order
    cells = averages.rows[0].cells
    assert cells[0].missing and not cells[1].missing
    assert averages.rows[0].avg is None


def test_trial_missing_one_env_makes_averages_x():
    records = [r for r in sweep_records()
               if not (r["args"]["trial_seed"] == 2 and r["args"]["test_envs"] == [1])]
    report = build_report(Q(records), [IIDAccuracySelectionMethod])
    row = table(report, "Dataset: Debug28").rows[0]
    assert row.cells[1].format() == "16.0 +/- 3.5"  # trials 0 and 1 only
    assert table(report, "Averages").rows[0].cells[0].format() == "X"


def test_known_dataset_uses_its_environment_names():
    report = build_report(Q(sweep_records(dataset="PACS", n_envs=4, envs=(0, 1, 2, 3))),
                          [IIDAccuracySelectionMethod])
    assert table(report, "Dataset: PACS").columns == ["A", "C", "P", "S"]  # upstream labels
    assert report.notes == []


def test_unknown_dataset_and_algorithm_are_reported_with_a_note():
    records = sweep_records(dataset="Mystery", algorithm="Zeta", n_envs=2, envs=(0, 1))
    records += sweep_records(algorithm="Alpha") + sweep_records(algorithm="CORAL")
    records += sweep_records(algorithm="ERM")
    report = build_report(Q(records), [IIDAccuracySelectionMethod])
    assert table(report, "Dataset: Mystery").columns == ["env0", "env1"]
    # registry order for known algorithms (ERM before CORAL), then the unknown ones sorted
    assert [r.name for r in table(report, "Dataset: Debug28").rows] == ["ERM", "CORAL",
                                                                       "Alpha"]
    assert [r.name for r in table(report, "Averages").rows] == ["ERM", "CORAL", "Alpha",
                                                                "Zeta"]
    notes = " ".join(report.notes)
    assert "'Mystery'" in notes and "'Zeta'" in notes and "'Alpha'" in notes


def test_tables_degrade_when_registries_cannot_be_read(monkeypatch):
    from domainbed.algorithms.registry import ALGORITHM_REGISTRY
    from domainbed.datasets.registry import DATASET_REGISTRY

    def unreadable():
        raise SyntaxError("a half-written module")
    for registry in (ALGORITHM_REGISTRY, DATASET_REGISTRY):
        monkeypatch.setattr(registry, "index", unreadable)
    records = sweep_records(algorithm="ERM") + sweep_records(algorithm="CORAL")
    report = build_report(Q(records), [IIDAccuracySelectionMethod])
    debug = table(report, "Dataset: Debug28")
    assert debug.columns == ["env0", "env1", "env2"]
    assert [r.name for r in debug.rows] == ["CORAL", "ERM"]
    assert any("the algorithm registry could not be read" in n for n in report.notes)


def test_report_without_test_env_runs_has_no_table_and_says_so():
    report = build_report(Q([make_record(test_envs=[-1])]), [IIDAccuracySelectionMethod])
    assert report.sections == [] and report.n_records == 1
    assert "no table" in report.notes[0]


def test_row_providers_add_rows_to_dataset_and_averages_tables():
    seen = []

    def soups(records, dataset, method):
        seen.append((len(records), dataset, method))
        return [("Uniform soup", {0: [0.5, 0.6], "1": {0: 0.5, 1: 0.6}, 2: [0.5, 0.6]})]

    report = build_report(Q(sweep_records(trials=(0, 1))), [OracleSelectionMethod],
                          [AlgorithmRows(), soups])
    assert seen == [(6, "Debug28", OracleSelectionMethod)]
    rows = table(report, "Dataset: Debug28").rows
    assert [r.name for r in rows] == ["ERM", "Uniform soup"]
    assert [c.format() for c in rows[1].cells] == ["55.0 +/- 3.5"] * 3
    assert table(report, "Averages").rows[1].cells[0].format() == "55.0 +/- 3.5"


def test_row_provider_unknown_environment_is_an_error():
    def bad(records, dataset, method):
        return [("row", {"nowhere": [0.5]})]

    with pytest.raises(ValueError, match="nowhere"):
        build_report(Q(sweep_records()), [IIDAccuracySelectionMethod], [bad])


def test_row_provider_cannot_replace_an_algorithm_row():
    def clash(records, dataset, method):
        return [("ERM", {0: [0.5]})]

    with pytest.raises(ValueError, match="'ERM'"):
        build_report(Q(sweep_records()), [IIDAccuracySelectionMethod],
                     [AlgorithmRows(), clash])


def test_only_the_rows_of_the_providers_given_are_built():
    records = sweep_records() + sweep_records(algorithm="NotAnAlgorithm")

    def soups(records, dataset, method):
        return [("Uniform soup", {0: [0.5], 1: [0.5], 2: [0.5]})]

    plain = build_report(Q(records), [IIDAccuracySelectionMethod])
    assert [r.name for r in table(plain, "Averages").rows] == ["ERM", "NotAnAlgorithm"]
    assert any("'NotAnAlgorithm' is not in" in n for n in plain.notes)
    only = build_report(Q(records), [IIDAccuracySelectionMethod], [soups])
    assert [r.name for r in table(only, "Dataset: Debug28").rows] == ["Uniform soup"]
    assert [r.name for r in table(only, "Averages").rows] == ["Uniform soup"]
    assert not any("NotAnAlgorithm" in n for n in only.notes)


def test_rows_come_provider_after_provider_in_each_ones_order():
    records = sweep_records() + sweep_records(dataset="Debug224", algorithm="CORAL")

    class Ordered:
        def __init__(self):
            self.prepared = None

        def prepare(self, context):
            self.prepared = list(context.datasets)
            context.notes.append("ordered was here")

        def __call__(self, records, dataset, method):
            names = ["b", "a"] if dataset == "Debug28" else ["c", "a"]
            return [(n, {0: [0.5]}) for n in names]

        def row_order(self, names):
            return sorted(names)

    ordered = Ordered()
    report = build_report(Q(records), [IIDAccuracySelectionMethod], [ordered, AlgorithmRows()])
    assert ordered.prepared == ["Debug28", "Debug224"]
    assert "ordered was here" in report.notes
    assert [r.name for r in table(report, "Averages").rows] == ["a", "b", "c", "ERM", "CORAL"]
    assert [r.name for r in table(report, "Dataset: Debug224").rows] == ["a", "c", "CORAL"]
