"""Train one model: ``python -m domainbed.scripts.train --dataset D --algorithm A ...``.

Writes results.jsonl, out.txt, err.txt, the final model and ``done`` into --output_dir.
Re-running the same command on an unfinished run directory resumes from its checkpoint.
"""

import argparse
import os
import sys
from typing import Tuple

from domainbed.errors import DomainBedError
from domainbed.scripts.cli import INTERRUPTED, exit_on_interrupt, print_errors
from domainbed.training.config import TrainConfig
from domainbed.training.job import interrupt_reported, resume_step, run_job  # noqa: F401
from domainbed.validation import error_lines


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Train one DomainBed model into a resumable run directory.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data_dir", default=os.environ.get("DOMAINBED_DATA", "./data"),
                   help="root folder of the datasets (default: $DOMAINBED_DATA or ./data)")
    p.add_argument("--dataset", default="RotatedMNIST")
    p.add_argument("--algorithm", default="ERM")
    p.add_argument("--task", default="domain_generalization",
                   choices=["domain_generalization", "domain_adaptation"])
    p.add_argument("--hparams", help="JSON object of hyperparameters that override the draw")
    p.add_argument("--hparams_seed", type=int, default=0,
                   help="0 = default hyperparameters, else a seeded random draw")
    p.add_argument("--hparams_space", default="upstream",
                   help="distributions of the random draw: upstream or mild (the paper's)")
    p.add_argument("--trial_seed", type=int, default=0,
                   help="seed of the data splits and, with hparams_seed, of the draw")
    p.add_argument("--seed", type=int, default=0, help="seed of everything else")
    p.add_argument("--steps", type=int, default=None,
                   help="number of steps (default: the dataset's N_STEPS)")
    p.add_argument("--checkpoint_freq", type=int, default=None,
                   help="evaluate and checkpoint every N steps (default: the dataset's)")
    p.add_argument("--test_envs", type=int, nargs="+", default=[0],
                   help="test environments; -1 = none (every domain trains)")
    p.add_argument("--output_dir", default="train_output")
    p.add_argument("--holdout_fraction", type=float, default=0.2)
    p.add_argument("--uda_holdout_fraction", type=float, default=0.0,
                   help="fraction of the test env given as unlabeled data (domain_adaptation)")
    p.add_argument("--skip_model_save", action="store_true")
    p.add_argument("--save_model_every_checkpoint", action="store_true")
    p.add_argument("--init_from", default=None, metavar="PATH",
                   help="initialise from a weight file (ours, a pool member, or upstream's "
                        "model.pkl); shapes are checked")
    p.add_argument("--init_part", default="all",
                   choices=["all", "both", "featurizer", "classifier"],
                   help="which part --init_from loads (all = whatever the file holds)")
    p.add_argument("--augmented_validation", action="store_true",
                   help="legacy: score validation splits WITH training augmentation, as "
                        "upstream DomainBed does")
    p.add_argument("--num_workers", type=int, default=None,
                   help="data loader workers (default: the dataset's N_WORKERS)")
    p.add_argument("--keep_checkpoint", action="store_true",
                   help="keep checkpoint.safetensors after the run is done")
    p.add_argument("--full_evaluation", action="store_true",
                   help="score every split at every evaluation, as upstream (default: the "
                        "splits model selection reads, and every split at the last step; "
                        "the selected checkpoints and table cells are the same)")
    p.add_argument("--score_test_once", action="store_true",
                   help="score the test env's in split only for the record that "
                        "training-domain validation selects, once, after training, from "
                        "model_best.safetensors (default: at every evaluation, which "
                        "leave-one-domain-out selection reads when the sweep has runs with "
                        "two test envs); for runs no such selection reads, e.g. the "
                        "recipe's target runs")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32",
                   help="training arithmetic: fp32 (default, comparable with published "
                        "tables), or mixed precision with bf16 / fp16 autocast (fp16 with a "
                        "gradient scaler; GPU)")
    p.add_argument("--channels_last", action="store_true",
                   help="channels-last memory format for image models (faster convolutions "
                        "on recent GPUs)")
    p.add_argument("--cudnn_benchmark", action="store_true",
                   help="let cuDNN autotune its kernels (faster on a GPU; a resumed run is "
                        "then no longer bitwise equal to an uninterrupted one)")
    return p


def build_command_parser() -> argparse.ArgumentParser:
    """``build_parser`` (the run's arguments, one per TrainConfig field) and the command's
    own action flags, which are not arguments of the run."""
    p = build_parser()
    p.add_argument("--restart", action="store_true",
                   help="move an existing run directory aside (to .<name>.old-N beside it) "
                        "and start again, e.g. after changing the arguments of a run")
    return p


def parse_config(argv=None) -> TrainConfig:
    """The TrainConfig of a command line (``argv`` defaults to ``sys.argv[1:]``)."""
    return _parse(argv)[0]


def _parse(argv=None) -> Tuple[TrainConfig, bool]:
    """(config, --restart) of a command line."""
    namespace = build_command_parser().parse_args(argv)
    restart = bool(namespace.__dict__.pop("restart", False))
    return TrainConfig.from_namespace(namespace), restart


def main(argv=None) -> int:
    """Train; returns the exit status (2: bad input, nothing written; 1: the run failed).
    Ctrl-C logs one line and raises KeyboardInterrupt again (the script exits 130)."""
    try:
        config, restart = _parse(argv)
    except DomainBedError as exc:
        print_errors(None, error_lines(exc))
        return 2
    return run_job(config, restart=restart)


def _script() -> int:
    code = exit_on_interrupt(main, message=None)
    if code == INTERRUPTED and not interrupt_reported:
        print("train: interrupted (Ctrl-C)", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(_script())
