"""The training loop of one run directory, resumable after a kill or a preemption."""

import json
import logging
import os
import resource
import time
import traceback
from typing import Any, Dict, List, Optional

import torch

from domainbed import algorithms, datasets, hparams_registry
from domainbed.errors import DomainBedError, one_line
from domainbed.lib import misc, run_dir
from domainbed.lib.device import get_device
from domainbed.lib.fast_data_loader import infinite_loader
from domainbed.lib.weights import save_weights
from domainbed.training.checkpoint import load_checkpoint, save_checkpoint
from domainbed.training.init_from import apply_init, init_info
from domainbed.training.evaluation_plan import id_val_accuracy
from domainbed.training.precision import TrainingArithmetic, set_cudnn_benchmark
from domainbed.training.scoring import SplitScorer
from domainbed.training.splits import make_splits

log = logging.getLogger("domainbed.train")


class RunLocked(DomainBedError):
    """Another process is training in the same run directory."""


def resolve_hparams(args) -> dict:
    hparams = hparams_registry.get_hparams(args.algorithm, args.dataset, args.hparams_seed,
                                           args.trial_seed, args.hparams_space)
    if args.hparams:
        try:
            overrides = json.loads(args.hparams)
        except ValueError as exc:
            raise DomainBedError(f"--hparams is not valid JSON ({exc}); example: "
                                 "--hparams '{\"lr\": 1e-4}'") from None
        if not isinstance(overrides, dict):
            raise DomainBedError("--hparams must be a JSON object, e.g. '{\"lr\": 1e-4}'")
        hparams_registry.check_hparams_keys(args.algorithm, args.dataset, overrides,
                                            space=args.hparams_space)
        hparams.update(overrides)
    return hparams


def _check_names(args) -> None:
    for kind, getter in (("dataset", datasets.get_dataset_class),
                         ("algorithm", algorithms.get_algorithm_class)):
        try:
            getter(getattr(args, kind))
        except KeyError as exc:
            raise DomainBedError(f"{exc.args[0]} (--{kind})") from None


def _test_envs(args, n_envs: int) -> List[int]:
    test_envs = [] if list(args.test_envs) == [-1] else list(args.test_envs)
    for env in test_envs:
        if not 0 <= env < n_envs:
            raise DomainBedError(
                f"--test_envs {env} is out of range: {args.dataset} has {n_envs} environments "
                f"(0..{n_envs - 1}); use -1 for no test environment")
    return test_envs


