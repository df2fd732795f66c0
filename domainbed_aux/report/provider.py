"""``Table1Rows``: the row provider of Table 1 over the runs found on disk.

Per dataset, the runs of each family (``registry.families``; robust runs apart) are grouped by
test environment and trial seed, and every registered row (``registry.table1_rows``) whose
family has runs is scored cell by cell: one value per trial seed, or one value over every
trial seed for pooled (dagger) rows, which are left out when the runs hold one trial seed.
"""

import logging
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from domainbed.errors import DomainBedError

from domainbed_aux.report.cache import EvaluationCache
from domainbed_aux.report.registry import (DAGGER_SEED, Table1Row, family_of, robust_name,
                                           table1_rows)
from domainbed_aux.scoring.evaluation import EvaluatorCache
from domainbed_aux.scoring.runs import RunInfo

log = logging.getLogger(__name__)


class Table1Rows:
    """A row provider ``(records, dataset, method) -> [(row_name, {env: {trial: acc}})]``.

    Built from the runs found on disk (records do not say where a run's weights are).
    ``counts`` tells, after a call, how many evaluations were computed and read from cache.
    Row functions use ``split``, ``evaluators``, ``progress`` and ``cached``.
    """

    def __init__(self, runs: Sequence[RunInfo], evaluators: Optional[EvaluatorCache] = None,
                 cache: Optional[EvaluationCache] = None, full_domain: bool = False,
                 progress: bool = False, extra_rows: Sequence[Table1Row] = ()):
        self.runs = [r for r in runs if len(r.test_envs) == 1 and r.test_envs[0] >= 0]
        self.evaluators = evaluators if evaluators is not None else EvaluatorCache()
        self.cache = cache if cache is not None else EvaluationCache(None)
        self.split = "test_full" if full_domain else "test_in"
        self.progress = progress
        self.extra_rows = list(extra_rows)  # rows of this report only (report --rules)
        self.counts = {"computed": 0, "cached": 0}
        self.details: Dict[str, Any] = {}  # "<dataset>/<row>/env<k>/<trial>" -> result
        self.skipped: Dict[str, str] = {}  # "<dataset>/<row>" -> why the row is left out

    def cached(self, kind: str, rule: str, runs: Sequence[RunInfo],
               compute: Callable[[], dict]) -> dict:
        """The cached evaluation of ``runs`` under (kind, rule, split), else ``compute()``
        (then cached); counted in ``counts``."""
        key = self.cache.key(kind, rule, self.split, runs, self.evaluators.data_dir)
        cached = self.cache.get(key)
        if cached is not None:
            self.counts["cached"] += 1
            return cached
        result = compute()
        self.counts["computed"] += 1
        self.cache.put(key, result)
        return result

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

    def _cells(self, row: Table1Row, by_trial: Dict[int, List[RunInfo]], method, name: str,
               dataset: str, env: int) -> Dict[Any, Optional[float]]:
        if row.pooled:
            runs = [r for trial in sorted(by_trial) for r in by_trial[trial]]
            acc, detail = row.score(self, runs, method)
            if detail is not None:
                self.details[f"{dataset}/{name}/env{env}/{DAGGER_SEED}"] = detail
            return {DAGGER_SEED: acc}
        values: Dict[Any, Optional[float]] = {}
        for trial in sorted(by_trial):
            acc, detail = row.score(self, by_trial[trial], method)
            if detail is not None:
                self.details[f"{dataset}/{name}/env{env}/{trial}"] = detail
            values[trial] = acc
        return values

    def _todo(self, dataset: str) -> List[Tuple[str, Table1Row, dict]]:
        """(row name, row, runs by env) of the rows with runs, in table order."""
        groups = self._groups(dataset)
        todo = []
        rows = sorted(table1_rows() + self.extra_rows, key=lambda r: r.position)
        for robust in (False, True):
            for row in rows:
                by_env = groups.get((row.family, robust))
                if by_env is None:
                    continue
                if row.pooled and not any(len(by_trial) > 1 for by_trial in by_env.values()):
                    continue  # one trial seed: a dagger soup would repeat the uniform row
                todo.append((robust_name(row.name) if robust else row.name, row, by_env))
        return todo

    def __call__(self, records, dataset: str, method) -> List[Tuple[str, Dict[int, Any]]]:
        from tqdm import tqdm
        rows = []
        for name, row, by_env in tqdm(self._todo(dataset), desc=f"{dataset} rows",
                                      disable=not self.progress, leave=False):
            try:
                values = {env: self._cells(row, by_env[env], method, name, dataset, env)
                          for env in sorted(by_env)}
            except DomainBedError as exc:
                if not row.optional:
                    raise
                # e.g. WiSE-FT of runs trained from scratch: no initialisation to go back to
                self.skipped[f"{dataset}/{name}"] = str(exc)
                log.warning("%s: row %r left out: %s", dataset, name, exc)
                continue
            rows.append((name, values))
        return rows
