"""Synthetic records and run directories in the on-disk format, for tests and benchmarks."""

import json
import os
from typing import Dict, Iterable, Optional, Sequence, Tuple

from domainbed.lib import run_dir as rd


def make_record(dataset: str = "Debug28", algorithm: str = "ERM",
                test_envs: Sequence[int] = (0,), trial_seed: int = 0, hparams_seed: int = 0,
                seed: int = 0, step: int = 0,
                accs: Optional[Dict[int, Tuple[float, float]]] = None, n_envs: int = 3,
                hparams: Optional[dict] = None, **extra) -> dict:
    """One results.jsonl record; ``accs`` maps env -> (in_acc, out_acc) (default 0.5)."""
    record = {"step": step, "epoch": step / 100.0, "loss": 0.1, "step_time": 0.01,
              "mem_gb": 0.0}
    for env in range(n_envs):
        in_acc, out_acc = (accs or {}).get(env, (0.5, 0.5))
        record[f"env{env}_in_acc"] = in_acc
        record[f"env{env}_out_acc"] = out_acc
    record["hparams"] = hparams if hparams is not None else {"lr": 1e-3, "batch_size": 32}
    record["args"] = {"dataset": dataset, "algorithm": algorithm, "test_envs": list(test_envs),
                      "trial_seed": trial_seed, "hparams_seed": hparams_seed, "seed": seed,
                      "hparams": None, "output_dir": None, "data_dir": None,
                      "holdout_fraction": 0.2, "task": "domain_generalization"}
    record.update(extra)
    return record


def write_run(run_dir: str, records: Iterable[dict], done: bool = True,
              truncated_tail: str = "") -> None:
    """Write a run directory: results.jsonl (plus ``truncated_tail`` as a partial last
    line, as a killed writer leaves it) and, if ``done``, the ``done`` marker."""
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, rd.RESULTS), "w", encoding="utf-8") as f:
        for record in records:
            record = dict(record, args=dict(record["args"], output_dir=run_dir))
            f.write(json.dumps(record, sort_keys=True) + "\n")
        f.write(truncated_tail)
    if done:
        with open(os.path.join(run_dir, rd.DONE), "w", encoding="utf-8") as f:
            f.write("done")