def _peak_mem_gb(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 1024 ** 3
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2


def _truncate_records(path: str, n_records: int) -> None:
    """Keep the first ``n_records`` complete lines of results.jsonl (drop later ones)."""
    if not os.path.exists(path):
        if n_records:
            raise DomainBedError(f"{path} is missing but the checkpoint expects {n_records} "
                                 "records; delete the run directory to start again")
        return
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    complete = [line for line in lines[:-1]]  # the last piece has no newline: incomplete
    if len(complete) < n_records:
        raise DomainBedError(f"{path} holds {len(complete)} records but the checkpoint expects "
                             f"{n_records}; delete the run directory to start again")
    misc.atomic_write_bytes(path, b"".join(line + b"\n" for line in complete[:n_records]))


def _append_record(path: str, record: Dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _log_record(record: Dict[str, Any], last_keys: Optional[List[str]]) -> List[str]:
    """Log the record as a table row (with a header when the keys changed)."""
    keys = sorted(record)
    if keys != last_keys:
        log.info(misc.print_row(keys, colwidth=12))
    log.info(misc.print_row([record[k] for k in keys], colwidth=12))
    return keys


def _with_run_info(record: Dict[str, Any], hparams, args_record, init) -> Dict[str, Any]:
    record = dict(record, hparams=hparams, args=args_record)
    if init is not None:
        record["init"] = init
    return record


def _model_metadata(args, dataset, hparams, n_train_domains: int) -> dict:
    return {"args": vars(args), "model_input_shape": list(dataset.input_shape),
            "model_num_classes": dataset.num_classes, "model_num_domains": n_train_domains,
            "model_hparams": hparams}


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


def train(args) -> Optional[str]:
    """Run (or resume, or skip when done) the training described by ``args``.

    Returns the run directory. Raises DomainBedError on bad input.
    """
    out_dir = args.output_dir
    if os.path.exists(os.path.join(out_dir, run_dir.DONE)):
        log.info("%s is already done; nothing to do", out_dir)
        return out_dir
    os.makedirs(out_dir, exist_ok=True)
    lock = run_dir.RunLock(out_dir)
    if not lock.acquire():
        raise RunLocked(f"another process is training in {out_dir}; wait for it or stop it")
    try:
        failed = os.path.join(out_dir, run_dir.FAILED)
        if os.path.exists(failed):
            os.unlink(failed)
        _train_locked(args)
    except BaseException as exc:
        if not isinstance(exc, KeyboardInterrupt):
            short = one_line(exc)
            misc.atomic_write_text(os.path.join(out_dir, run_dir.FAILED), json.dumps(
                {"error": f"{type(exc).__name__}: {short}",
                 "traceback": traceback.format_exc()}, indent=2))
        raise
    finally:
        lock.release()
    return out_dir


def _train_locked(args) -> None:
    out_dir = args.output_dir
    _check_names(args)
    device = get_device()
    hparams = resolve_hparams(args)
    misc.seed_everything(args.seed)
    set_cudnn_benchmark(getattr(args, "cudnn_benchmark", False))
    log.info("Args: %s", json.dumps(vars(args), sort_keys=True))
    log.info("HParams: %s", json.dumps(hparams, sort_keys=True))
    log.info("Device: %s", device)

    dataset_class = datasets.get_dataset_class(args.dataset)
    n_envs = len(dataset_class.environments(args.data_dir))
    test_envs = _test_envs(args, n_envs)
    dataset = dataset_class(args.data_dir, test_envs, hparams)
    if args.task == "domain_adaptation" and not args.uda_holdout_fraction:
        raise DomainBedError("--task domain_adaptation needs --uda_holdout_fraction > 0")
    uda_fraction = args.uda_holdout_fraction if args.task == "domain_adaptation" else 0.0
    splits = make_splits(dataset, test_envs, args.trial_seed, args.holdout_fraction,
                         uda_fraction, hparams["class_balanced"], args.augmented_validation)
    train_envs = [i for i in range(len(dataset)) if i not in test_envs]
    if not train_envs:
        raise DomainBedError("every environment is a test environment: nothing to train on")

    algorithm_class = algorithms.get_algorithm_class(args.algorithm)
    algorithm = algorithm_class(dataset.input_shape, dataset.num_classes, len(train_envs),
                                hparams)
    algorithm.to(device)
    arithmetic = TrainingArithmetic(getattr(args, "precision", "fp32"), device,
                                    getattr(args, "channels_last", False))
    arithmetic.prepare(algorithm)

    init = init_info(args.init_from) if args.init_from else None
    checkpoint_path = os.path.join(out_dir, run_dir.CHECKPOINT)
    results_path = os.path.join(out_dir, run_dir.RESULTS)
    metadata = _model_metadata(args, dataset, hparams, len(train_envs))
    best = BestCheckpoint(os.path.join(out_dir, run_dir.MODEL_BEST), metadata,
                          enabled=algorithm.BEST_CHECKPOINT and not args.skip_model_save)
    start_step, n_records = 0, 0
    if os.path.exists(checkpoint_path):
        state = load_checkpoint(checkpoint_path, algorithm, device)
        start_step, n_records = state["step"], state["n_records"]
        best.load(state.get("extra") or {})
        arithmetic.load(state.get("extra") or {})
        _truncate_records(results_path, n_records)
        log.info("resuming from step %d (%d records kept)", start_step, n_records)
    else:
        if os.path.exists(results_path):  # records of an attempt that never checkpointed
            os.unlink(results_path)
        if args.init_from:
            loaded = apply_init(algorithm, args.init_from, args.init_part, device)
            log.info("initialised %s from %s", " and ".join(loaded), args.init_from)
        hook = getattr(algorithm, "after_init", None)
        if hook is not None:  # e.g. freeze the featurizer for the first lp_steps
            hook(init)

    n_steps = args.steps if args.steps is not None else dataset.N_STEPS
    checkpoint_freq = args.checkpoint_freq or dataset.CHECKPOINT_FREQ
    n_workers = min(dataset.N_WORKERS, args.num_workers if args.num_workers is not None
                    else dataset.N_WORKERS)
    batch_size = hparams["batch_size"]
    train_iters = [infinite_loader(splits.in_splits[i][0], batch_size, args.seed, i, start_step,
                                   n_workers, splits.in_splits[i][1]) for i in train_envs]
    uda_iters = [infinite_loader(split, batch_size, args.seed, 1000 + k, start_step, n_workers,
                                 w) for k, (split, w) in enumerate(splits.uda_splits)]
    scorer = SplitScorer(splits, len(dataset), test_envs, n_workers, device,
                         getattr(args, "full_evaluation", False))
    steps_per_epoch = min(len(splits.in_splits[i][0]) / batch_size for i in train_envs)

    args_record = vars(args)
    step_vals: Dict[str, List[float]] = {}
    last_results_keys = None
    progress = run_dir.ProgressFile(out_dir, n_steps)
    stop_hook = getattr(algorithm, "stop_training", None)  # e.g. SWAD once its valley is over
    last_step = start_step - 1
    for step in range(start_step, n_steps):
        if stop_hook is not None and stop_hook():
            break
        last_step = step
        step_start = time.time()
        minibatches = [(arithmetic.batch(x.to(device)), y.to(device))
                       for x, y in (next(it) for it in train_iters)]
        unlabeled = [arithmetic.batch(next(it)[0].to(device)) for it in uda_iters] or None
        with arithmetic.autocast():
            values = algorithm.update(minibatches, unlabeled)
        step_vals.setdefault("step_time", []).append(time.time() - step_start)
        for key, value in values.items():
            step_vals.setdefault(key, []).append(value)
        progress.update(step + 1)

        if step % checkpoint_freq == 0 or step == n_steps - 1:
            record = {"step": step, "epoch": step / steps_per_epoch}
            for key, vals in step_vals.items():
                record[key] = sum(vals) / len(vals)
            accs, complete = scorer.evaluate(
                algorithm, step, n_steps,
                lambda a: best.is_improvement(id_val_accuracy(a, train_envs)))
            record.update(accs)
            record["evaluation"] = "full" if complete else "selection"
            hook = getattr(algorithm, "on_evaluation", None)
            if hook is not None:  # e.g. SWAD's selector needs the validation loss
                record.update(hook(record, scorer.val_loaders()) or {})
            record["mem_gb"] = _peak_mem_gb(device)
            last_results_keys = _log_record(record, last_results_keys)
            _append_record(results_path, _with_run_info(record, hparams, args_record, init))
            n_records += 1
            step_vals = {}
            best.observe(algorithm, record, train_envs)
            if args.save_model_every_checkpoint and not args.skip_model_save:
                save_weights(os.path.join(out_dir, f"model_step{step}.safetensors"),
                             algorithm.state_dict(), metadata)
            save_checkpoint(checkpoint_path, algorithm, step + 1, n_records,
                            extra=dict(best.state(), **arithmetic.state()))
    if last_step < n_steps - 1:
        log.info("%s stopped training after step %d of %d", args.algorithm, last_step, n_steps)

    hook = getattr(algorithm, "final_evaluation", None)
    final = hook() if hook is not None and n_records else None
    if final is not None:  # e.g. SWAD: score the averaged window once more
        record = {"step": last_step, "epoch": last_step / steps_per_epoch,
                  "final_average": True}
        if last_step < n_steps - 1:
            record["stopped_early"] = True
        record.update(scorer.score_all(algorithm))
        record["evaluation"] = "full"
        record.update(final)
        record["mem_gb"] = _peak_mem_gb(device)
        log.info("final averaged model:")
        _log_record(record, None)
        _append_record(results_path, _with_run_info(record, hparams, args_record, init))
    if not args.skip_model_save:
        save_weights(os.path.join(out_dir, run_dir.MODEL), algorithm.state_dict(), metadata)
    misc.atomic_write_text(os.path.join(out_dir, run_dir.DONE), "done\n")
    if os.path.exists(checkpoint_path) and not args.keep_checkpoint:
        os.unlink(checkpoint_path)
    log.info("done: %s", out_dir)
