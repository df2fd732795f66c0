"""A run whose loss becomes NaN or infinite stops at that step instead of training on.

The step's values (what ``update`` returned) are checked after every step. The first
non-finite value ends the run as finished: a last record scores every split of the
diverged model (so tables treat it as upstream treats a run whose accuracy collapsed) and
says ``"diverged": true``; the ``diverged`` marker holds the step and the values; no final
model is written (NaN weights must not enter a soup or a pool); ``done`` follows as for any
finished run, so a sweep does not launch it again.
"""

import json
import logging
import math
import os
from typing import Any, Dict, List, Mapping

from domainbed.lib import misc, run_dir

log = logging.getLogger("domainbed.train")


def nonfinite(values: Mapping[str, Any]) -> Dict[str, str]:
    """The values of a step that are NaN or infinite, as text (``{"loss": "nan"}``)."""
    bad = {}
    for key, value in values.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if not math.isfinite(number):
            bad[key] = repr(number)
    return bad


def divergence_line(step: int, bad: Mapping[str, str]) -> str:
    what = ", ".join(f"{k}={v}" for k, v in sorted(bad.items()))
    return (f"diverged at step {step}: non-finite {what}; the run stops here and ends as "
            "diverged (its last record says so; no final model is written)")


def diverged_record(setup, feeds, step: int, step_vals: Dict[str, List[float]],
                    bad: Mapping[str, str]) -> Dict[str, Any]:
    """The last record of a diverged run: the step values since the last evaluation (the
    non-finite ones included), every split scored, ``diverged`` and its values."""
    from domainbed.training.records import peak_mem_gb
    record: Dict[str, Any] = {"step": step, "epoch": step / feeds.steps_per_epoch}
    for key, vals in step_vals.items():
        record[key] = sum(vals) / len(vals)
    record.update(feeds.scorer.score_all(setup.algorithm, step))
    record["evaluation"] = "full"
    record["diverged"] = True
    record["nonfinite"] = dict(bad)
    record["mem_gb"] = peak_mem_gb(setup.device)
    return record


def write_marker(out_dir: str, step: int, bad: Mapping[str, str]) -> None:
    misc.atomic_write_text(os.path.join(out_dir, run_dir.DIVERGED),
                           json.dumps({"step": step, "nonfinite": dict(bad)}) + "\n")
