"""The wall time of a recipe (default: the README's demo, sweeps/embedded.json) two ways, in
one run on this machine, and whether both give the same Table 1:

- ours: the recipe as the README runs it: training runs in-process (one torch import for
  every run of a stage) and evaluations score what model selection reads;
- reference: one process per run and full evaluation (every split at every checkpoint),
  the way upstream DomainBed runs a sweep.

    python benchmarks/bench_recipe.py [--recipe sweeps/embedded.json] [--work_dir DIR] [--aba]

The data cache is generated first (untimed, shared); each way trains into its own output
root under --work_dir. Prints both wall times, their ratio, and whether the two reports'
tables are identical (they must be: the same weights are trained and selected). With
``--aba`` our way runs again after the reference (into its own output root) and the ratio
uses the mean of both: this machine's speed drifts over tens of minutes.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_recipe(recipe_path: str, output_root: str, data_dir: str, reference: bool) -> float:
    """Wall seconds of the whole recipe in a fresh interpreter (imports included), run by
    the README's command (the reference with a subprocess per run, one at a time)."""
    command = [sys.executable, "-m", "domainbed.scripts.sweep", "launch", "--recipe",
               recipe_path, "--output_dir", output_root, "--data_dir", data_dir,
               "--skip_confirmation"]
    if reference:
        command += ["--no_in_process", "--max_parallel", "1"]
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=REPO, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def _tables(report_path: str) -> list:
    """The report's table lines (notes and cache counts left out)."""
    with open(report_path, encoding="utf-8") as f:
        return [line for line in f if line.strip() and not line.startswith(("#", "note"))]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", default=os.path.join(REPO, "sweeps", "embedded.json"))
    p.add_argument("--work_dir", default=None, help="default: a temporary folder")
    p.add_argument("--ours", default=None, metavar="SECONDS,REPORT",
                   help="skip our way: its wall time and report.txt were measured already "
                        "(e.g. by the README's command the same day)")
    p.add_argument("--aba", action="store_true",
                   help="run our way again after the reference; the ratio uses the mean")
    args = p.parse_args(argv)
    work = os.path.abspath(args.work_dir or tempfile.mkdtemp(prefix="bench_recipe_"))
    data_dir = os.path.join(work, "data")
    os.makedirs(data_dir, exist_ok=True)
    with open(args.recipe, encoding="utf-8") as f:
        recipe = json.load(f)
    reference_recipe = dict(recipe, train_extra={"full_evaluation": True})
    reference_path = os.path.join(work, "reference_recipe.json")
    with open(reference_path, "w", encoding="utf-8") as f:
        json.dump(reference_recipe, f, indent=1)

    # generate every embedded dataset once, untimed (both ways read the same cache)
    names = set(recipe["datasets"]) | set((recipe.get("aux") or {}).get("datasets") or [])
    names |= {(recipe.get("pretrain") or {}).get("dataset")} - {None}
    subprocess.run([sys.executable, "-c",
                    "import sys\nfrom domainbed import datasets\n"
                    f"for n in {sorted(names)!r}:\n"
                    f"    datasets.get_dataset_class(n)({data_dir!r}, [0], {{}})\n"],
                   check=True, cwd=REPO)

    if args.ours:
        seconds, ours_report = args.ours.split(",", 1)
        ours = float(seconds)
    else:
        ours = _run_recipe(os.path.abspath(args.recipe), os.path.join(work, "ours"), data_dir,
                           reference=False)
        ours_report = os.path.join(work, "ours", "report.txt")
    print(f"ours (in-process, selection-only evaluation): {ours:.0f} s", flush=True)
    ref = _run_recipe(reference_path, os.path.join(work, "reference"), data_dir,
                      reference=True)
    print(f"reference (a process per run, full evaluation): {ref:.0f} s", flush=True)
    reports = [ours_report]
    if args.aba:
        again = _run_recipe(os.path.abspath(args.recipe), os.path.join(work, "ours_again"),
                            data_dir, reference=False)
        print(f"ours again: {again:.0f} s (ratio {again / ref:.3f}; the first: "
              f"{ours / ref:.3f})")
        reports.append(os.path.join(work, "ours_again", "report.txt"))
        ours = (ours + again) / 2
    print(f"ratio ours / reference: {ours / ref:.3f}")
    reference_table = _tables(os.path.join(work, "reference", "report.txt"))
    same = all(_tables(report) == reference_table for report in reports)
    print(f"same Table 1: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
