"""Per-environment in / out (validation) / uda splits, with un-augmented evaluation views."""

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import torch

from domainbed.lib import misc


@dataclass
class Splits:
    # (split dataset, sampling weights or None) per environment
    in_splits: List[Tuple[object, Optional[torch.Tensor]]] = field(default_factory=list)
    out_splits: List[Tuple[object, Optional[torch.Tensor]]] = field(default_factory=list)
    uda_splits: List[Tuple[object, Optional[torch.Tensor]]] = field(default_factory=list)
    # the same indices over the environment's evaluation view (never augmented)
    eval_in: List[object] = field(default_factory=list)
    eval_out: List[object] = field(default_factory=list)
    eval_uda: List[object] = field(default_factory=list)


def make_splits(dataset, test_envs, trial_seed: int, holdout_fraction: float,
                uda_holdout_fraction: float, class_balanced: bool,
                augmented_validation: bool = False) -> Splits:
    """Split every environment with ``seed_hash(trial_seed, env_i)`` as upstream does.

    ``augmented_validation`` reproduces upstream's known defect of scoring validation
    splits with training augmentation.
    """
    splits = Splits()
    for env_i, env in enumerate(dataset):
        out, in_ = misc.split_dataset(env, int(len(env) * holdout_fraction),
                                      misc.seed_hash(trial_seed, env_i))
        uda = None
        if env_i in test_envs:
            uda, in_ = misc.split_dataset(in_, int(len(in_) * uda_holdout_fraction),
                                          misc.seed_hash(trial_seed, env_i))
        view = env if augmented_validation else dataset.eval_view(env_i)

        def weights(split):
            return misc.make_weights_for_balanced_classes(split) if class_balanced else None

        splits.in_splits.append((in_, weights(in_)))
        splits.out_splits.append((out, weights(out)))
        splits.eval_out.append(out.with_dataset(view))
        # the in split of a test env sits inside an uda split: compose the index maps
        if uda is not None:
            inner = in_.underlying_dataset
            base = inner.with_dataset(view)
            splits.eval_in.append(misc._SplitDataset(base, in_.keys))
            if len(uda):
                splits.uda_splits.append((uda, weights(uda)))
                splits.eval_uda.append(misc._SplitDataset(base, uda.keys))
        else:
            splits.eval_in.append(in_.with_dataset(view))
    return splits
