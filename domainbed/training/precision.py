"""Training arithmetic of a run: fp32 (default), or mixed precision, channels-last, cuDNN
autotuning. Each is opt-in and recorded in the run's args; fp32 stays the default so that
tables compare with published ones. Evaluations always run in fp32."""

import contextlib
from typing import Any, Dict, Optional

import torch

from domainbed.errors import DomainBedError

PRECISIONS = ("fp32", "bf16", "fp16")


class TrainingArithmetic:
    """``autocast()`` around each update; for fp16 a gradient scaler that ``ERM.step``
    uses (``algorithm.grad_scaler``), saved in the checkpoint so a resumed run repeats the
    uninterrupted one within a precision."""

    def __init__(self, precision: str, device: torch.device, channels_last: bool = False):
        if precision not in PRECISIONS:
            raise DomainBedError(f"unknown --precision {precision!r}; known: "
                                 f"{', '.join(PRECISIONS)}")
        if precision == "fp16" and device.type != "cuda":
            raise DomainBedError("--precision fp16 needs a CUDA GPU (its gradient scaler is "
                                 "for GPUs); on this device use --precision bf16 or fp32")
        self.precision = precision
        self.device = device
        self.channels_last = channels_last
        self.scaler: Optional[torch.amp.GradScaler] = None

    def prepare(self, algorithm) -> None:
        """Attach what the algorithm needs (memory format, gradient scaler)."""
        if self.channels_last:
            algorithm.to(memory_format=torch.channels_last)
        if self.precision == "fp16":
            if not callable(getattr(algorithm, "step", None)):
                raise DomainBedError(
                    f"--precision fp16 scales the loss in ERM.step, which "
                    f"{type(algorithm).__name__} does not use; use --precision bf16 (no "
                    "scaler needed) or fp32")
            self.scaler = torch.amp.GradScaler(self.device.type)
            algorithm.grad_scaler = self.scaler

    def autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def batch(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def state(self) -> Dict[str, Any]:
        return {"grad_scaler": self.scaler.state_dict()} if self.scaler is not None else {}

    def load(self, state: Dict[str, Any]) -> None:
        if self.scaler is not None and state.get("grad_scaler"):
            self.scaler.load_state_dict(state["grad_scaler"])


def set_cudnn_benchmark(enabled: bool) -> None:
    """cuDNN autotuning (opt-in): faster kernels, no longer bitwise-repeatable."""
    if enabled:
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.deterministic = False
