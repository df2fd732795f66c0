"""Checks before merging runs (``merging.premerge``) with what the runs record: theta_0 (the
shared linear probe, when it can be found), each run's learning rate and the step of the
checkpoint it contributes, and the pooled ID-validation split of its trial."""

import logging
import os
from typing import Any, Dict, Optional, Sequence

from domainbed.errors import DomainBedError
from domainbed_aux.scoring.evaluation import EvaluatorCache
from domainbed_aux.scoring.runs import RunInfo

log = logging.getLogger(__name__)


def run_name(run: RunInfo) -> str:
    return os.path.basename(os.path.normpath(run.run_dir))


def check_runs_before_merging(runs: Sequence[RunInfo], evaluators: Optional[EvaluatorCache] = None,
                              probe: Optional[str] = None, probe_dir: Optional[str] = None
                              ) -> Dict[str, Any]:
    """``merging.premerge.premerge_checks`` of the runs of one trial seed (JSON-ready)."""
    from domainbed_aux.merging import MergeInputs
    from domainbed_aux.merging.premerge import premerge_checks
    from domainbed_aux.scoring.base_weights import theta_0_path
    evaluators = evaluators if evaluators is not None else EvaluatorCache()
    runs = sorted(runs, key=lambda r: r.order_key)
    reference = evaluators(runs[0])
    live = reference.live_bn
    try:
        theta_0 = theta_0_path(runs, probe, probe_dir)
    except DomainBedError as exc:  # geometry relative to the first run instead
        log.info("checks before merging without theta_0: %s", exc)
        theta_0 = None
    inputs = MergeInputs([(r.run_dir, r.model_path) for r in runs], theta_0=theta_0,
                         evaluate=lambda state: reference.accuracy(state, "id_val"),
                         allow_live_bn=live,
                         recompute_bn=reference.recompute_bn if live else None)
    info = {r.run_dir: {"lr": r.hparams.get("lr"), "step": r.selected_record.get("step")}
            for r in runs}
    checks = premerge_checks(inputs, info, {r.run_dir: run_name(r) for r in runs})
    checks["theta_0"] = theta_0
    return checks
