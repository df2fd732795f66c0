import json
import os
import subprocess
import sys

import pytest

from domainbed.reports.synthetic import make_record, write_run
from domainbed.scripts import collect_results, list_top_hparams


def write_sweep(root, trials=(0, 1, 2), with_pairs=True):
    """Debug28, ERM: single runs for each test env (+ pair runs), 2 hparams seeds, 2 steps.

    Test accuracy of test env t in trial k is 0.1 * (k + 1) + 0.01 * t for hparams seed 1
    (better on every validation) and 0.9 for hparams seed 0.
    """
    i = 0
    for trial in trials:
        for hs in (0, 1):
            test_sets = [[0], [1], [2]] + ([[0, 1], [0, 2], [1, 2]] if with_pairs else [])
            for test_envs in test_sets:
                recs = []
                for step in (0, 100):
                    good = hs == 1
                    accs = {e: (0.6 if good else 0.3, 0.8 if good else 0.4) for e in range(3)}
                    if len(test_envs) == 1:
                        t = test_envs[0]
                        accs[t] = (0.1 * (trial + 1) + 0.01 * t if good else 0.9,
                                   0.8 if good else 0.4)
                    recs.append(make_record(test_envs=test_envs, trial_seed=trial,
                                            hparams_seed=hs, seed=i, step=step, accs=accs))
                write_run(os.path.join(root, f"run{i:03d}"), recs)
                i += 1
    write_run(os.path.join(root, "unfinished"),
              [make_record(trial_seed=0, hparams_seed=5, accs={0: (0.0, 1.0)})], done=False)


