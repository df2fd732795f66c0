"""A finished run directory as the ratatouille tools read it: its recorded args, hparams and
records, and which of its weight files (best checkpoint or final) they use."""

import logging
import os
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Sequence

from domainbed.errors import DomainBedError
from domainbed.lib import run_dir as rd
from domainbed.lib.weights import read_metadata

log = logging.getLogger(__name__)

def algorithm_class(name: str):
    from domainbed import algorithms
    try:
        return algorithms.get_algorithm_class(name)
    except KeyError:
        pass
    import domainbed_aux.algorithms  # noqa: F401  (registers the ratatouille family's algorithms)
    try:
        return algorithms.get_algorithm_class(name)
    except KeyError:
        raise DomainBedError(f"algorithm {name!r} of a model file is not registered; known: "
                             f"{', '.join(algorithms.ALGORITHMS)}; import the plugin that "
                             "defines it (DOMAINBED_PLUGINS)") from None


WEIGHTS = ("best", "final")


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _keeps_best_checkpoint(algorithm: str) -> bool:
    try:
        return bool(getattr(algorithm_class(algorithm), "BEST_CHECKPOINT", True))
    except DomainBedError:
        return True


@dataclass
class RunInfo:
    """A finished run: its directory, recorded args/hparams, records and weight files.

    ``weights`` says which weights of the run soups, ensembles, WiSE-FT and re-scored rows
    use: ``"best"`` (default) = ``model_best.safetensors``, the checkpoint with the highest
    ID-validation accuracy (the paper's appendix F.1); for algorithms whose model is an
    average over the trajectory (MA, SWAD) that is their final, averaged model;
    ``"final"`` = ``model.safetensors``, the weights after the last step.
    """

    run_dir: str
    args: Dict[str, Any]
    hparams: Dict[str, Any]
    records: List[dict]
    final_model_path: str
    init: Optional[Dict[str, Any]] = None
    weights: str = "best"

    @property
    def order_key(self) -> tuple:
        """Where runs are put in order (soups' averaging order, ties in ID-validation
        accuracy of greedy soups and of the best run): by what the run trains (trial seed,
        hparams seed, seed, hparams override), then by directory. Never by the directory
        first: its name hashes flags that change only what is evaluated (e.g.
        ``--full_evaluation``, ``--score_test_once``), and a table must not depend on them."""
        a = self.args
        return (_int(a.get("trial_seed")), _int(a.get("hparams_seed")), _int(a.get("seed")),
                str(a.get("hparams") or ""), self.run_dir)

    @property
    def uses_best_checkpoint(self) -> bool:
        """Whether ``model_path`` is the best-ID-validation checkpoint (not the final one)."""
        return self.weights == "best" and _keeps_best_checkpoint(self.algorithm)

    @property
    def model_path(self) -> str:
        """The weight file of this run that ``weights`` selects (see the class docstring)."""
        if not self.uses_best_checkpoint:
            return self.final_model_path
        path = os.path.join(self.run_dir, rd.MODEL_BEST)
        if not os.path.isfile(path):
            raise DomainBedError(
                f"{self.run_dir}: no {rd.MODEL_BEST} (the best ID-validation checkpoint; runs "
                "trained before it existed, or with --skip_model_save, lack it); retrain the "
                "run, or use its final weights explicitly (--weights final)")
        return path

    @property
    def selected_record(self) -> dict:
        """The record of the weights ``model_path`` holds: the first record with the highest
        ID-validation accuracy for the best checkpoint, else the final record."""
        if not self.uses_best_checkpoint:
            return self.final_record
        best, best_acc = None, None
        for record in sorted(self.records, key=lambda r: r["step"]):
            if record.get("final_average"):
                continue
            acc = self._id_val_of(record)
            if acc is not None and (best_acc is None or acc > best_acc):
                best, best_acc = record, acc
        if best is None:
            raise DomainBedError(f"{self.run_dir}: no record has env{{j}}_out_acc for every "
                                 f"training env {self.train_envs}; re-run the training")
        return best

    @property
    def dataset(self) -> str:
        return self.args["dataset"]

    @property
    def algorithm(self) -> str:
        return self.args["algorithm"]

    @property
    def trial_seed(self) -> int:
        return self.args["trial_seed"]

    @property
    def test_envs(self) -> List[int]:
        return list(self.args.get("test_envs") or [])

    @property
    def robust(self) -> bool:
        return bool((self.init or {}).get("robust", False))

    @property
    def final_record(self) -> dict:
        # at the last step, SWAD's record of its averaged window comes after the live one
        return max(self.records, key=lambda r: (r["step"], bool(r.get("final_average"))))

    @property
    def n_envs(self) -> int:
        from domainbed.lib.reporting import record_n_envs
        return record_n_envs(self.final_record)

    @property
    def train_envs(self) -> List[int]:
        return [i for i in range(self.n_envs) if i not in self.test_envs]

    def _id_val_of(self, record: dict) -> Optional[float]:
        from domainbed.training.evaluation import id_val_accuracy
        return id_val_accuracy(record, self.train_envs)

    @property
    def id_val_acc(self) -> float:
        """Recorded ID-validation accuracy (mean ``env{j}_out_acc`` over training envs) of
        the weights ``model_path`` holds (see ``selected_record``)."""
        acc = self._id_val_of(self.selected_record)
        if acc is None:
            raise DomainBedError(f"{self.run_dir}: the record has no env{{j}}_out_acc for "
                                 f"training envs {self.train_envs}; re-run the training")
        return acc


