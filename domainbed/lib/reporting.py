"""Read the records of a sweep from disk and group them for model selection.

A run directory holds ``results.jsonl`` (one JSON record per evaluation) and, once finished,
``done`` (see ``domainbed.lib.run_dir``). Only finished runs count: the records of a run
without ``done`` are never returned, and the loader reports how many such runs it ignored.
"""

import gc
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from domainbed.errors import DomainBedError
from domainbed.lib import run_dir as rd
from domainbed.lib.query import Q

log = logging.getLogger(__name__)

DEFAULT_MAX_DEPTH = rd.DEFAULT_MAX_DEPTH

_ENV_KEY = re.compile(r"^env(\d+)_(?:in|out)_acc$")


def record_n_envs(record: dict) -> int:
    """Number of environments of a record, read from its ``env{i}_in/out_acc`` keys."""
    indices = [int(m.group(1)) for m in map(_ENV_KEY.match, record) if m]
    return max(indices) + 1 if indices else 0


@dataclass
class LoadReport:
    """What ``load_records_with_report`` found besides the records."""

    input_dir: str
    n_runs: int = 0                # runs with ``done`` whose records were loaded
    n_skipped: int = 0             # run directories without ``done``: ignored
    n_bad_lines: int = 0           # undecodable lines (e.g. a truncated last line): skipped
    n_malformed: int = 0           # records whose values have the wrong types: skipped
    n_records: int = 0
    skipped_dirs: List[str] = field(default_factory=list)
    empty_dirs: List[str] = field(default_factory=list)  # ``done`` but no record
    # finished runs that diverged (a non-finite loss): counted, their last record scores
    # the diverged model, as upstream's tables count a run whose accuracy collapsed
    diverged_dirs: List[str] = field(default_factory=list)


def load_records_with_report(input_dir: str,
                             max_depth: int = DEFAULT_MAX_DEPTH) -> Tuple[Q, LoadReport]:
    """Records of every finished run under ``input_dir``, and a ``LoadReport``.

    A run directory is any directory holding one of the run-directory files; it is looked for
    in ``input_dir`` itself and in sub-folders down to ``max_depth`` levels (depth 2 covers
    ``AUX/<Dataset>_notest/<run>/``). Runs without ``done`` are counted in
    ``report.n_skipped`` and contribute no record. Raises ``DomainBedError`` when
    ``input_dir`` is missing or holds no run directory at all.
    """
    if not os.path.isdir(input_dir):
        raise DomainBedError(
            f"input directory {input_dir!r} does not exist or is not a directory; "
            "pass the --output_dir of a sweep (the folder that holds the run directories)")
    report = LoadReport(input_dir=input_dir)
    run_dirs = rd.find_run_dirs(input_dir, max_depth)
    if not run_dirs:
        raise DomainBedError(
            f"no run directory found in {input_dir!r} (searched {max_depth} levels deep for "
            f"folders holding {rd.RESULTS} or {rd.DONE}); is this the sweep's output_dir?")
    records: List[dict] = []
    # the records are many small containers that all survive: the cyclic collector would
    # traverse them again and again for nothing (a third of the load time)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        _load_runs(run_dirs, records, report)
    finally:
        if gc_was_enabled:
            gc.enable()
    report.n_records = len(records)
    if report.n_skipped:
        log.info("%d run(s) without %s ignored", report.n_skipped, rd.DONE)
    return Q(records), report


def _load_runs(run_dirs: List[Tuple[str, bool]], records: List[dict],
               report: LoadReport) -> None:
    for path, has_done in run_dirs:
        if not has_done:
            report.n_skipped += 1
            report.skipped_dirs.append(path)
            continue
        run_records, n_bad = rd.read_records_counted(path)
        report.n_bad_lines += n_bad
        well_formed = [r for r in run_records if not malformed(r)]
        if len(well_formed) < len(run_records):
            n = len(run_records) - len(well_formed)
            log.warning("%s: skipping %d record(s) whose values have the wrong types", path, n)
            report.n_malformed += n
            run_records = well_formed
        if not run_records:
            log.warning("%s has %s but no record; ignored", path, rd.DONE)
            report.empty_dirs.append(path)
            continue
        report.n_runs += 1
        if run_records[-1].get("diverged") is True:
            report.diverged_dirs.append(path)
        records.extend(run_records)


