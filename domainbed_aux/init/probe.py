"""The shared linear probe ``w_lp``: a classifier trained on the frozen pretrained featurizer.

One probe per (dataset, test envs, trial seed, pretrained featurizer, hparams space,
training settings), trained ONCE and reused by every run of every sweep that asks for it. It
is a run of algorithm ``LinearProbe`` with the default hparams of the sweep's space
(``hparams_seed 0``: "default hyperparameters" in the paper means the defaults of the space
the runs it initialises draw from, e.g. the mild space's frozen batch norm and batch size)
plus the sweep's ``--hparams`` overrides (which set the architecture), on the same train
envs and the same in/out splits as the target runs (the core's ``make_splits`` with the
trial seed), so the probe never sees a target run's validation data. As in the paper, it is
fitted on features extracted once from the frozen featurizer in eval mode (batch norm with
its running statistics, as in every run the probe initialises): see ``probe_fit``. Steps:
``steps`` when given (the recipe's ``linear_probe.steps``, the sweep's ``--lp_steps_total``,
else its ``--steps``), else the dataset's ``N_STEPS``.

Files under ``output_dir_lp``::

    phi_pt/<sha256[:16]>.safetensors   the pretrained featurizer (featurizer.* keys)
    runs/<key>/                        the probe's run directory (records, ``done``)
    <key>.safetensors                  the probe: classifier.* of the probe run's best
                                       ID-validation checkpoint, and featurizer.* (= phi_pt)
    <key>.safetensors.lock             flock'ed while the probe is trained

Two processes asking for the same probe at the same time train it once: the second waits on
the lock, then reuses the file (written atomically).
"""

import contextlib
import fcntl
import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import torch

from domainbed.errors import DomainBedError
from domainbed.lib.digests import verify_file, write_manifest
from domainbed.lib.weights import extract_state_dict, load_file, read_metadata, save_weights
from domainbed.training.config import TrainConfig, default_data_dir
from domainbed_aux.init.record import (InitRecord, pretrained_member, rebuild_hint,
                                       save_init_file)
from domainbed_aux.parts import FEATURIZER_PREFIX, add_prefix, split_parts
from domainbed.lib.digests import sha256_file
from domainbed_aux.pool.members import content_hash, featurizer_state_dict

log = logging.getLogger(__name__)

ALGORITHM = "LinearProbe"
PHI_PT_DIR = "phi_pt"
RUNS_DIR = "runs"
PHI_PT_SEED = 0  # a network without pretrained weights is this seed's random init


@dataclass
class LinearProbeSpec:
    """What identifies a linear probe (with ``featurizer_id``) and how to train it."""

    dataset: str
    test_envs: List[int]
    trial_seed: int
    data_dir: Optional[str] = None
    hparams: Dict[str, Any] = field(default_factory=dict)  # overrides of the defaults
    steps: Optional[int] = None
    checkpoint_freq: Optional[int] = None
    holdout_fraction: float = 0.2
    pretrained_featurizer: Optional[str] = None  # explicit phi_pt file, else the core's network
    hparams_space: str = "upstream"  # the space whose defaults the probe trains with

    def featurizer_id(self) -> Dict[str, Any]:
        """The identity of phi_pt without building it: a file's sha256, or how the core
        builds its network (dataset input shape + hparams overrides + seed)."""
        if self.pretrained_featurizer:
            if not os.path.isfile(self.pretrained_featurizer):
                raise DomainBedError(f"pretrained featurizer {self.pretrained_featurizer!r} does "
                                     "not exist; train or copy it first (--pretrained_featurizer)")
            return {"file_sha256": sha256_file(self.pretrained_featurizer)}
        from domainbed import datasets
        shape = datasets.get_dataset_class(self.dataset).INPUT_SHAPE
        return {"core_network": {"input_shape": list(shape), "hparams": self.hparams,
                                 "seed": PHI_PT_SEED}}

    def identity(self) -> Dict[str, Any]:
        # version 2: the probe is the run's best-ID-validation checkpoint (was: its last step)
        # version 3: fitted on features of the frozen featurizer in eval mode, with the
        # defaults of the sweep's hparams space (was: the training loop, upstream's space)
        return {"version": 3, "dataset": self.dataset,
                "test_envs": sorted(int(t) for t in self.test_envs),
                "trial_seed": int(self.trial_seed), "hparams": self.hparams,
                "hparams_space": self.hparams_space, "steps": self.steps,
                "checkpoint_freq": self.checkpoint_freq,
                "holdout_fraction": self.holdout_fraction, "featurizer": self.featurizer_id()}

    def key(self) -> str:
        """A readable, unique file stem for this probe."""
        digest = hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()
        envs = "-".join(str(t) for t in sorted(self.test_envs))
        return f"lp_{self.dataset}_test{envs}_trial{self.trial_seed}_{digest[:12]}"


@dataclass
class LinearProbeFile:
    """A probe on disk; ``trained`` says whether this call trained it (False: reused)."""

    path: str
    sha256: str
    trained: bool


def probe_path(spec: LinearProbeSpec, output_dir_lp: str) -> str:
    return os.path.join(os.path.abspath(output_dir_lp), spec.key() + ".safetensors")


