"""The end of a run: the algorithm's final record (e.g. SWAD's averaged model), the final
model, the selected record's deferred test scores, ``done``, and the checkpoint removed."""

import logging
import os
from typing import Any, Dict, Optional

from domainbed.lib import misc, run_dir
from domainbed.lib.weights import save_weights
from domainbed.training.feeds import Feeds
from domainbed.training.loop import LoopEnd
from domainbed.training.records import append_record, log_record, peak_mem_gb, with_run_info
from domainbed.training.selected import score_selected_record
from domainbed.training.setup import RunSetup

log = logging.getLogger("domainbed.train")


def final_record(setup: RunSetup, feeds: Feeds, end: LoopEnd) -> Optional[Dict[str, Any]]:
    """The record of the algorithm's ``final_evaluation`` hook (every split scored once
    more), or None when the hook returns None (the default) or the run wrote no record."""
    final = setup.algorithm.final_evaluation() if end.n_records else None
    if final is None:
        return None
    last_step = end.last_step
    record: Dict[str, Any] = {"step": last_step, "epoch": last_step / feeds.steps_per_epoch,
                              "final_average": True}
    if last_step < feeds.n_steps - 1:
        record["stopped_early"] = True
    record.update(feeds.scorer.score_all(setup.algorithm, last_step))
    record["evaluation"] = "full"
    record.update(final)
    record["mem_gb"] = peak_mem_gb(setup.device)
    return record


def finish(setup: RunSetup, feeds: Feeds, end: LoopEnd) -> None:
    """Write the final record (if any), the final model, the selected record's deferred
    test scores (the best checkpoint's weights are loaded for them: last), ``done``; drop
    the checkpoint unless ``--keep_checkpoint``."""
    config, out_dir = setup.config, setup.out_dir
    record = None if end.diverged else final_record(setup, feeds, end)
    if record is not None:
        log.info("final averaged model:")
        log_record(record, None)
        append_record(setup.results_path, with_run_info(record, setup.hparams,
                                                        setup.args_record, setup.init))
    if not config.skip_model_save and not end.diverged:  # NaN weights: no final model
        save_weights(os.path.join(out_dir, run_dir.MODEL), setup.algorithm.state_dict(),
                     setup.metadata)
    score_selected_record(setup, feeds)
    misc.atomic_write_text(os.path.join(out_dir, run_dir.DONE), "done\n")
    if os.path.exists(setup.checkpoint_path) and not config.keep_checkpoint:
        os.unlink(setup.checkpoint_path)
    log.info("done: %s", out_dir)
