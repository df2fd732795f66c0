"""Digests of what the tool prints and writes, to compare two versions of the code.

    python benchmarks/behaviour_digest.py WORKDIR > digest.json

Runs, in WORKDIR (created), with the code importable from the current directory:
1. the dummy listing of a 4-dataset x 5-algorithm sweep (job ids and commands);
2. the dry run of ``sweep launch --recipe sweeps/embedded.json``;
3. a small recipe run to the end (``sweeps/embedded.json`` with every step count divided
   by 25, one test domain): the job ids, every run's records (timings, memory and paths
   left out), the report;
4. ``collect_results`` (plain and --latex) on that recipe's target sweep.

It prints one JSON object: for each part an md5 and, for the runs, the per-run digests, so
that two digests tell where two versions differ. An architecture change that keeps
behaviour gives the same object. Paths of WORKDIR are replaced by ``<W>`` before hashing,
and the digest that ends a linear probe's name (it covers the phi_pt file, whose metadata
holds paths) by ``<H>``; run both versions with the same WORKDIR.
"""

import glob
import hashlib
import json
import os
import re
import subprocess
import sys

TIMING_KEYS = ("step_time", "mem_gb", "epoch_time")
# a probe's name ends with a digest of its phi_pt file, whose metadata holds its run's
# paths: replaced, as are the init file's path and key in the records
PROBE_DIGEST = re.compile(r"(lp_[A-Za-z0-9]+_test-?[0-9]+_trial[0-9]+)_[0-9a-f]{12}")


def _md5(text: str) -> str:
    return hashlib.md5(PROBE_DIGEST.sub(r"\1_<H>", text).encode()).hexdigest()


def _run(args, work, env=None) -> str:
    out = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                         env=env, check=False)
    if out.returncode != 0:
        sys.exit(f"{' '.join(args)} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return out.stdout.replace(os.path.abspath(work), "<W>")


def _scaled_recipe(work: str) -> str:
    with open("sweeps/embedded.json") as f:
        recipe = json.load(f)
    recipe["steps"] = {k: max(v // 25, 10) for k, v in recipe["steps"].items()}
    recipe["checkpoint_freq"] = {k: max(v // 25, 5) for k, v in recipe["checkpoint_freq"].items()}
    recipe["pretrain"]["steps"] //= 25
    recipe["linear_probe"] = {"steps": 200, "checkpoint_freq": 50}
    recipe["target"]["test_envs"] = [0]
    recipe["target"]["n_hparams"] = 2
    recipe["output_root"] = os.path.join(work, "recipe")
    recipe["data_dir"] = os.path.join(work, "data")
    path = os.path.join(work, "recipe.json")
    with open(path, "w") as f:
        json.dump(recipe, f)
    return path


def _without_file_identity(init):
    """A record's ``init`` block without what names its files (paths, probe keys, the
    sha256 of files whose metadata holds paths); what the run started from stays (member
    kinds, indexes, runs, seeds)."""
    if isinstance(init, dict):
        return {k: _without_file_identity(v) for k, v in init.items()
                if k not in ("path", "linear_probe_key", "linear_probe", "sha256")}
    if isinstance(init, list):
        return [_without_file_identity(v) for v in init]
    return init


def _records(run: str) -> str:
    out = []
    with open(os.path.join(run, "results.jsonl")) as f:
        for line in f:
            record = json.loads(line)
            for key in TIMING_KEYS:
                record.pop(key, None)
            args = record.get("args", {})
            for key in ("output_dir", "data_dir", "init_from"):
                args.pop(key, None)
            record["init"] = _without_file_identity(record.get("init"))
            out.append(json.dumps(record, sort_keys=True))
    return _md5("\n".join(out))


def main() -> None:
    work = os.path.abspath(sys.argv[1])
    os.makedirs(work, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    digest = {}
    listing = _run(["domainbed.scripts.sweep", "launch", "--command_launcher", "dummy",
                    "--datasets", "RotatedMNIST", "PACS", "VLCS", "EmbeddedShapes",
                    "--algorithms", "ERM", "IRM", "CORAL", "SWAD", "Ratatouille",
                    "--n_hparams", "3", "--n_trials", "2", "--data_dir",
                    os.path.join(work, "data"), "--output_dir", os.path.join(work, "sweep"),
                    "--skip_confirmation"], work, env)
    digest["listing"] = _md5(listing)
    digest["listing_lines"] = listing.count("\n")
    digest["recipe_dry_run"] = _md5(_run(["domainbed.scripts.sweep", "launch", "--recipe",
                                          "sweeps/embedded.json", "--command_launcher",
                                          "dummy"], work, env))
    recipe = _scaled_recipe(work)
    _run(["domainbed.scripts.sweep", "launch", "--recipe", recipe, "--skip_confirmation"],
         work, env)
    root = os.path.join(work, "recipe")
    runs = sorted(os.path.dirname(p) for p in glob.glob(os.path.join(root, "**", "done"),
                                                         recursive=True))
    digest["runs"] = {PROBE_DIGEST.sub(r"\1_<H>", os.path.relpath(r, root)): _records(r)
                      for r in runs
                      if os.path.isfile(os.path.join(r, "results.jsonl"))}
    with open(os.path.join(root, "report.txt")) as f:
        digest["report"] = _md5(f.read().replace(work, "<W>"))
    targets = os.path.join(root, "target", "EmbeddedShapes", "test0")
    digest["collect_results"] = _md5(_run(["domainbed.scripts.collect_results",
                                           "--input_dir", targets], work, env))
    digest["collect_results_latex"] = _md5(_run(["domainbed.scripts.collect_results",
                                                 "--input_dir", targets, "--latex"], work, env))
    print(json.dumps(digest, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
