"""Wall time of collect_results on a synthetic sweep of N run directories (default 10,000).

    python benchmarks/bench_collect_results.py [--n_runs 10000] [--steps 5] [--keep DIR]

The sweep is written in the on-disk format (results.jsonl + done per run; 1% of runs without
done) to a temporary folder. Prints the time of each phase in-process, then the time of the
whole command (``python -m domainbed.scripts.collect_results``, interpreter start included).
Target: under 10 s on 2 cores.
"""

import argparse
import itertools
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

from domainbed.reports.synthetic import make_record, write_run

DATASETS = {"Debug28": 3, "PACS": 4}
ALGORITHMS = ["ERM", "Mixup", "CORAL", "MMD", "IRM", "VREx", "GroupDRO"]
N_TRIALS = 3


def test_env_sets(n_envs):
    return [[t] for t in range(n_envs)] + [list(p) for p in itertools.combinations(range(n_envs), 2)]


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n_runs", type=int, default=10000)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--keep", default=None, help="write the sweep here and keep it")
    args = parser.parse_args()

    root = args.keep or tempfile.mkdtemp(prefix="bench_collect_")
    try:
        start = time.perf_counter()
        write_sweep(root, args.n_runs, args.steps)
        print(f"wrote {args.n_runs} run dirs x {args.steps} records in "
              f"{time.perf_counter() - start:.1f} s")

        start = time.perf_counter()
        from domainbed.lib.reporting import load_records_with_report
        from domainbed.reports import build_report, render
        from domainbed.reports.tables import _registered_algorithms, _registered_datasets
        _registered_algorithms(), _registered_datasets()
        t_import = time.perf_counter() - start
        start = time.perf_counter()
        records, load_report = load_records_with_report(root)
        t_load = time.perf_counter() - start
        start = time.perf_counter()
        report = build_report(records, load_report=load_report)
        t_build = time.perf_counter() - start
        start = time.perf_counter()
        render(report, "text")
        t_render = time.perf_counter() - start
        print(f"in-process: imports {t_import:.2f} s, load {t_load:.2f} s "
              f"({len(records)} records), selection+tables {t_build:.2f} s, "
              f"render {t_render:.2f} s")

        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "domainbed.scripts.collect_results",
                        "--input_dir", root, "--no_save"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        print(f"collect_results command on {args.n_runs} runs: {wall:.2f} s wall, "
              f"{cpu:.2f} s CPU (user+sys); load average {os.getloadavg()[0]:.1f} "
              f"on {os.cpu_count()} cores")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
