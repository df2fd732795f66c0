"""Bad inputs of the commands that read records (``collect_results``, ``list_top_hparams``,
``domainbed_aux.scripts.report``): a bad folder or option is one line and a non-zero exit
with no report file written; a malformed record is skipped with a count (the table is
that of the well-formed records), never a traceback."""

import copy
import json
import os

import pytest

from domainbed.reports.synthetic import make_record, write_run
from domainbed.scripts import collect_results, list_top_hparams
from tests.domainbed.bad_inputs.common import assert_one_error, run_cli

GOOD = make_record(dataset="Debug28", algorithm="ERM", test_envs=[0], trial_seed=0, step=0,
                   n_envs=3, accs={e: (0.5, 0.5) for e in range(3)})


def _write_raw(run, records):
    """A finished run holding exactly ``records`` (write_run would rewrite their args)."""
    os.makedirs(run)
    with open(os.path.join(run, "results.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    with open(os.path.join(run, "done"), "w") as f:
        f.write("done")


def _sweep(root, bad_record=None, bad_line=None):
    write_run(os.path.join(root, "good"), [copy.deepcopy(GOOD)])
    if bad_record is not None:
        _write_raw(os.path.join(root, "bad"), [copy.deepcopy(GOOD), bad_record])
    if bad_line is not None:
        write_run(os.path.join(root, "torn"), [copy.deepcopy(GOOD)])
        with open(os.path.join(root, "torn", "results.jsonl"), "a") as f:
            f.write(bad_line)


def _mutated(change):
    record = copy.deepcopy(GOOD)
    change(record)
    return record


# (id, the malformed record)
MALFORMED = [
    ("accuracy_text", _mutated(lambda r: r.update(env0_in_acc="abc"))),
    ("accuracy_dict", _mutated(lambda r: r.update(env0_out_acc={}))),
    ("accuracy_bool", _mutated(lambda r: r.update(env1_out_acc=True))),
    ("args_a_list", _mutated(lambda r: r.update(args=[]))),
    ("test_envs_text", _mutated(lambda r: r["args"].update(test_envs="0"))),
    ("test_envs_of_text", _mutated(lambda r: r["args"].update(test_envs=["0"]))),
    ("trial_seed_a_list", _mutated(lambda r: r["args"].update(trial_seed=[0]))),
    ("dataset_an_int", _mutated(lambda r: r["args"].update(dataset=5))),
    ("algorithm_null", _mutated(lambda r: r["args"].update(algorithm=None))),
    ("hparams_seed_text", _mutated(lambda r: r["args"].update(hparams_seed="a"))),
    ("step_text", _mutated(lambda r: r.update(step="x"))),
    ("hparams_text", _mutated(lambda r: r.update(hparams="x"))),
]


@pytest.mark.parametrize("fmt", ["text", "markdown", "latex", "json"])
@pytest.mark.parametrize("record", [c[1] for c in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_a_malformed_record_is_skipped_with_a_count(tmp_path, capsys, record, fmt):
    _sweep(str(tmp_path), bad_record=record)
    flags = [] if fmt == "text" else [f"--{fmt}"]
    code, lines = run_cli(collect_results.main, ["--input_dir", str(tmp_path), "--no_save",
                                                 *flags], capsys)
    assert code == 0
    text = "\n".join(lines)
    if fmt == "json":
        start = next(i for i, l in enumerate(lines) if l.startswith("{"))
        report = json.loads("\n".join(lines[start:]))
        assert report["n_records"] == 2  # the malformed one is not counted
    else:
        assert "1 record with values of the wrong type skipped" in text
    assert not (tmp_path / "results.txt").exists()


@pytest.mark.parametrize("line", ['{"step": 1, "args": {"dataset": "Debug28"', "[1, 2]",
                                  "not json at all", '"a string"'],
                         ids=["torn", "array", "text", "string"])
def test_an_undecodable_line_is_skipped_with_a_count(tmp_path, capsys, line):
    _sweep(str(tmp_path), bad_line=line + "\n")
    code, lines = run_cli(collect_results.main, ["--input_dir", str(tmp_path), "--no_save"],
                          capsys)
    assert code == 0
    assert any("1 undecodable results.jsonl line skipped" in l for l in lines)


@pytest.mark.parametrize("argv, fragment", [
    (["--input_dir", "{tmp}/absent"], "does not exist or is not a directory"),
    (["--input_dir", "{tmp}/file"], "does not exist or is not a directory"),
    (["--input_dir", "{tmp}/empty"], "no run directory found"),
    (["--input_dir", "{tmp}/sweep", "--selection_methods", "magic"], "magic"),
    (["--input_dir", "{tmp}/sweep", "--output", "{tmp}/file/report.txt"],
     "cannot write the report to"),
], ids=["absent", "a_file", "empty", "selection_method", "output_below_a_file"])
def test_collect_results_bad_folder_or_option(tmp_path, capsys, argv, fragment):
    (tmp_path / "file").write_text("x")
    (tmp_path / "empty").mkdir()
    _sweep(str(tmp_path / "sweep"))
    argv = [a.format(tmp=tmp_path) for a in argv]
    code, lines = run_cli(collect_results.main, argv + ["--no_save"], capsys)
    assert code == 1
    assert_one_error(lines, fragment)
    assert not (tmp_path / "sweep" / "results.txt").exists()


@pytest.mark.parametrize("argv, fragment", [
    (["--max_depth", "deep"], "invalid int value: 'deep'"),
    (["--no_such_flag"], "unrecognized arguments"),
], ids=["max_depth_text", "unknown_flag"])
def test_collect_results_bad_flag(tmp_path, capsys, argv, fragment):
    code, lines = run_cli(collect_results.main, ["--input_dir", str(tmp_path), *argv], capsys)
    assert code == 2
    assert_one_error(lines, fragment)


@pytest.mark.parametrize("argv, fragment", [
    (["--input_dir", "{tmp}/absent", "--dataset", "Debug28", "--algorithm", "ERM",
      "--test_env", "0"], "does not exist"),
    (["--input_dir", "{tmp}/sweep", "--dataset", "Debug28", "--algorithm", "ERM",
      "--test_env", "9"], "no finished run"),
    (["--input_dir", "{tmp}/sweep", "--dataset", "Nope", "--algorithm", "ERM",
      "--test_env", "0"], "no finished run"),
], ids=["absent", "test_env", "dataset"])
def test_list_top_hparams_bad_input(tmp_path, capsys, argv, fragment):
    _sweep(str(tmp_path / "sweep"))
    code, lines = run_cli(list_top_hparams.main, [a.format(tmp=tmp_path) for a in argv],
                          capsys)
    assert code != 0
    assert_one_error(lines, fragment)


def test_report_of_a_folder_that_does_not_exist(tmp_path, capsys):
    from domainbed_aux.scripts import report
    code, lines = run_cli(report.main, ["--input_dir", str(tmp_path / "absent"), "--output",
                                        str(tmp_path / "report.txt")], capsys)
    assert code == 1
    assert_one_error(lines, "does not exist")
    assert not (tmp_path / "report.txt").exists()