def test_text_report_printed_and_written_next_to_sweep(tmp_path, capsys):
    write_sweep(str(tmp_path))
    assert collect_results.main(["--input_dir", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    out = captured.out
    # our notes go to stderr: stdout is upstream's text
    assert "36 runs counted, 1 run without `done` ignored" in captured.err
    assert "runs counted" not in out
    for name in ("training-domain validation set", "leave-one-domain-out cross-validation",
                 "test-domain validation set (oracle)"):
        assert f"Dataset: Debug28, model selection method: {name}" in out
        assert f"Averages, model selection method: {name}" in out
    erm_lines = [line.split() for line in out.splitlines() if line.startswith("ERM")]
    # every method picks hparams seed 1 here; the unfinished run (val 1.0) does not count
    assert erm_lines[0] == ["ERM", "20.0", "+/-", "4.7", "21.0", "+/-", "4.7", "22.0",
                            "+/-", "4.7", "21.0"]
    assert (tmp_path / "results.txt").read_text() == out


def test_missing_pair_shows_x_for_leave_one_out_only(tmp_path, capsys):
    write_sweep(str(tmp_path), with_pairs=False)
    assert collect_results.main(["--input_dir", str(tmp_path), "--no_save"]) == 0
    out = capsys.readouterr().out
    sections = out.split("-------- ")
    loo = next(s for s in sections if s.startswith("Dataset: Debug28, model selection method: "
                                                   "leave-one-domain-out"))
    iid = next(s for s in sections if s.startswith("Dataset: Debug28, model selection method: "
                                                   "training-domain"))
    assert loo.splitlines()[2].split() == ["ERM", "X", "X", "X", "X"]
    assert "X" not in iid.splitlines()[2].split()
    assert not (tmp_path / "results.txt").exists()


def test_markdown_report(tmp_path, capsys):
    write_sweep(str(tmp_path), trials=(0,))
    assert collect_results.main(["--input_dir", str(tmp_path), "--markdown",
                                 "--selection_methods", "oracle"]) == 0
    out = capsys.readouterr().out
    assert "## Model selection: test-domain validation set (oracle)" in out
    assert "training-domain" not in out
    assert "| Algorithm | 0 | 1 | 2 | Avg |" in out
    assert "| ERM | 10.0 +/- 0.0 | 11.0 +/- 0.0 | 12.0 +/- 0.0 | 11.0 |" in out
    assert (tmp_path / "results.md").read_text() == out


def test_latex_report(tmp_path, capsys):
    write_sweep(str(tmp_path), trials=(0,))
    assert collect_results.main(["--input_dir", str(tmp_path), "--latex"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert out.startswith(r"\documentclass{article}")
    lines = out.splitlines()
    end = lines.index(r"\end{document}")
    # upstream's document only; our summary goes to stderr
    assert lines[end + 1:] == []
    assert captured.err == "# 12 runs counted, 1 run without `done` ignored, 24 records\n"
    assert out.count(r"\begin{tabular}") == out.count(r"\end{tabular}") == 6
    cells = ["ERM", r"10.0 $\pm$ 0.0", r"11.0 $\pm$ 0.0", r"12.0 $\pm$ 0.0", "11.0"]
    assert " & ".join(c.ljust(20) for c in cells) + r" \\" in lines
    assert " & ".join(c.ljust(20) for c in [r"\textbf{Algorithm}", r"\textbf{0}",
                                            r"\textbf{1}", r"\textbf{2}",
                                            r"\textbf{Avg}"]) + r" \\" in lines
    assert (tmp_path / "results.tex").read_text() == out


def test_latex_names_are_not_escaped_as_upstream(tmp_path, capsys):
    # upstream escapes nothing but "%" in column labels; we keep its output as it is
    write_run(str(tmp_path / "r"), [make_record(algorithm="My_Alg&Co")])
    assert collect_results.main(["--input_dir", str(tmp_path), "--latex", "--no_save"]) == 0
    out = capsys.readouterr().out
    assert "My_Alg&Co".ljust(20) + " & " in out and r"My\_Alg" not in out


def test_json_report_is_machine_readable(tmp_path, capsys):
    write_sweep(str(tmp_path))
    output = tmp_path / "elsewhere" / "report.json"
    assert collect_results.main(["--input_dir", str(tmp_path), "--json",
                                 "--output", str(output)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert json.loads(output.read_text()) == data
    assert json.loads((tmp_path / "results.json").read_text()) == data
    assert data["n_runs"] == 36 and data["n_runs_ignored_without_done"] == 1
    iid = data["selection_methods"]["training-domain validation set"]
    cell = iid["datasets"]["Debug28"]["rows"]["ERM"]["cells"]["1"]
    assert cell["n"] == 3 and cell["trial_seeds"] == [0, 1, 2]
    assert cell["values"] == pytest.approx([11.0, 21.0, 31.0])
    assert cell["mean"] == pytest.approx(21.0)
    assert cell["se"] == pytest.approx(100 * 0.0816496580927726 / 3 ** 0.5)
    assert iid["datasets"]["Debug28"]["rows"]["ERM"]["avg"] == pytest.approx(21.0)
    assert iid["averages"]["columns"] == ["Debug28"]


def test_errors_are_one_line_messages(tmp_path, capsys):
    assert collect_results.main(["--input_dir", str(tmp_path / "absent")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("collect_results: error:") and "\n" not in err
    assert collect_results.main(["--input_dir", str(tmp_path)]) == 1
    assert "no run directory" in capsys.readouterr().err
    write_sweep(str(tmp_path), trials=(0,))
    assert collect_results.main(["--input_dir", str(tmp_path),
                                 "--selection_methods", "magic"]) == 1
    assert "oracle" in capsys.readouterr().err


def test_list_top_hparams(tmp_path, capsys):
    write_sweep(str(tmp_path), trials=(0, 1))
    assert list_top_hparams.main(["--input_dir", str(tmp_path), "--dataset", "Debug28",
                                  "--algorithm", "ERM", "--test_env", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Model selection: training-domain validation set"
    trial_lines = [i for i, line in enumerate(lines) if line.startswith("Trial seed")]
    assert [lines[i] for i in trial_lines] == ["Trial seed 0:", "Trial seed 1:"]
    ranked = [line.split() for line in lines[trial_lines[0] + 1:trial_lines[1]]
              if line.strip().startswith("val")]
    assert [r[5] for r in ranked] == ["1", "0"]  # hparams seed 1 validates better
    assert ranked[0][1:4] == ["0.8000", "test", "0.1200"]
    assert list_top_hparams.main(["--input_dir", str(tmp_path), "--dataset", "Debug28",
                                  "--algorithm", "Nope", "--test_env", "0"]) == 1
    assert "'Nope'" in capsys.readouterr().err


@pytest.mark.slow  # a fresh interpreter imports torch for the registries
def test_module_entry_point(tmp_path):
    write_sweep(str(tmp_path), trials=(0,))
    proc = subprocess.run([sys.executable, "-m", "domainbed.scripts.collect_results",
                           "--input_dir", str(tmp_path), "--selection_methods",
                           "training_domain"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "ERM" in proc.stdout and "1 run without `done` ignored" in proc.stderr
