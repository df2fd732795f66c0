"""SWAD: dense weight averaging over the loss valley that ``swad_valley.LossValley`` picks
(the live/averaged layout is ``live_average``'s)."""

import logging
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F

from domainbed.algorithms.base import register_algorithm
from domainbed.algorithms.live_average import LiveAndAveraged, paired_state, sum_copy
from domainbed.algorithms.swad_valley import LossValley

log = logging.getLogger(__name__)


@register_algorithm(family="swad")
class SWAD(LiveAndAveraged):
    """SWAD (Cha et al.): dense averaging (every step) over a window of the trajectory that
    the loss-valley selector (:class:`domainbed.algorithms.swad_valley.LossValley`) picks
    from the validation loss of the live network at each evaluation.

    The validation loss is the mean over training environments of the mean cross-entropy on
    their ``out`` split; the core loop hands the loaders to :meth:`on_evaluation`.
    During training, evaluations (records) score the LIVE network, like ERM's; after the
    last step :meth:`final_evaluation` switches ``predict`` to the averaged window and the
    loop writes one more record (``"final_average": true``, with ``"stopped_early": true``
    when the valley closed before the last step and training stopped there) scoring it:
    that record is the one model selection uses, so SWAD's row in the tables is the
    averaged model's. The averaged window, kept under the standard names, is also what
    ``model.safetensors`` holds and what ``predict`` uses in eval mode on an instance that
    was not trained itself (e.g. one loaded from the model file). If the window never
    starts, the average is the live network at the last evaluation.
    """

    @classmethod
    def declare_hparams(cls, dataset, hp, small_images):
        hp("swad_n_converge", 3, lambda r: 3)
        hp("swad_n_tolerance", 6, lambda r: 6)
        ratio = 0.2 if dataset == "VLCS" else 0.3  # SWAD's published setting per dataset
        hp("swad_tolerance_ratio", ratio, lambda r: ratio)

    def __init__(self, input_shape, num_classes, num_domains, hparams):
        super().__init__(input_shape, num_classes, num_domains, hparams)
        self.selector = LossValley(hparams["swad_n_converge"], hparams["swad_n_tolerance"],
                                   hparams["swad_tolerance_ratio"])
        self._trained_here = False
        self._finished = False        # after final_evaluation: predict with the average
        self._segment = None          # {"sum": {key: tensor}, "n": int, "first": step}
        self._held: Dict[int, dict] = {}  # segments the selector may still add, by last step
        self._pending: Optional[dict] = None  # after the start: segments after the window end
        self._window_n = 0            # steps averaged in the window (the standard names)
        self._window_steps: Optional[List[int]] = None
        self._steps_done = 0

    def _predict_with_average(self) -> bool:
        return self._finished or not self._trained_here

    def stop_training(self) -> bool:
        """SWAD stops training once its loss valley is over (the window is closed)."""
        return self.selector.stopped

    def final_evaluation(self) -> dict:
        self._finished = True
        return self._window_info()

    def _window_info(self) -> dict:
        window = self._window_steps or [None, None]
        return {"swad_window_start": window[0], "swad_window_end": window[1],
                "swad_n_averaged": self._window_n}

    @torch.no_grad()
    def after_step(self) -> None:
        self._trained_here = True
        step = self._steps_done
        self._steps_done += 1
        if self.selector.stopped:
            return
        if self._segment is None:
            self._segment = {"sum": {k: sum_copy(live) for k, _, live in
                                     paired_state(self.network, self.network_live)
                                     if live.is_floating_point()},
                             "n": 1, "first": step, "last": step}
            return
        live_state = self.network_live.state_dict()
        for key, total in self._segment["sum"].items():
            total.add_(live_state[key])
        self._segment["n"] += 1
        self._segment["last"] = step

    @staticmethod
    def _merge(a: Optional[dict], b: dict) -> dict:
        if a is None:
            return b
        for key, total in a["sum"].items():
            total.add_(b["sum"][key])
        return {"sum": a["sum"], "n": a["n"] + b["n"], "first": a["first"], "last": b["last"]}

    @torch.no_grad()
    def _commit(self, segment: dict) -> None:
        """Fold a segment (sum of n steps) into the window average under the standard names."""
        n_old, n_new = self._window_n, self._window_n + segment["n"]
        for key, avg, live in paired_state(self.network, self.network_live):
            if avg.is_floating_point():
                total = avg.double() * n_old + segment["sum"][key]
                avg.copy_((total / n_new).to(avg.dtype))
            else:
                avg.copy_(live)
        self._window_n = n_new
        first = segment["first"] if self._window_steps is None else self._window_steps[0]
        self._window_steps = [first, segment["last"]]

    @torch.no_grad()
    def validation_loss(self, val_loaders) -> float:
        """Mean over loaders of the live network's mean cross-entropy."""
        was_training = self.training
        self.eval()
        device = next(self.network_live.parameters()).device
        losses = []
        for _, loader in val_loaders:
            total, n = 0.0, 0
            for x, y in loader:
                x, y = x.to(device), y.to(device)
                total += F.cross_entropy(self.network_live(x), y, reduction="sum").item()
                n += len(y)
            if n:
                losses.append(total / n)
        self.train(was_training)
        if not losses:
            raise RuntimeError("SWAD needs validation data: every training environment's "
                               "out split is empty; use --holdout_fraction > 0")
        return sum(losses) / len(losses)

    def on_evaluation(self, record: dict, val_loaders) -> dict:
        """Observe the live validation loss and update the averaging window."""
        loss = self.validation_loss(val_loaders)
        segment, self._segment = self._segment, None
        if segment is not None and not self.selector.stopped:
            self._observe(record["step"], loss, segment)
        if self._window_n == 0:
            self._copy_live_to_average()
        return {"swad_val_loss": loss, "swad_started": self.selector.started,
                "swad_stopped": self.selector.stopped, **self._window_info()}

    def _observe(self, step: int, loss: float, segment: dict) -> None:
        was_started = self.selector.started
        decision = self.selector.observe(step, loss, segment["last"])
        if not was_started:
            self._held[segment["last"]] = segment
            if decision.started:
                for seg_id in decision.add:
                    self._commit(self._held.pop(seg_id))
                for seg_id in decision.pending:
                    self._pending = self._merge(self._pending, self._held.pop(seg_id))
            keep = {e.segment for e in self.selector.queue}
            self._held = {k: v for k, v in self._held.items() if k in keep}
        else:
            self._pending = self._merge(self._pending, segment)
            if decision.add:
                self._commit(self._pending)
                self._pending = None
        if decision.stopped:
            self._pending, self._held = None, {}
            log.info("SWAD window closed at step %d: steps %s averaged", step,
                     self._window_steps)

    def extra_state(self) -> dict:
        return {"selector": self.selector.state_dict(), "segment": self._segment,
                "held": self._held, "pending": self._pending, "window_n": self._window_n,
                "window_steps": self._window_steps, "steps_done": self._steps_done}

    def load_extra_state(self, state: dict) -> None:
        self.selector.load_state_dict(state["selector"])
        self._segment = state["segment"]
        self._held = dict(state["held"])
        self._pending = state["pending"]
        self._window_n = int(state["window_n"])
        self._window_steps = state["window_steps"]
        self._steps_done = int(state["steps_done"])
