"""Model selection: choose, within one (trial_seed, dataset, algorithm, test_env) group of
records, the hyperparameters to report, and the test accuracy they give.

Vocabulary. A *record* is one evaluation (one ``results.jsonl`` line). An *hparams group* is
the records sharing ``args.hparams_seed`` and the ``args.hparams`` JSON override; for
leave-one-domain-out it holds the run with the single test env and its pair runs. A *run* is
the records of one training run (same ``args.test_envs`` and ``args.seed``).

A run that wrote a record flagged ``"final_average": true`` (SWAD: its averaged window,
scored after the last step) is represented by that record alone: the records written
during its training score a network the run does not return.

Every method reports the test score ``env{t}_in_acc`` of a single-test-env run. Selection is
deterministic: a NaN or missing validation score is never chosen; among equal validation
scores the earliest step wins, then the run with the smaller ``args.seed``; among hparams
groups with equal validation scores, the smaller ``hparams_seed`` wins.
"""

import functools
import json
import math
from typing import Any, Dict, Iterable, List, Optional, Tuple

from domainbed.errors import DomainBedError
from domainbed.lib.query import Q, hashable
from domainbed.lib.reporting import record_n_envs
from domainbed.registry import Registry

SELECTION_METHODS: Registry = Registry("selection method")