def read_run(run_dir: str, weights: str = "best") -> RunInfo:
    """The ``RunInfo`` of a finished run; raises ``DomainBedError`` when it is not usable."""
    if weights not in WEIGHTS:
        raise DomainBedError(f"unknown weights {weights!r}; known: {', '.join(WEIGHTS)}")
    if not os.path.exists(os.path.join(run_dir, rd.DONE)):
        raise DomainBedError(f"{run_dir}: the run is not finished (no `{rd.DONE}` file)")
    model_path = os.path.join(run_dir, rd.MODEL)
    if not os.path.isfile(model_path):
        raise DomainBedError(f"{run_dir}: no {rd.MODEL}; soups and ensembles need the final "
                             "weights (train without --skip_model_save)")
    records = rd.read_records(run_dir)
    if not records or not isinstance(records[-1].get("args"), dict):
        meta = read_metadata(model_path)
        raise DomainBedError(f"{run_dir}: no usable record in {rd.RESULTS} "
                             f"(model metadata args: {bool(meta.get('args'))}); the run's "
                             "ID-validation accuracy and splits are read from its records")
    last = records[-1]
    return RunInfo(run_dir=run_dir, args=dict(last["args"]), hparams=dict(last["hparams"]),
                   records=records, final_model_path=model_path, init=last.get("init"),
                   weights=weights)


def best_run(runs: Sequence[RunInfo]) -> RunInfo:
    """The run whose selected weights have the best recorded ID-validation accuracy (ties: the
    first in ``order_key`` order)."""
    return sorted(runs, key=lambda r: (-r.id_val_acc, r.order_key))[0]


def find_runs(input_dirs: Iterable[str], dataset: Optional[str] = None,
              test_env: Optional[int] = None, trial_seed: Optional[int] = None,
              algorithms: Optional[Sequence[str]] = None,
              max_depth: int = rd.DEFAULT_MAX_DEPTH, weights: str = "best") -> List[RunInfo]:
    """Finished runs (with ``done`` and a model file) under ``input_dirs``, filtered;
    ``weights`` (best or final) is passed to each ``RunInfo``.

    ``test_env`` keeps runs whose ``test_envs`` is exactly ``[test_env]``; ``trial_seed``
    None or -1 keeps every trial. Runs are sorted by ``RunInfo.order_key`` (a deterministic
    order that evaluation-only flags do not change).
    """
    runs = []
    for top in input_dirs:
        if not os.path.isdir(top):
            raise DomainBedError(f"input directory {top!r} does not exist; pass the output "
                                 "folder of a sweep (comma-separate several)")
        for path, has_done in rd.find_run_dirs(top, max_depth):
            if not has_done or not os.path.isfile(os.path.join(path, rd.MODEL)):
                continue
            try:
                run = read_run(path, weights)
            except DomainBedError as exc:
                log.warning("skipping %s", exc)
                continue
            if dataset is not None and run.dataset != dataset:
                continue
            if test_env is not None and run.test_envs != [test_env]:
                continue
            if trial_seed is not None and trial_seed != -1 and run.trial_seed != trial_seed:
                continue
            if algorithms is not None and run.algorithm not in algorithms:
                continue
            runs.append(run)
    return sorted(runs, key=lambda r: r.order_key)