_NUMBER = (int, float)
_ARG_TYPES = {"dataset": (str,), "algorithm": (str,), "trial_seed": (int,),
              "hparams_seed": (int,)}
_GROUP_ARGS = ("dataset", "algorithm", "trial_seed")  # a table groups by them: never null


def malformed(record: dict) -> bool:
    """Whether a decoded record has values of the wrong type where tables read them:
    ``args`` (dataset, algorithm, seeds, test_envs), ``hparams``, ``step`` and the
    ``env{i}_{in,out}_acc`` accuracies (a number or null). Missing keys are not checked
    here (records without args are left out when grouped)."""
    args = record.get("args")
    if args is not None:
        if type(args) is not dict:
            return True
        for key, types in _ARG_TYPES.items():
            if key in args and type(args[key]) not in types and \
                    (args[key] is not None or key in _GROUP_ARGS):
                return True
        if "test_envs" in args and (type(args["test_envs"]) is not list or
                                    any(type(e) is not int for e in args["test_envs"])):
            return True
    hparams = record.get("hparams")
    if hparams is not None and type(hparams) is not dict:
        return True
    step = record.get("step")
    if step is not None and type(step) not in _NUMBER:
        return True
    for key, value in record.items():
        if value is not None and key[-4:] == "_acc" and key[:3] == "env" and \
                type(value) not in _NUMBER:
            return True
    return False


def load_records(input_dir: str, max_depth: int = DEFAULT_MAX_DEPTH) -> Q:
    """Records (dicts, one per ``results.jsonl`` line) of the finished runs under ``input_dir``.

    See ``load_records_with_report`` for the search rules and the count of ignored runs.
    """
    return load_records_with_report(input_dir, max_depth)[0]


def _group_key(record: dict) -> Optional[Tuple[Any, str, str, List[int]]]:
    args = record.get("args")
    if not isinstance(args, dict):
        return None
    try:
        return args["trial_seed"], args["dataset"], args["algorithm"], args["test_envs"]
    except KeyError:
        return None


def get_grouped_records(records) -> Q:
    """Group records by (trial_seed, dataset, algorithm, test_env), one group per test env.

    A record of a run with several test envs (the pair runs of leave-one-domain-out) joins the
    group of each of them. Records with no test env (``test_envs`` empty or ``[-1]``: the
    auxiliary runs) and records without ``args`` are left out. Returns a ``Q`` of dicts
    ``{trial_seed, dataset, algorithm, test_env, records: Q}`` sorted by
    (dataset, algorithm, test_env, trial_seed).
    """
    groups: Dict[tuple, List[dict]] = {}
    n_malformed = 0
    for record in records:
        key = _group_key(record)
        if key is None:
            n_malformed += 1
            continue
        trial_seed, dataset, algorithm, test_envs = key
        for test_env in test_envs:
            if test_env is None or test_env < 0:
                continue
            groups.setdefault((trial_seed, dataset, algorithm, test_env), []).append(record)
    if n_malformed:
        log.warning("%d records without args.trial_seed/dataset/algorithm/test_envs ignored",
                    n_malformed)

    def order(key):
        trial_seed, dataset, algorithm, test_env = key
        return str(dataset), str(algorithm), test_env, str(type(trial_seed)), trial_seed

    return Q([{"trial_seed": k[0], "dataset": k[1], "algorithm": k[2], "test_env": k[3],
               "records": Q(groups[k])} for k in sorted(groups, key=order)])


def sweep_accs(grouped, method, cache: Optional[dict] = None) -> List[Optional[float]]:
    """``method.sweep_acc(group["records"])`` for each group of ``grouped`` (the output of
    ``get_grouped_records``), in order. With ``cache`` (a dict the callers share) each
    method scores the same ``grouped`` once: the text and LaTeX reports build upstream's
    tables and ours from the same scores."""
    key = (id(grouped), method)
    if cache is not None and key in cache:
        return cache[key][1]
    accs = [method.sweep_acc(g["records"]) for g in grouped]
    if cache is not None:
        cache[key] = (grouped, accs)  # holding ``grouped`` keeps its id from being reused
    return accs
