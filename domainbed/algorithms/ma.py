"""Moving average (MA) of one training trajectory's weights (see ``live_average``)."""

import torch

from domainbed.algorithms.base import register_algorithm
from domainbed.algorithms.live_average import LiveAndAveraged, paired_state


@register_algorithm(family="ma")
class MA(LiveAndAveraged):
    """Moving average (Arpit et al.): ERM plus the uniform average of the weights after
    every update from step ``ma_start_iter`` on (steps counted from 0, as in records).

    Before that step the "average" mirrors the live weights. ``predict`` in eval mode, hence
    every evaluation of the run, uses the average; training uses the live network.
    """

    @classmethod
    def declare_hparams(cls, dataset, hp, small_images):
        hp("ma_start_iter", 100, lambda r: 100)

    def __init__(self, input_shape, num_classes, num_domains, hparams):
        super().__init__(input_shape, num_classes, num_domains, hparams)
        self.ma_updates = 0  # updates done so far (= the step index of the next update)
        self.ma_count = 0    # updates in the average

    def _predict_with_average(self) -> bool:
        return True

    @torch.no_grad()
    def after_step(self) -> None:
        step = self.ma_updates
        self.ma_updates += 1
        if step < self.hparams["ma_start_iter"]:
            self._copy_live_to_average()
            return
        self.ma_count += 1
        for _, avg, live in paired_state(self.network, self.network_live):
            if avg.is_floating_point():
                avg.add_(live.to(avg.dtype) - avg, alpha=1.0 / self.ma_count)
            else:
                avg.copy_(live)

    def extra_state(self) -> dict:
        return {"ma_updates": self.ma_updates, "ma_count": self.ma_count}

    def load_extra_state(self, state: dict) -> None:
        self.ma_updates = int(state["ma_updates"])
        self.ma_count = int(state["ma_count"])
