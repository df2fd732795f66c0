"""Wall time of collect_results on synthetic sweeps, ours vs a reference, in the same run.

    python benchmarks/bench_collect_results.py [--sweeps 10000x5 1440x50] [--repeats 3]
        [--keep DIR]

Each sweep ``RUNSxSTEPS`` is written in the on-disk format (results.jsonl + done per run; 1%
of runs without done) to a temporary folder: 10000x5 is 10,000 runs (50,000 records),
1440x50 is 72,000 records. For each, the whole command is timed (interpreter start and
imports included, best of ``--repeats``) for:

- ours: ``python -m domainbed.scripts.collect_results --input_dir DIR --no_save``;
- the reference: ``reference_collect_results`` below, run the same way. It is the
  implementation before it was made fast: the algorithm and dataset registries imported
  (torch, torchvision), records decoded with ``json`` (the whole file as one array) with
  the garbage collector on, and each selection method scoring every group twice (once for
  upstream's tables, once for ours).

Import time is measured apart (``python -c "import ..."``, best of ``--repeats``). The two
outputs must be byte-identical; the script fails otherwise. Target: ours under 2.5 s on
the 10,000-run sweep on 2 cores.
"""

import argparse
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from domainbed.reports.synthetic import make_record, write_run  # noqa: E402

DATASETS = {"Debug28": 3, "PACS": 4}
ALGORITHMS = ["ERM", "Mixup", "CORAL", "MMD", "IRM", "VREx", "GroupDRO"]
N_TRIALS = 3


def test_env_sets(n_envs):
    pairs = [list(p) for p in itertools.combinations(range(n_envs), 2)]
    return [[t] for t in range(n_envs)] + pairs


def write_sweep(root: str, n_runs: int, steps: int) -> None:
    jobs = [(trial, ds, alg, te) for trial in range(N_TRIALS) for ds, n in DATASETS.items()
            for alg in ALGORITHMS for te in test_env_sets(n)]
    n_hparams = math.ceil(n_runs / len(jobs))
    for i, (hs, (trial, ds, alg, te)) in enumerate(itertools.product(range(n_hparams), jobs)):
        if i == n_runs:
            break
        n_envs = DATASETS[ds]
        records = [make_record(dataset=ds, algorithm=alg, test_envs=te, trial_seed=trial,
                               hparams_seed=hs, seed=i, step=step * 100, n_envs=n_envs,
                               accs={e: (((i * 7 + e * 3 + step) % 97) / 97,
                                         ((i * 5 + e + step * 11) % 89) / 89)
                                     for e in range(n_envs)})
                   for step in range(steps)]
        write_run(os.path.join(root, f"{i:06d}"), records, done=i % 100 != 99)


# ----------------------------------------------------------------------------- reference

def _reference_read(path: str):
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    return json.loads("[" + text.strip().replace("\n", ",") + "]")


def reference_collect_results(input_dir: str) -> str:
    """The text report as the previous implementation computed it (see the module doc)."""
    import domainbed.algorithms  # noqa: F401  (eager: the registries, torch, torchvision)
    import domainbed.datasets  # noqa: F401
    from domainbed.lib import reporting, run_dir
    from domainbed.lib.query import Q
    from domainbed.model_selection import SELECTION_METHODS
    from domainbed.reports import build_report
    from domainbed.reports.upstream import report_lines
    from domainbed.reports.writers import extras_text

    load = reporting.LoadReport(input_dir=input_dir)
    records = []
    for path, has_done in run_dir.find_run_dirs(input_dir, reporting.DEFAULT_MAX_DEPTH):
        if not has_done:
            load.n_skipped += 1
            continue
        load.n_runs += 1
        records.extend(_reference_read(os.path.join(path, "results.jsonl")))
    load.n_records = len(records)
    records = Q(records)
    methods = [SELECTION_METHODS.get(name) for name in SELECTION_METHODS.names()]
    report = build_report(records, methods, None, load)  # no shared cache: scored twice
    return "\n".join(report_lines(records, methods, False)) + "\n" + extras_text(report, False)


# ----------------------------------------------------------------------------- timing

def best_wall(command, repeats: int) -> float:
    walls = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       cwd=REPO)
        walls.append(time.perf_counter() - start)
    return min(walls)


def output_of(command) -> str:
    return subprocess.run(command, check=True, capture_output=True, text=True, cwd=REPO).stdout


def commands(root: str):
    ours = [sys.executable, "-m", "domainbed.scripts.collect_results", "--input_dir", root,
            "--no_save"]
    reference = [sys.executable, os.path.abspath(__file__), "--reference", root]
    return ours, reference


def import_times(repeats: int):
    ours = [sys.executable, "-c", "import domainbed.scripts.collect_results"]
    reference = [sys.executable, "-c", "import domainbed.scripts.collect_results, "
                 "domainbed.algorithms, domainbed.datasets"]
    python = [sys.executable, "-c", "pass"]
    return best_wall(python, repeats), best_wall(ours, repeats), best_wall(reference, repeats)


def bench_sweep(root: str, n_runs: int, steps: int, repeats: int) -> None:
    start = time.perf_counter()
    write_sweep(root, n_runs, steps)
    print(f"\nsweep {n_runs} runs x {steps} records ({n_runs * steps} records written, "
          f"{n_runs // 100} runs without done) in {time.perf_counter() - start:.1f} s")
    ours, reference = commands(root)
    if output_of(ours) != output_of(reference):
        raise SystemExit("ours and the reference print different reports: not comparable")
    t_ours, t_ref = best_wall(ours, repeats), best_wall(reference, repeats)
    print(f"  whole command, best of {repeats}: ours {t_ours:.2f} s, reference {t_ref:.2f} s, "
          f"ratio {t_ours / t_ref:.2f}x (same output, byte for byte)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweeps", nargs="+", default=["10000x5", "1440x50"],
                        help="RUNSxSTEPS per sweep")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", default=None, help="write the sweeps under DIR and keep them")
    parser.add_argument("--reference", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reference:
        sys.stdout.write(reference_collect_results(args.reference))
        return

    t_python, t_ours, t_ref = import_times(args.repeats)
    print(f"imports, best of {args.repeats} (interpreter start {t_python:.2f} s included): "
          f"ours {t_ours:.2f} s, reference {t_ref:.2f} s "
          f"(torch in sys.modules: {torch_imported()})")
    top = args.keep or tempfile.mkdtemp(prefix="bench_collect_")
    try:
        for spec in args.sweeps:
            n_runs, steps = (int(v) for v in spec.split("x"))
            root = os.path.join(top, spec)
            shutil.rmtree(root, ignore_errors=True)
            bench_sweep(root, n_runs, steps, args.repeats)
    finally:
        if args.keep is None:
            shutil.rmtree(top, ignore_errors=True)
    print(f"\nload average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


def torch_imported() -> str:
    code = ("import sys; from domainbed.scripts import collect_results; "
            "print('torch' in sys.modules)")
    ours = output_of([sys.executable, "-c", code]).strip()
    return f"ours {ours}, reference True"


if __name__ == "__main__":
    main()
