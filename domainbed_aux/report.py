"""The rows of the paper's Table 1, as row providers for ``domainbed.reports.build_report``.

Per dataset and test domain, over the finished runs of a sweep (one value per trial seed,
shown as ``mean +/- se``; dagger rows have one value, shown ``x +/- 0.0``):

- ID-val rows: the core's training-domain validation selection over the runs of a family
  ("Vanilla fine-tuning (ID val)" over ERM runs; "LP-FT (ID val)", "CORAL (ID val)",
  "SWAD (loss-aware trajectory)" and "MA (uniform trajectory)" over the runs of LPFT,
  CORAL, SWAD and MA -- a SWAD run counts by its record of the averaged window --;
  "Inter-training (ID val)" over InterTraining/Ratatouille runs, "Fusing (ID val)" over
  Fusing runs);
- "WiSE-FT (a=0.5)": per trial seed, the ERM run with the best ID-validation accuracy
  (of its best checkpoint), interpolated halfway back to its initialisation (its ``--init_from`` file, e.g.
  the linear probe, so LP-FT then WiSE-FT; see ``analysis.wise_ft``); the row is left out
  when the runs have no known initialisation;
- "Ensemble*" rows: softmax-averaged predictions of every run of a trial seed;
- soup rows: uniform and greedy soups of every run of a trial seed, and the uniform soup of
  every trial together ("dagger"; only when the runs hold more than one trial seed).

Soups, ensembles, WiSE-FT and re-scored rows use each run's best-ID-validation checkpoint
(``model_best.safetensors``, the paper's appendix F.1; MA and SWAD runs: their averaged
final model); ``weights="final"`` uses the final weights instead, and the report says which.

Runs whose recorded init has ``robust: true`` form separate "Robust ..." rows. Rows without
runs are left out. Every row is scored on ``env{test}_in`` (the selection rows' split); with
``full_domain`` on the whole test domain instead, and the ID-val rows then pick, per trial
seed, the run whose best checkpoint has the best ID-validation accuracy (the checkpoint that
training-domain validation selects) and score that checkpoint. Evaluations are cached as JSON files keyed by the member files'
paths, sizes and modification times, so a second report is fast.
"""

import hashlib
import json
import logging
import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from domainbed.errors import DomainBedError
from domainbed.lib.query import Q

from domainbed_aux.scoring.evaluation import EvaluatorCache
from domainbed_aux.scoring.runs import RunInfo, find_runs

log = logging.getLogger(__name__)

CACHE_VERSION = 2  # 2: members are best checkpoints by default
CACHE_DIR_NAME = ".ratatouille_cache"
DAGGER_SEED = "all"  # the trial-seed key of dagger cells: one value for every trial

# family name -> the algorithms whose runs it holds
FAMILIES: Dict[str, Tuple[str, ...]] = {
    "erm": ("ERM",),
    "lpft": ("LPFT",),
    "coral": ("CORAL",),
    "swad": ("SWAD",),
    "ma": ("MA",),
    "inter": ("InterTraining", "Ratatouille"),
    "fusing": ("Fusing",),
}

WISE_ALPHA = 0.5  # WiSE-FT's mixing coefficient: the WiSE-FT paper's default

# (row name, family, kind); kinds: id_val, wise, ensemble, uniform, greedy, dagger
TABLE1_ROWS: Tuple[Tuple[str, str, str], ...] = (
    ("Vanilla fine-tuning (ID val)", "erm", "id_val"),
    ("LP-FT (ID val)", "lpft", "id_val"),
    ("CORAL (ID val)", "coral", "id_val"),
    ("SWAD (loss-aware trajectory)", "swad", "id_val"),
    ("MA (uniform trajectory)", "ma", "id_val"),
    ("WiSE-FT (a=%g)" % WISE_ALPHA, "erm", "wise"),
    ("Ensemble*", "erm", "ensemble"),
    ("Model soups uniform", "erm", "uniform"),
    ("Model soups greedy", "erm", "greedy"),
    ("Model soups uniform (dagger)", "erm", "dagger"),
    ("Inter-training (ID val)", "inter", "id_val"),
    ("Ensemble* of inter-training", "inter", "ensemble"),
    ("Fusing (ID val)", "fusing", "id_val"),
    ("Ratatouille uniform", "inter", "uniform"),
    ("Ratatouille greedy", "inter", "greedy"),
    ("Ratatouille uniform (dagger)", "inter", "dagger"),
)


