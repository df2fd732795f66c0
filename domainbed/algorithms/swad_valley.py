"""SWAD's loss-valley selector: which segments of a training trajectory to average.

Pure logic, no tensors. Training is cut into *segments* by evaluations: segment k holds the
steps since evaluation k-1 up to evaluation k, and carries the validation loss measured at
evaluation k. Our rule (written from the published description of SWAD, Cha et al. 2021):

(a) start: keep the last ``n_converge`` evaluations; once the OLDEST of them has the minimum
    loss of the queue (ties count as minimum), i.e. the loss has not improved for
    ``n_converge - 1`` evaluations, the window starts at that oldest segment and the
    threshold is fixed to ``mean loss of those n_converge evaluations * (1 +
    tolerance_ratio)`` (SWAD's published rule; tolerance_ratio 0.3, 0.2 on VLCS);
(b) end: after the start, once ``n_tolerance`` consecutive evaluations have a loss strictly
    above the threshold (the minimum over them is above it), the valley is over: the selector
    stops (and SWAD stops training); the window ends at the last evaluation whose loss was
    within the threshold (later segments are dropped);
(c) if training ends first, the window is the same: from the start up to the last
    evaluation within the threshold.

Segments between the start and the window end are all included, even those whose own loss
was above the threshold (the window is contiguous).
"""

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional


@dataclass
class Event:
    step: int
    loss: float
    segment: Any


@dataclass
class Decision:
    """What one observation changed.

    ``started``: the window started at this observation; ``add``: segments that joined the
    committed window (in order); ``pending``: segments after the window end that may still
    join it; ``stopped``: the end criterion was met at this observation (``pending`` segments
    are then dropped for good).
    """

    started: bool = False
    add: List[Any] = field(default_factory=list)
    pending: List[Any] = field(default_factory=list)
    stopped: bool = False


class LossValley:
    """Feed ``observe(step, val_loss, segment)`` at every evaluation, in order."""

    def __init__(self, n_converge: int = 3, n_tolerance: int = 6,
                 tolerance_ratio: float = 0.3):
        if n_converge < 1 or n_tolerance < 1 or tolerance_ratio < 0:
            raise ValueError(f"bad SWAD settings n_converge={n_converge}, n_tolerance="
                             f"{n_tolerance}, tolerance_ratio={tolerance_ratio}: need "
                             "n_converge >= 1, n_tolerance >= 1, tolerance_ratio >= 0")
        self.n_converge = n_converge
        self.n_tolerance = n_tolerance
        self.tolerance_ratio = tolerance_ratio
        self.queue: List[Event] = []       # before the start: the last n_converge events
        self.window: List[Event] = []      # committed: start .. last event within threshold
        self.pending: List[Event] = []     # after the window end, not yet dropped
        self.threshold: Optional[float] = None
        self.stopped = False

    @property
    def started(self) -> bool:
        return self.threshold is not None

    def segments(self) -> List[Any]:
        """The segments of the window as it stands (what a final average would hold)."""
        return [e.segment for e in self.window]

    def observe(self, step: int, loss: float, segment: Any) -> Decision:
        event = Event(int(step), float(loss), segment)
        if self.stopped:
            return Decision()
        if not self.started:
            return self._observe_before_start(event)
        return self._observe_after_start(event)

    def _observe_before_start(self, event: Event) -> Decision:
        self.queue.append(event)
        self.queue = self.queue[-self.n_converge:]
        if len(self.queue) < self.n_converge:
            return Decision()
        oldest = self.queue[0]
        if oldest.loss > min(e.loss for e in self.queue):
            return Decision()
        mean_loss = sum(e.loss for e in self.queue) / len(self.queue)
        self.threshold = mean_loss * (1.0 + self.tolerance_ratio)
        events, self.queue = self.queue, []
        last_good = max(i for i, e in enumerate(events) if e.loss <= self.threshold)
        self.window = events[:last_good + 1]
        self.pending = events[last_good + 1:]
        decision = Decision(started=True, add=[e.segment for e in self.window],
                            pending=[e.segment for e in self.pending])
        return self._maybe_stop(decision)

    def _observe_after_start(self, event: Event) -> Decision:
        self.pending.append(event)
        if event.loss <= self.threshold:
            added, self.pending = self.pending, []
            self.window.extend(added)
            return Decision(add=[e.segment for e in added])
        return self._maybe_stop(Decision(pending=[e.segment for e in self.pending]))

    def _maybe_stop(self, decision: Decision) -> Decision:
        if len(self.pending) >= self.n_tolerance:
            self.stopped = True
            self.pending = []
            decision.stopped = True
            decision.pending = []
        return decision

    def state_dict(self) -> Dict[str, Any]:
        """Plain data (JSON-able when segments are) to resume the selector exactly."""
        return {"queue": [asdict(e) for e in self.queue],
                "window": [asdict(e) for e in self.window],
                "pending": [asdict(e) for e in self.pending],
                "threshold": self.threshold, "stopped": self.stopped}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.queue = [Event(**e) for e in state["queue"]]
        self.window = [Event(**e) for e in state["window"]]
        self.pending = [Event(**e) for e in state["pending"]]
        self.threshold = state["threshold"]
        self.stopped = bool(state["stopped"])