@contextlib.contextmanager
def file_lock(path: str):
    """An exclusive ``flock`` on ``path`` (created if missing), held inside the block."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def pretrained_featurizer_state(spec: LinearProbeSpec) -> Dict[str, torch.Tensor]:
    """phi_pt as a featurizer state dict (no prefix): the explicit file, or the core's
    featurizer for the dataset built with default hparams + overrides under a fixed seed."""
    if spec.pretrained_featurizer:
        content, _ = load_file(spec.pretrained_featurizer, device="cpu")
        return featurizer_state_dict(extract_state_dict(content), strict=False,
                                     source=spec.pretrained_featurizer)
    from domainbed import datasets, hparams_registry, networks
    hparams = hparams_registry.default_hparams(ALGORITHM, spec.dataset, spec.hparams_space)
    hparams.update(spec.hparams)
    shape = datasets.get_dataset_class(spec.dataset).INPUT_SHAPE
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(PHI_PT_SEED)
        featurizer = networks.Featurizer(shape, hparams)
    return {k: v.detach().clone() for k, v in featurizer.state_dict().items()}


def phi_pt_location(state: Dict[str, torch.Tensor], output_dir_lp: str) -> Tuple[str, str]:
    """(path, content sha256) that :func:`write_phi_pt` gives ``state``; writes nothing."""
    digest = content_hash(state)
    path = os.path.join(os.path.abspath(output_dir_lp), PHI_PT_DIR, digest[:16] + ".safetensors")
    return path, digest


def write_phi_pt(state: Dict[str, torch.Tensor], output_dir_lp: str) -> Tuple[str, str]:
    """Store phi_pt (featurizer.* keys) by content, once; returns (path, content sha256)."""
    path, digest = phi_pt_location(state, output_dir_lp)
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        save_weights(path, add_prefix(state, FEATURIZER_PREFIX),
                     metadata={"phi_pt": {"content_sha256": digest}})
        write_manifest(path, rebuild_hint(path))
    return path, digest


def _train_args(spec: LinearProbeSpec, run_path: str, phi_pt_path: str) -> TrainConfig:
    """The probe run's training config (default hparams plus the spec's overrides)."""
    return TrainConfig(
        dataset=spec.dataset, algorithm=ALGORITHM, hparams_seed=0,
        hparams_space=spec.hparams_space,
        trial_seed=int(spec.trial_seed), seed=0, test_envs=[int(t) for t in spec.test_envs],
        output_dir=run_path, holdout_fraction=float(spec.holdout_fraction),
        init_from=phi_pt_path, init_part="featurizer",
        hparams=json.dumps(spec.hparams, sort_keys=True) if spec.hparams else None,
        steps=None if spec.steps is None else int(spec.steps),
        checkpoint_freq=None if spec.checkpoint_freq is None else int(spec.checkpoint_freq),
        data_dir=os.path.abspath(spec.data_dir or default_data_dir()))


def _train_and_write(spec: LinearProbeSpec, output_dir_lp: str, path: str) -> None:
    from domainbed_aux.init.probe_fit import fit_probe
    phi_pt = pretrained_featurizer_state(spec)
    phi_pt_path, phi_pt_sha = write_phi_pt(phi_pt, output_dir_lp)
    run_path = os.path.join(os.path.abspath(output_dir_lp), RUNS_DIR, spec.key())
    log.info("linear probe: fitting %s in %s", spec.key(), run_path)
    # w_lp is the probe's best-ID-validation evaluation (the released code's network_best)
    fit = fit_probe(_train_args(spec, run_path, phi_pt_path), phi_pt)
    about = {"spec": asdict(spec), "key": spec.key(), "phi_pt_sha256": phi_pt_sha,
             "run_dir": run_path, "fitted_on": "features extracted once (eval mode)",
             "best_checkpoint": {"step": fit.best_record["step"],
                                 "id_val_acc": _id_val(fit.best_record)}}
    # the probe file is itself the init of every run that starts from (w_lp, phi_pt)
    record = InitRecord(pretrained_member(phi_pt_sha), spec.key())
    save_init_file(path, phi_pt, fit.classifier, record, linear_probe=about)


def _id_val(record: Dict[str, Any]) -> Optional[float]:
    accs = [v for k, v in record.items() if k.endswith("_out_acc") and v is not None]
    return sum(accs) / len(accs) if accs else None


def ensure_linear_probe(spec: LinearProbeSpec, output_dir_lp: str) -> LinearProbeFile:
    """The probe file for ``spec``, trained now if missing (once across processes)."""
    path = probe_path(spec, output_dir_lp)
    with file_lock(path + ".lock"):
        trained = False
        if not os.path.exists(path):
            _train_and_write(spec, output_dir_lp, path)
            trained = True
        else:
            log.info("linear probe: reusing %s", path)
        return LinearProbeFile(path, verify_file(path) or sha256_file(path), trained)


def read_linear_probe(path: str) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor],
                                          Dict[str, Any]]:
    """``(featurizer, classifier, metadata)`` of a probe file (prefixes stripped)."""
    if not os.path.isfile(path):
        raise DomainBedError(f"linear probe {path} does not exist; train it first "
                             "(ensure_linear_probe or sweep launch --output_dir_lp)")
    verify_file(path)
    content, metadata = load_file(path, device="cpu")
    state = extract_state_dict(content)
    featurizer, classifier = split_parts(state)
    if not classifier or not featurizer:
        raise DomainBedError(f"{path} is not a linear probe file (it needs classifier.* and "
                             "featurizer.* weights); delete it and train it again")
    return featurizer, classifier, metadata


def probe_metadata(path: str) -> Dict[str, Any]:
    return read_metadata(path).get("linear_probe", {})