def row_names(robust: bool = False, families: Optional[Sequence[str]] = None) -> List[str]:
    """The row names in table order (the robust variants after the plain ones), of every
    family or of the ``families`` given (keys of ``FAMILIES``)."""
    names = [name for name, family, _ in TABLE1_ROWS if families is None or family in families]
    return names + ([robust_name(n) for n in names] if robust else [])


def robust_name(name: str) -> str:
    keep = name[1:2].isupper()  # "MA ...", "SWAD ...", "WiSE-FT ..." keep their capitals
    return "Robust " + (name if keep else name[0].lower() + name[1:])


def family_of(run: RunInfo) -> Optional[str]:
    for family, algorithms in FAMILIES.items():
        if run.algorithm in algorithms:
            return family
    return None


class EvaluationCache:
    """JSON files ``<dir>/<sha256>.json``, one per (kind, rule, split, member files)."""

    def __init__(self, directory: Optional[str]):
        self.directory = directory

    @staticmethod
    def key(kind: str, rule: str, split: str, runs: Sequence[RunInfo],
            data_dir: Optional[str]) -> str:
        members = []
        for run in sorted(runs, key=lambda r: r.run_dir):
            st = os.stat(run.model_path)
            members.append([os.path.realpath(run.model_path), st.st_size, st.st_mtime_ns])
        material = {"version": CACHE_VERSION, "kind": kind, "rule": rule, "split": split,
                    "data_dir": data_dir, "members": members}
        return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()

    def get(self, key: str) -> Optional[dict]:
        if not self.directory:
            return None
        path = os.path.join(self.directory, key + ".json")
        try:
            with open(path, encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def put(self, key: str, value: dict) -> None:
        if not self.directory:
            return
        from domainbed.lib.misc import atomic_write_text
        try:
            atomic_write_text(os.path.join(self.directory, key + ".json"),
                              json.dumps(value, indent=1))
        except OSError as exc:
            log.warning("cannot write the evaluation cache in %s: %s", self.directory, exc)


class Table1Rows:
    """A row provider ``(records, dataset, method) -> [(row_name, {env: {trial: acc}})]``.

    Built from the runs found on disk (records do not say where a run's weights are).
    ``counts`` tells, after a call, how many evaluations were computed and read from cache.
    """

    def __init__(self, runs: Sequence[RunInfo], evaluators: Optional[EvaluatorCache] = None,
                 cache: Optional[EvaluationCache] = None, full_domain: bool = False,
                 progress: bool = False):
        self.runs = [r for r in runs if len(r.test_envs) == 1 and r.test_envs[0] >= 0]
        self.evaluators = evaluators if evaluators is not None else EvaluatorCache()
        self.cache = cache if cache is not None else EvaluationCache(None)
        self.split = "test_full" if full_domain else "test_in"
        self.progress = progress
        self.counts = {"computed": 0, "cached": 0}
        self.details: Dict[str, Any] = {}  # "<dataset>/<row>/env<k>/<trial>" -> result
        self.skipped: Dict[str, str] = {}  # "<dataset>/<row>" -> why the row is left out

    def _groups(self, dataset: str):
        """(family, robust) -> test_env -> trial_seed -> runs."""
        groups: Dict[Tuple[str, bool], Dict[int, Dict[int, List[RunInfo]]]] = {}
        for run in self.runs:
            family = family_of(run)
            if run.dataset != dataset or family is None:
                continue
            by_env = groups.setdefault((family, run.robust), {})
            by_env.setdefault(run.test_envs[0], {}).setdefault(run.trial_seed, []).append(run)
        return groups

    def _evaluate(self, kind: str, runs: Sequence[RunInfo]) -> dict:
        from domainbed_aux.scoring.ensembles import ensemble
        from domainbed_aux.scoring.soups import soup
        key = self.cache.key("ensemble" if kind == "ensemble" else "soup", kind, self.split,
                             runs, self.evaluators.data_dir)
        if kind == "ensemble":
            return self._cached(key, lambda: ensemble(runs, self.evaluators, [self.split],
                                                      progress=self.progress))
        return self._cached(key, lambda: soup(runs, kind, self.evaluators, [self.split],
                                              progress=self.progress))

    def _cached(self, key: str, compute: Callable[[], dict]) -> dict:
        """The cached result under ``key``, else ``compute()`` (then cached); counted."""
        cached = self.cache.get(key)
        if cached is not None:
            self.counts["cached"] += 1
            return cached
        result = compute()
        self.counts["computed"] += 1
        self.cache.put(key, result)
        return result

    def _id_val(self, runs: Sequence[RunInfo], method) -> Optional[float]:
        if self.split == "test_in":
            return method.sweep_acc(Q([r for run in runs for r in run.records]))
        best = self._best_run(runs)
        key = self.cache.key("single", "id_val", self.split, [best], self.evaluators.data_dir)

        def score() -> dict:
            from domainbed_aux.averaging.base import load_member
            return {"run": best.run_dir, "acc": self.evaluators(best).accuracy(
                load_member(best.model_path, best.run_dir), self.split)}
        return self._cached(key, score)["acc"]

    def _best_run(self, runs: Sequence[RunInfo]) -> RunInfo:
        """The run whose selected weights have the best recorded ID-validation accuracy
        (ties: run dir)."""
        return sorted(runs, key=lambda r: (-r.id_val_acc, r.run_dir))[0]

    def _wise(self, runs: Sequence[RunInfo]) -> dict:
        from domainbed_aux.analysis.wise_ft import wise_ft
        best = self._best_run(runs)
        key = self.cache.key("wise", str(WISE_ALPHA), self.split, [best],
                             self.evaluators.data_dir)

        def interpolate() -> dict:
            curve = wise_ft(self.evaluators(best), [WISE_ALPHA], splits=[self.split])
            return {"run": best.run_dir, "alpha": WISE_ALPHA, "init": curve["init"],
                    "interpolated_parts": curve["interpolated_parts"],
                    "accuracies": {self.split: curve["accuracies"][self.split][0]}}
        return self._cached(key, interpolate)

    def _cell_values(self, kind: str, by_trial: Dict[int, List[RunInfo]], method, name: str,
                     dataset: str, env: int) -> Dict[Any, Optional[float]]:
        if kind == "dagger":
            runs = [r for trial in sorted(by_trial) for r in by_trial[trial]]
            result = self._evaluate("dagger", runs)
            self.details[f"{dataset}/{name}/env{env}/{DAGGER_SEED}"] = result
            return {DAGGER_SEED: result["accuracies"][self.split]}
        values: Dict[Any, Optional[float]] = {}
        for trial in sorted(by_trial):
            runs = by_trial[trial]
            if kind == "id_val":
                values[trial] = self._id_val(runs, method)
                continue
            result = self._wise(runs) if kind == "wise" else self._evaluate(kind, runs)
            self.details[f"{dataset}/{name}/env{env}/{trial}"] = result
            values[trial] = result["accuracies"][self.split]
        return values

    def __call__(self, records, dataset: str, method) -> List[Tuple[str, Dict[int, Any]]]:
        from tqdm import tqdm
        groups = self._groups(dataset)
        todo = []
        for robust in (False, True):
            for name, family, kind in TABLE1_ROWS:
                if kind == "dagger" and (family, robust) in groups and not any(
                        len(by_trial) > 1 for by_trial in groups[(family, robust)].values()):
                    continue  # one trial seed: a dagger soup would repeat the uniform row
                if (family, robust) in groups:
                    todo.append((robust_name(name) if robust else name, kind,
                                 groups[(family, robust)]))
        rows = []
        for name, kind, by_env in tqdm(todo, desc=f"{dataset} rows", disable=not self.progress,
                                       leave=False):
            try:
                values = {env: self._cell_values(kind, by_env[env], method, name, dataset, env)
                          for env in sorted(by_env)}
            except DomainBedError as exc:
                if kind != "wise":
                    raise
                # e.g. runs trained from scratch: there is no initialisation to go back to
                self.skipped[f"{dataset}/{name}"] = str(exc)
                log.warning("%s: row %r left out: %s", dataset, name, exc)
                continue
            rows.append((name, values))
        return rows


def _keep_rows(report, names: Sequence[str]) -> None:
    """Drop the algorithm rows build_report adds: Table 1 shows the provider's rows only."""
    keep = set(names)
    for section in report.sections:
        for table in section.tables:
            table.rows = [row for row in table.rows if row.name in keep]
    report.notes = [n for n in report.notes if "domainbed.algorithms.ALGORITHMS" not in n]


def build_table1(input_dirs: Sequence[str], data_dir: Optional[str] = None,
                 full_domain: bool = False, cache_dir: Optional[str] = "default",
                 progress: bool = False, device=None, weights: str = "best"):
    """The Table 1 ``Report`` (render it with ``domainbed.reports.render``) and the provider.

    ``cache_dir``: "default" = ``<first input dir>/.ratatouille_cache``, None = no cache.
    Raises ``DomainBedError`` when no finished run with a model file and one test env exists.
    """
    from domainbed.lib.reporting import LoadReport
    from domainbed.model_selection import IIDAccuracySelectionMethod
    from domainbed.reports import build_report
    runs = find_runs(input_dirs, weights=weights)
    runs = [r for r in runs if len(r.test_envs) == 1 and r.test_envs[0] >= 0]
    if not runs:
        raise DomainBedError(f"no finished run with one test environment and a model file "
                             f"under {', '.join(input_dirs)}; the report needs the sweep's "
                             "run directories (with `done` and model.safetensors)")
    if not any(family_of(r) for r in runs):
        known = sorted(a for algs in FAMILIES.values() for a in algs)
        raise DomainBedError(f"no run of the algorithms of Table 1 ({', '.join(known)}) "
                             f"under {', '.join(input_dirs)}")
    if cache_dir == "default":
        cache_dir = os.path.join(input_dirs[0], CACHE_DIR_NAME)
    provider = Table1Rows(runs, EvaluatorCache(data_dir=data_dir, device=device),
                          EvaluationCache(cache_dir), full_domain, progress)
    records = Q([r for run in runs for r in run.records])
    load = LoadReport(input_dir=",".join(input_dirs), n_runs=len(runs), n_records=len(records))
    report = build_report(records, [IIDAccuracySelectionMethod], [provider], load)
    _keep_rows(report, row_names(robust=True))
    for row, why in sorted(provider.skipped.items()):
        report.notes.append(f"row {row} left out: {why}")
    split = "the whole test domain" if full_domain else "env{test}_in"
    report.notes.append(f"every row is scored on {split}; dagger rows hold one value "
                        "(every trial seed averaged), shown as 'x +/- 0.0'")
    which = ("each run's best-ID-validation checkpoint (model_best.safetensors; MA and SWAD: "
             "their averaged final model)" if weights == "best"
             else "each run's final weights (model.safetensors)")
    report.notes.append(f"soups, ensembles and WiSE-FT use {which}")
    return report, provider
