"""``BestCheckpoint``: the weights of the evaluation with the best ID-validation accuracy."""

from typing import Any, Dict, List, Optional

from domainbed.lib.weights import save_weights
from domainbed.training.evaluation_plan import id_val_accuracy


class BestCheckpoint:
    """Keeps ``model_best.safetensors``: the weights at the evaluation with the highest
    ID-validation accuracy; a later evaluation replaces it only when strictly better (ties
    keep the earlier step, as the paper's released code). Its state (best accuracy and step)
    travels in the resumable checkpoint."""

    def __init__(self, path: str, metadata: dict, enabled: bool):
        self.path = path
        self.metadata = metadata
        self.enabled = enabled
        self.best: Optional[float] = None
        self.step: Optional[int] = None

    def is_improvement(self, acc: Optional[float]) -> bool:
        """Whether an ID-validation accuracy is strictly better than the best so far."""
        return acc is not None and (self.best is None or acc > self.best)

    def observe(self, algorithm, record: Dict[str, Any], train_envs: List[int]) -> None:
        """Track the best record (also when no file is kept: the evaluation plan reads it)
        and write the weights when it improves."""
        acc = id_val_accuracy(record, train_envs)
        if not self.is_improvement(acc):
            return
        self.best, self.step = acc, int(record["step"])
        if self.enabled:
            meta = dict(self.metadata, best_checkpoint={"step": self.step, "id_val_acc": acc})
            save_weights(self.path, algorithm.state_dict(), meta)

    def state(self) -> Dict[str, Any]:
        return {"best_id_val_acc": self.best, "best_step": self.step}

    def load(self, state: Dict[str, Any]) -> None:
        self.best = state.get("best_id_val_acc")
        self.step = state.get("best_step")