def _number(value: Any) -> Optional[float]:
    """``value`` as a float, or None when it is missing or NaN (never selectable)."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _mean_or_none(values: Iterable[Any]) -> Optional[float]:
    """Mean of the values, or None when there is none or one is missing or NaN."""
    numbers = [_number(v) for v in values]
    return None if not numbers or None in numbers else sum(numbers) / len(numbers)


def _run_order(record: dict) -> Tuple:
    return record.get("step", 0), record["args"].get("seed") or 0


def _run_key(record: dict) -> Tuple:
    args = record["args"]
    return tuple(args["test_envs"]), args.get("seed"), args.get("output_dir")


def final_records_only(records: Iterable[dict]) -> List[dict]:
    """The records, where a run with ``final_average`` records keeps only those."""
    records = list(records)
    finals = {_run_key(r) for r in records if r.get("final_average")}
    if not finals:
        return records
    return [r for r in records if r.get("final_average") or _run_key(r) not in finals]


def _single_test_env_records(records: Iterable[dict]) -> Tuple[Optional[int], List[dict]]:
    """The records of single-test-env runs (sorted by step, then seed) and their test env."""
    single, envs = [], set()
    for record in records:
        test_envs = record["args"]["test_envs"]
        if len(test_envs) == 1:
            single.append(record)
            envs.add(test_envs[0])
    if len(envs) > 1:
        raise ValueError(
            f"records of several test envs {sorted(envs)} were passed to one selection; group "
            "them first with domainbed.lib.reporting.get_grouped_records")
    single.sort(key=_run_order)
    return (envs.pop() if envs else None), single


def _best(candidates: Iterable[Tuple[Optional[float], Optional[float]]]) -> Optional[dict]:
    """The first (val, test) pair with the highest non-None validation score."""
    best = None
    for val, test in candidates:
        if val is not None and (best is None or val > best[0]):
            best = (val, test)
    return None if best is None else {"val_acc": best[0], "test_acc": best[1]}


@functools.lru_cache(maxsize=4096)
def _canonical_override(text: str) -> str:
    """The ``--hparams`` JSON string in a canonical form (key order and spacing ignored)."""
    try:
        return repr(hashable(json.loads(text))) if text.strip() else "None"
    except ValueError:
        return text


def _hparams_key(record: dict) -> Tuple:
    args = record["args"]
    override = args.get("hparams")
    if override is None:
        override = "None"
    elif isinstance(override, str):
        override = _canonical_override(override)
    else:
        override = repr(hashable(override))
    seed = args.get("hparams_seed")
    return type(seed).__name__, seed if seed is not None else 0, override


class SelectionMethod:
    """Base class: subclasses define ``name`` and ``select`` (or override ``run_acc``)."""

    name: str = "abstract"

    @classmethod
    def run_acc(cls, run_records) -> Optional[Dict[str, float]]:
        """``{"val_acc", "test_acc"}`` chosen among the records of one hparams group, or
        None when the group cannot be scored by this method (e.g. it has no run with a
        single test env)."""
        run_records = final_records_only(run_records)
        test_env, single = _single_test_env_records(run_records)
        if test_env is None:
            return None
        return cls.select(test_env, single, run_records)

    @classmethod
    def select(cls, test_env: int, single: List[dict],
               run_records) -> Optional[Dict[str, float]]:
        """``run_acc`` once the test env is known; ``single`` are the records of the
        single-test-env runs sorted by (step, seed), ``run_records`` all the records."""
        raise NotImplementedError

    @classmethod
    def hparams_accs(cls, records) -> Q:
        """``Q`` of ``(run_acc, Q(records))`` per hparams group that can be scored, best
        validation accuracy first (ties: smaller hparams_seed first)."""
        groups: Dict[Tuple, List[dict]] = {}
        for record in records:
            groups.setdefault(_hparams_key(record), []).append(record)
        scored = []
        for key in sorted(groups):
            acc = cls.run_acc(Q(groups[key]))
            if acc is not None:
                scored.append((acc, Q(groups[key])))
        scored.sort(key=lambda item: -item[0]["val_acc"])  # stable: key order breaks ties
        return Q(scored)

    @classmethod
    def sweep_acc(cls, records) -> Optional[float]:
        """Test accuracy of the best hparams group, or None when no group can be scored."""
        accs = cls.hparams_accs(records)
        return accs[0][0]["test_acc"] if len(accs) else None


@SELECTION_METHODS.register("training_domain")
class IIDAccuracySelectionMethod(SelectionMethod):
    """Training-domain validation: the (run, step) record with the best mean ``out``
    accuracy over the training envs."""

    name = "training-domain validation set"

    @classmethod
    def select(cls, test_env, single, run_records):
        test_key = f"env{test_env}_in_acc"
        keys = [f"env{j}_out_acc" for j in range(record_n_envs(single[0])) if j != test_env]
        return _best((_mean_or_none(record.get(k) for k in keys), record.get(test_key))
                     for record in single)


@SELECTION_METHODS.register("leave_one_out")
class LeaveOneOutSelectionMethod(SelectionMethod):
    """Leave-one-domain-out: at each step, the validation score is ``env{v}_in_acc`` of the
    run whose test envs are {t, v}, averaged over every other env v; None when a pair run
    (or its record at that step) is missing."""

    name = "leave-one-domain-out cross-validation"

    @classmethod
    def select(cls, test_env, single, run_records):
        pairs = [r for r in run_records
                 if len(r["args"]["test_envs"]) == 2 and test_env in r["args"]["test_envs"]]
        pair_acc: Dict[Tuple[int, Any], float] = {}  # (v, step) -> env{v}_in_acc
        for record in sorted(pairs, key=_run_order):
            envs = record["args"]["test_envs"]
            v = envs[0] if envs[1] == test_env else envs[1]
            pair_acc.setdefault((v, record.get("step")), record.get(f"env{v}_in_acc"))

        others = [v for v in range(record_n_envs(single[0])) if v != test_env]
        return _best((_mean_or_none(pair_acc.get((v, record.get("step"))) for v in others),
                      record.get(f"env{test_env}_in_acc")) for record in single)


@SELECTION_METHODS.register("oracle")
class OracleSelectionMethod(SelectionMethod):
    """Test-domain validation (oracle): the last step of each run, chosen on
    ``env{t}_out_acc``."""

    name = "test-domain validation set (oracle)"

    @classmethod
    def select(cls, test_env, single, run_records):
        last: Dict[Any, dict] = {}  # seed -> last record (records are sorted by step)
        for record in single:
            last[record["args"].get("seed")] = record
        runs = sorted(last.values(), key=lambda r: _run_order(r)[1])
        return _best((_number(r.get(f"env{test_env}_out_acc")), r.get(f"env{test_env}_in_acc"))
                     for r in runs)


def get_selection_method(name: str) -> type:
    """A selection method by registry name (``training_domain``, ``leave_one_out``,
    ``oracle``), class name, or display ``name``."""
    for key in SELECTION_METHODS:
        method = SELECTION_METHODS.get(key)
        if name in (key, method.__name__, method.name):
            return method
    raise DomainBedError(f"unknown selection method {name!r}; known selection methods: "
                         f"{', '.join(SELECTION_METHODS)}")


__all__ = ["SELECTION_METHODS", "SelectionMethod", "final_records_only",
           "IIDAccuracySelectionMethod", "LeaveOneOutSelectionMethod", "OracleSelectionMethod",
           "get_selection_method"]
