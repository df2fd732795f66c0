"""After the last step: the test env's ``in`` score of the record training-domain validation
selects (the first best on ID validation), scored once from the best checkpoint's weights
and written into that record of ``results.jsonl`` (``--score_test_once``: the ``selected``
policy of ``evaluation_plan.policy_of_test_in``).

The weights in ``model_best.safetensors`` are those of that record and a split's score does
not depend on when it is scored (``scoring``), so the record ends up as a record that was
scored at its step; it also lists the keys scored later, under ``scored_after_training``.
Runs count only once ``done`` exists, which is written after this.
"""

import json
import logging
from typing import List, Optional

from domainbed.errors import DomainBedError
from domainbed.lib import misc
from domainbed.lib.weights import load_file
from domainbed.training.feeds import Feeds
from domainbed.training.setup import RunSetup

log = logging.getLogger("domainbed.train")

SCORED_AFTER_TRAINING = "scored_after_training"


def _selected_line(lines: List[bytes], step: int) -> Optional[int]:
    """The index of the training record of ``step`` (not a ``final_average`` one)."""
    for index, line in enumerate(lines):
        if line.strip():
            record = json.loads(line)
            if record.get("step") == step and not record.get("final_average"):
                return index
    return None


def score_selected_record(setup: RunSetup, feeds: Feeds) -> None:
    """Fill in the deferred test scores of the best record (nothing to do when the run
    does not defer them, kept no best record, or the record holds them already: the last
    step is scored in full, and a resumed run may have written them before)."""
    scorer, best = feeds.scorer, setup.best
    if not scorer.defer_test_in or best.step is None:
        return
    names = scorer.test_in_splits()
    keys = [name + "_acc" for name in names]
    with open(setup.results_path, "rb") as f:
        lines = f.read().split(b"\n")
    index = _selected_line(lines, best.step)
    if index is None:
        raise DomainBedError(f"{setup.results_path} has no record of step {best.step}, the "
                             "best on ID validation; delete the run directory to start again")
    record = json.loads(lines[index])
    if all(record.get(key) is not None for key in keys):
        return
    state, metadata = load_file(best.path, device=setup.device)
    kept = (metadata.get("best_checkpoint") or {}).get("step")
    if kept != best.step:
        raise DomainBedError(
            f"{best.path} holds the weights of step {kept}, but the best record is step "
            f"{best.step} (the run was resumed and did not repeat its steps exactly); its "
            "test score cannot be computed: delete the run directory to train it again, or "
            "train with --full_evaluation")
    setup.algorithm.load_state_dict(state)
    record.update(scorer.score(setup.algorithm, names, best.step))
    record[SCORED_AFTER_TRAINING] = keys
    lines[index] = json.dumps(record, sort_keys=True).encode("utf-8")
    misc.atomic_write_bytes(setup.results_path, b"\n".join(lines))
    log.info("selected record (step %d, best on ID validation): %s", best.step,
             ", ".join(f"{key} {record[key]:.4f}" for key in keys))
