"""The one run-directory reader (domainbed.lib.run_dir): finding runs, reading records."""

import json
import os

from domainbed.lib import run_dir as rd


def write(path, name, text=""):
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, name), "w", encoding="utf-8") as f:
        f.write(text)


def lines(*records):
    return "".join(json.dumps(r) + "\n" for r in records)


def test_find_run_dirs_depth_markers_hidden_and_skip(tmp_path):
    write(tmp_path / "a" / "r1", rd.RESULTS)
    write(tmp_path / "a" / "r1", rd.DONE)
    write(tmp_path / "a" / "r1" / "inner", rd.RESULTS)      # never inside a run dir
    write(tmp_path / "b", rd.MODEL)                          # depth 1, not done
    write(tmp_path / ".hidden" / "r", rd.DONE)               # hidden folders are not visited
    write(tmp_path / "c" / "d" / "e", rd.DONE)               # depth 3
    write(tmp_path / "logs", rd.OUT)                         # out.txt marks no run
    top = str(tmp_path)
    assert rd.find_run_dirs(top) == [(os.path.join(top, "a", "r1"), True),
                                     (os.path.join(top, "b"), False)]
    deep = rd.find_run_dirs(top, max_depth=None)
    assert [p for p, _ in deep] == [os.path.join(top, *parts)
                                    for parts in (("a", "r1"), ("b",), ("c", "d", "e"))]
    assert rd.find_run_dirs(top, max_depth=None, markers=(rd.DONE,),
                            skip=[os.path.join(top, "c")]) == [
        (os.path.join(top, "a", "r1"), True)]
    assert rd.find_run_dirs(str(tmp_path / "a" / "r1")) == [(str(tmp_path / "a" / "r1"), True)]


def test_records_skip_a_torn_last_line(tmp_path):
    run = tmp_path / "run"
    write(run, rd.RESULTS, lines({"step": 0}, {"step": 1, "args": {"x": 1}, "hparams": {"h": 2}},
                                 {"step": 2, "args": {"x": 1}}) + '{"step": 3, "ar')
    records, n_bad = rd.read_records_counted(str(run))
    assert [r["step"] for r in records] == [0, 1, 2] and n_bad == 1
    assert rd.read_records(str(run)) == records
    assert rd.last_record(str(run))["step"] == 2
    assert rd.first_record(str(run))["step"] == 1
    assert rd.first_record(str(run), lambda r: r["step"] >= 2)["step"] == 2
    assert rd.first_record(str(run), lambda r: r["step"] > 5) is None
    assert rd.run_args(str(run)) == {"args": {"x": 1}, "hparams": {"h": 2}}


def test_a_run_without_records(tmp_path):
    empty = str(tmp_path)
    assert rd.read_records_counted(empty) == ([], 0)
    assert rd.last_record(empty) is None and rd.first_record(empty) is None
    assert rd.run_args(empty) == {}
    write(tmp_path, rd.RESULTS, lines({"step": 0, "args": "not a dict"}))
    assert rd.run_args(empty) == {}
    write(tmp_path, rd.RESULTS, lines({"step": 0, "args": {"a": 1}, "hparams": None}))
    assert rd.run_args(empty) == {"args": {"a": 1}, "hparams": {}}
