"""collect_results prints upstream DomainBed's text and LaTeX, line for line, on a hand-built
sweep; the expected lines are written here from upstream's format facts (UPSTREAM_API A.3)."""

import os

from domainbed.reports.synthetic import make_record, write_run
from domainbed.scripts import collect_results

METHODS = ["training-domain validation set", "leave-one-domain-out cross-validation",
           "test-domain validation set (oracle)"]


def accuracy(dataset, algorithm, env, trial):
    """Test accuracy of a run: chosen so that no printed number is a rounding tie."""
    if algorithm == "ERM" and dataset == "VLCS":
        return 0.513 + 0.1 * env + 0.02 * trial
    if algorithm == "ERM":  # PACS
        return 0.72 + 0.05 * env + 0.1 * trial
    if algorithm == "CORAL":  # VLCS, trial 0 only
        return 0.4 + 0.1 * env
    return 0.3  # MyAlg: VLCS, test env 0, trial 0


def write_sweep(root):
    runs = [("VLCS", "ERM", t, k) for t in range(4) for k in (0, 1)]
    runs += [("VLCS", "CORAL", t, 0) for t in range(4)]
    runs += [("PACS", "ERM", t, k) for t in range(4) for k in (0, 1)]
    runs += [("VLCS", "MyAlg", 0, 0)]
    for i, (dataset, algorithm, env, trial) in enumerate(runs):
        accs = {e: (0.5, 0.6) for e in range(4)}
        accs[env] = (accuracy(dataset, algorithm, env, trial), 0.6)
        record = make_record(dataset=dataset, algorithm=algorithm, test_envs=[env],
                             trial_seed=trial, seed=i, accs=accs, n_envs=4)
        # PACS first on disk: the tables must still follow upstream's DATASETS order
        write_run(os.path.join(root, f"{dataset.lower()}_{i:02d}"), [record])
    write_run(os.path.join(root, "unfinished"),
              [make_record(dataset="VLCS", test_envs=[0], accs={0: (0.99, 1.0)}, n_envs=4)],
              done=False)
    return len(runs)


def text_row(cells, width):
    return "  ".join(str(c).ljust(width)[:width] for c in cells) + " "


def latex_row(cells, width):
    return " & ".join(str(c).ljust(width)[:width] for c in cells) + " \\\\"


def expected_tables(method, pm):
    """Per dataset and averages: (title, colwidth, header, rows) for one selection method."""
    def cell(mean, se):
        return f"{mean} {pm} {se}"
    if method == "leave-one-domain-out cross-validation":  # no pair runs: nothing to score
        vlcs = [[a] + ["X"] * 5 for a in ("ERM", "CORAL", "MyAlg")]
        pacs = [[a] + ["X"] * 5 for a in ("ERM", "CORAL", "MyAlg")]
        averages = [[a, "X", "X", "X"] for a in ("ERM", "CORAL", "MyAlg")]
    else:
        vlcs = [["ERM", cell("52.3", "0.7"), cell("62.3", "0.7"), cell("72.3", "0.7"),
                 cell("82.3", "0.7"), "67.3"],
                ["CORAL", cell("40.0", "0.0"), cell("50.0", "0.0"), cell("60.0", "0.0"),
                 cell("70.0", "0.0"), "55.0"],
                ["MyAlg", cell("30.0", "0.0"), "X", "X", "X", "X"]]
        pacs = [["ERM", cell("77.0", "3.5"), cell("82.0", "3.5"), cell("87.0", "3.5"),
                 cell("92.0", "3.5"), "84.5"],
                ["CORAL"] + ["X"] * 5, ["MyAlg"] + ["X"] * 5]
        # a trial's average is over the test envs it has (MyAlg: env 0 only), as upstream
        averages = [["ERM", cell("67.3", "0.7"), cell("84.5", "3.5"), "75.9"],
                    ["CORAL", cell("55.0", "0.0"), "X", "X"],
                    ["MyAlg", cell("30.0", "0.0"), "X", "X"]]
    return [("VLCS", f"Dataset: VLCS, model selection method: {method}", 20,
             ["Algorithm", "C", "L", "S", "V", "Avg"], vlcs),
            ("PACS", f"Dataset: PACS, model selection method: {method}", 20,
             ["Algorithm", "A", "C", "P", "S", "Avg"], pacs),
            ("Averages", f"Averages, model selection method: {method}", 25,
             ["Algorithm", "VLCS", "PACS", "Avg"], averages)]


def expected_text(n_records):
    lines = [f"Total records: {n_records}"]
    for method in METHODS:
        for _, title, width, header, rows in expected_tables(method, "+/-"):
            lines += ["", f"-------- {title}", text_row(header, width)]
            lines += [text_row(row, width) for row in rows]
    return lines


def expected_latex(n_records):
    lines = [r"\documentclass{article}", r"\usepackage{booktabs}", r"\usepackage{adjustbox}",
             r"\begin{document}", r"\section{Full DomainBed results}",
             f"% Total records: {n_records}"]
    for method in METHODS:
        lines += ["", f"\\subsection{{Model selection: {method}}}"]
        for name, _, width, header, rows in expected_tables(method, r"$\pm$"):
            lines += ["", f"\\subsubsection{{{name}}}", "", r"\begin{center}",
                      r"\adjustbox{max width=\textwidth}{%",
                      r"\begin{tabular}{l" + "c" * (len(header) - 1) + "}", r"\toprule",
                      latex_row([f"\\textbf{{{h}}}" for h in header], width), r"\midrule"]
            lines += [latex_row(row, width) for row in rows]
            lines += [r"\bottomrule", r"\end{tabular}}", r"\end{center}"]
    lines.append(r"\end{document}")
    return lines


def test_text_output_is_upstreams_line_for_line(tmp_path, capsys):
    n_runs = write_sweep(str(tmp_path))
    assert collect_results.main(["--input_dir", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    out = captured.out
    golden = expected_text(n_runs)
    # stdout is upstream's text byte for byte; our notes go to stderr
    assert out == "\n".join(golden) + "\n"
    assert captured.err.startswith(f"# {n_runs} runs counted, 1 run without `done` "
                                   f"ignored, {n_runs} records\n")
    assert (tmp_path / "results.txt").read_text() == out


def test_latex_output_is_upstreams_line_for_line(tmp_path, capsys):
    n_runs = write_sweep(str(tmp_path))
    assert collect_results.main(["--input_dir", str(tmp_path), "--latex"]) == 0
    out = capsys.readouterr().out
    golden = expected_latex(n_runs)
    assert out == "\n".join(golden) + "\n"  # upstream's text byte for byte
    assert (tmp_path / "results.tex").read_text() == out


def test_long_labels_are_cut_to_the_column_width_as_upstream(capsys):
    from domainbed.reports.upstream import print_table
    print_table([[1, 2]], "h", ["R1"], ["C1_is_a_long_label", "C2"], colwidth=10,
                latex=True)
    assert r"\textbf{C1 & \textbf{C2 \\" in capsys.readouterr().out.splitlines()
