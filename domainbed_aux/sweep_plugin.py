"""Sweep options of the ratatouille family, through the core's sweep hooks.

Flags (the paper code's words): ``--aux_dir AUX`` (auxiliary sweeps, one sub-folder per
dataset as ``AUX/<Dataset>_notest/<run>/``, or a pool folder / ``pool.json``; ``none`` or
empty = no pool), ``--output_dir_lp LP`` (where shared linear probes and composed init
files live; default ``<output_dir>/linear_probe`` when a pool is used), ``--fusing_range r``
(>= 0 switches to fusing), ``--pretrained_featurizer FILE`` (explicit phi_pt),
``--aux_pool_kind standard|robust`` (robust: pool of moving-average "MA" aux runs),
``--lp_steps_total N`` and ``--lp_checkpoint_freq N`` (steps and evaluation frequency of the
linear probe) and ``--hparams_space`` (upstream|mild).

Default algorithm when ``--algorithms`` is not given: ``Fusing`` with ``--fusing_range``
>= 0, else ``Ratatouille`` with ``--aux_dir``, else ``ERM`` with ``--output_dir_lp``.

Once ``--aux_dir`` or ``--output_dir_lp`` is given, every target job gets ``--init_from``
(without either flag, jobs train from the core's initialisation; LPFT always gets the probe):
InterTraining / Ratatouille / Fusing a composed file ``(w_lp, pool member or fused
featurizer)``; every other algorithm (ERM, LPFT, CORAL, MA, SWAD, ...) the shared linear
probe file ``(w_lp, phi_pt)`` itself, whatever other flags the sweep passes. Auxiliary jobs
(``--test_env -1``) given ``--output_dir_lp`` start from a linear probe of phi_pt on their
own dataset (every domain); without it, with ``--pretrained_featurizer``, from that
featurizer and a fresh head. File names are fixed when the jobs are listed; the
before-launch hook trains the missing linear probes and writes the files.

The pool of a sweep is built once into ``<output_dir>/aux_pool/<Dataset>[_robust]/`` (the
target dataset excluded by recorded identity) and reused afterwards; job ids do not depend
on paths, so use a new ``--output_dir`` for another pool.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Dict, List, Optional, Tuple

from domainbed.algorithms.registry import init_kind as declared_init
from domainbed.lib.options import option
from domainbed.sweep import hooks
from domainbed.sweep.validate import register_sweep_rule
from domainbed.validation import Rule

if TYPE_CHECKING:  # the modules below import torch: loaded when a job needs them
    from domainbed_aux.init.probe import LinearProbeSpec
    from domainbed_aux.pool.members import AuxPool

log = logging.getLogger(__name__)

# the defaults of --algorithms (the paper code's): with --fusing_range r >= 0, with
# --aux_dir, with --output_dir_lp
DEFAULT_FUSING, DEFAULT_RECYCLING, DEFAULT_PROBED = "Fusing", "Ratatouille", "ERM"
ROBUST_AUX_ALGORITHM = "MA"  # --aux_pool_kind robust: the pool of the MA auxiliary runs
POOL_KINDS = ("standard", "robust")
NO_POOL = ("", "none", "None")


class _DefaultAlgorithms(list):
    """The algorithm list this plugin chose (the user gave no --algorithms)."""


def _default_algorithms(ns: argparse.Namespace) -> Optional[List[str]]:
    if getattr(ns, "fusing_range", -1) is not None and getattr(ns, "fusing_range", -1) >= 0:
        return [DEFAULT_FUSING]
    if getattr(ns, "aux_dir", None) not in (None,) + NO_POOL:
        return [DEFAULT_RECYCLING]
    if getattr(ns, "output_dir_lp", None):
        return [DEFAULT_PROBED]
    return None


class _StoreAndDefault(argparse.Action):
    """Stores the value, then sets --algorithms to the recipe's default unless given."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        current = getattr(namespace, "algorithms", None)
        if current is None or isinstance(current, _DefaultAlgorithms):
            default = _default_algorithms(namespace)
            if default is not None:
                namespace.algorithms = _DefaultAlgorithms(default)


# the ranges of the options below, checked with the core's (domainbed.sweep.validate)
register_sweep_rule("lp_steps_total", Rule("int", minimum=1, nullable=True, hide_null=True))
register_sweep_rule("fusing_range", Rule("number", fix="r >= 0 switches to fusing; -1: off"))


@hooks.register_sweep_options("ratatouille")
@dataclass
class RatatouilleOptions:
    """The sweep options of the ratatouille family (see the module docstring)."""

    GROUP: ClassVar[str] = "model ratatouille (domainbed_aux)"

    aux_dir: Optional[str] = option(
        None, action=_StoreAndDefault,
        help="auxiliary sweeps (AUX/<Dataset>_notest/<run>/) or a pool folder/pool.json; "
             "'none' = no pool")
    output_dir_lp: Optional[str] = option(
        None, action=_StoreAndDefault,
        help="where the shared linear probes are trained (once) and reused")
    fusing_range: float = option(-1.0, action=_StoreAndDefault,
                                 help="r >= 0 switches to fusing: lambda = softmax(r u)")
    pretrained_featurizer: Optional[str] = option(
        None, metavar="FILE",
        help="explicit pretrained featurizer phi_pt (default: the core's network for the "
             "dataset)")
    aux_pool_kind: str = option(
        "standard", choices=POOL_KINDS,
        help="robust: build the pool from moving-average (MA) auxiliary runs")
    lp_steps_total: Optional[int] = option(
        None, help="training steps of the linear probe (default: --steps, else the dataset's "
                   "N_STEPS)")
    lp_checkpoint_freq: Optional[int] = option(
        None, help="evaluation frequency of the linear probe (default: --checkpoint_freq, else "
                   "the dataset's CHECKPOINT_FREQ)")
    # shared: when the core or another extension declares --hparams_space, that flag is read
    hparams_space: Optional[str] = option(
        None, shared=True,
        help="hparams distributions of every job: upstream or mild (the paper's Table 3); "
             "default: the training default")


# ------------------------------------------------------------------------ planning

def uses_pool(sweep_args) -> bool:
    return getattr(sweep_args, "aux_dir", None) not in (None,) + NO_POOL


def lp_root(sweep_args) -> str:
    if getattr(sweep_args, "output_dir_lp", None):
        return os.path.abspath(sweep_args.output_dir_lp)
    return os.path.join(os.path.abspath(sweep_args.output_dir), "linear_probe")


def engaged(sweep_args) -> bool:
    """Whether the sweep asked for the recipe (--aux_dir or --output_dir_lp)."""
    return uses_pool(sweep_args) or bool(getattr(sweep_args, "output_dir_lp", None))


def init_kind(train_args: Dict[str, Any], sweep_args) -> Optional[str]:
    """Where a job starts (SPEC section 7), or None for the core's own initialisation.

    - ``"probe"``: ``(w_lp, phi_pt)``, the shared linear probe file itself. Every target job
      of an algorithm that does not recycle (ERM, LPFT, CORAL, MA, SWAD, any other) once the
      sweep gives ``--aux_dir`` or ``--output_dir_lp``; an algorithm that declares
      ``init="probe"`` (LPFT) always; auxiliary jobs (``--test_envs -1``) given
      ``--output_dir_lp`` (a probe of phi_pt on their own dataset, every domain, as the
      paper's aux stage).
    - ``"pool"``: the algorithms that declare ``init="pool"`` or ``"fused"`` (InterTraining,
      Ratatouille, Fusing) in such a sweep: a member of the pool (or a fused featurizer)
      with the probe, composed into one file.
    """
    if list(train_args.get("test_envs") or []) == [-1]:
        return "probe" if getattr(sweep_args, "output_dir_lp", None) else None
    declared = declared_init(train_args["algorithm"])
    if declared == "probe":
        return "probe"  # e.g. LP-FT: always from the shared linear probe
    if not engaged(sweep_args):
        return None
    return "pool" if declared in ("pool", "fused") else "probe"


def needs_init(train_args: Dict[str, Any], sweep_args) -> bool:
    """Whether this job starts from a linear probe (see ``init_kind``)."""
    return init_kind(train_args, sweep_args) is not None


def _cache(sweep_args) -> Dict[str, Any]:
    cache = getattr(sweep_args, "_ratatouille_cache", None)
    if cache is None:
        cache = {"pools": {}, "specs": {}, "requests": {}}
        setattr(sweep_args, "_ratatouille_cache", cache)
    return cache


def _select_runs(aux_dir: str, kind: str) -> List[str]:
    """Finished-or-not run dirs of ``aux_dir`` whose algorithm fits the pool kind."""
    from domainbed_aux.pool.members import PoolError
    from domainbed_aux.pool.runs import find_run_dirs, read_run_record
    runs = []
    for run in find_run_dirs([aux_dir]):
        algorithm = (read_run_record(run).get("args") or {}).get("algorithm")
        if (algorithm == ROBUST_AUX_ALGORITHM) == (kind == "robust"):
            runs.append(run)
    if not runs:
        which = f"algorithm {ROBUST_AUX_ALGORITHM}" if kind == "robust" else \
            f"an algorithm other than {ROBUST_AUX_ALGORITHM}"
        raise PoolError(f"no auxiliary run of {which} under {aux_dir!r} "
                        f"(--aux_pool_kind {kind}); train the auxiliary sweeps first")
    return runs


def _pool_root(sweep_args, dataset: str) -> str:
    suffix = "_robust" if getattr(sweep_args, "aux_pool_kind", "standard") == "robust" else ""
    return os.path.join(os.path.abspath(sweep_args.output_dir), "aux_pool", dataset + suffix)


def get_pool(sweep_args, dataset: str, verify: bool = False,
             build: bool = False) -> Optional[AuxPool]:
    """The pool of target ``dataset``: ``--aux_dir`` itself when it is a pool, else the
    sweep's pool folder; loaded when it exists, else planned (the pool ``build`` would
    write, nothing written) or, with ``build``, built from the runs of ``--aux_dir``."""
    from domainbed_aux.pool import build as pool_build
    from domainbed_aux.pool.load import load_pool
    from domainbed_aux.pool.members import MANIFEST
    if not uses_pool(sweep_args):
        return None
    cache = _cache(sweep_args)["pools"]
    if (dataset, verify) in cache:
        return cache[(dataset, verify)]
    aux_dir = sweep_args.aux_dir
    kind = getattr(sweep_args, "aux_pool_kind", "standard")
    root = _pool_root(sweep_args, dataset)
    if os.path.isfile(aux_dir) or os.path.isfile(os.path.join(aux_dir, MANIFEST)):
        pool = load_pool(aux_dir, target_dataset=dataset, verify=verify)
    elif os.path.isfile(os.path.join(root, MANIFEST)):
        pool = load_pool(root, target_dataset=dataset, verify=verify)
    elif build:
        log.info("building the auxiliary pool of %s in %s", dataset, root)
        pool = pool_build.build_pool(_select_runs(aux_dir, kind), root, exclude_dataset=dataset,
                                     pretrained_file=sweep_args.pretrained_featurizer)
    else:  # not built yet: what building it will give, so that listing writes nothing
        pool = pool_build.plan_pool(_select_runs(aux_dir, kind), root, exclude_dataset=dataset,
                                    pretrained_file=sweep_args.pretrained_featurizer)
    cache[(dataset, verify)] = pool
    return pool


def ensure_pool(sweep_args, dataset: str) -> AuxPool:
    """The pool of target ``dataset``, built now if needed and verified (the recipe's pool
    stage; a plain ``sweep launch`` builds it before launching)."""
    return get_pool(sweep_args, dataset, verify=True, build=True)


def _hparams_overrides(sweep_args) -> Dict[str, Any]:
    return json.loads(sweep_args.hparams) if getattr(sweep_args, "hparams", None) else {}


def _space(train_args: Dict[str, Any], sweep_args) -> str:
    """The hparams space of the sweep's jobs: the probe trains with its defaults."""
    return (train_args.get("hparams_space") or getattr(sweep_args, "hparams_space", None)
            or "upstream")


def probe_spec(train_args: Dict[str, Any], sweep_args) -> LinearProbeSpec:
    from domainbed_aux.init.probe import LinearProbeSpec
    key = (train_args["dataset"], tuple(train_args["test_envs"]), train_args["trial_seed"])
    specs = _cache(sweep_args)["specs"]
    if key not in specs:
        steps = sweep_args.lp_steps_total if sweep_args.lp_steps_total is not None \
            else sweep_args.steps
        specs[key] = LinearProbeSpec(
            dataset=key[0], test_envs=list(key[1]), trial_seed=key[2],
            data_dir=train_args.get("data_dir") or sweep_args.data_dir,  # folder:NAME=PATH
            hparams=_hparams_overrides(sweep_args), steps=steps,
            checkpoint_freq=(getattr(sweep_args, "lp_checkpoint_freq", None)
                             or sweep_args.checkpoint_freq),
            holdout_fraction=train_args["holdout_fraction"],
            pretrained_featurizer=sweep_args.pretrained_featurizer,
            hparams_space=_space(train_args, sweep_args))
    return specs[key]


def _request(train_args: Dict[str, Any], sweep_args):
    from domainbed_aux.init.choice import DEFAULT_FUSING_RANGE
    from domainbed_aux.init.files import plan_init
    from domainbed_aux.init.probe import probe_path
    spec = probe_spec(train_args, sweep_args)
    pool = get_pool(sweep_args, train_args["dataset"])
    fusing = declared_init(train_args["algorithm"]) == "fused"
    r = sweep_args.fusing_range if sweep_args.fusing_range >= 0 else DEFAULT_FUSING_RANGE
    request = plan_init(pool, spec.key(), probe_path(spec, lp_root(sweep_args)),
                        train_args["hparams_seed"], train_args["trial_seed"], fusing=fusing,
                        fusing_range=r, robust=sweep_args.aux_pool_kind == "robust")
    return spec, request


@hooks.register_job_transformer("ratatouille")
def transform_job(train_args: Dict[str, Any], sweep_args) -> Dict[str, Any]:
    """Add ``init_from`` (and ``hparams_space``) to the jobs that need them."""
    if getattr(sweep_args, "hparams_space", None) and "hparams_space" not in train_args:
        train_args["hparams_space"] = sweep_args.hparams_space
    kind = init_kind(train_args, sweep_args)
    if getattr(sweep_args, "mode", "launch") == "ids":
        # status / delete_incomplete: init files are absolute paths, which job ids never
        # hash, so nothing is planned (no pool, no probe, no file, no torch)
        if kind is None and getattr(sweep_args, "pretrained_featurizer", None) \
                and not train_args.get("init_from"):
            train_args["init_part"] = "featurizer"
        return train_args
    if kind == "probe":  # (w_lp, phi_pt): the probe file is itself the init file
        from domainbed_aux.init.probe import probe_path
        spec = probe_spec(train_args, sweep_args)
        path = probe_path(spec, lp_root(sweep_args))
        _cache(sweep_args)["requests"][path] = (spec, None, train_args["dataset"])
        train_args["init_from"] = path
    elif kind == "pool":
        from domainbed_aux.init.files import init_path
        spec, request = _request(train_args, sweep_args)
        path = init_path(request, lp_root(sweep_args))
        _cache(sweep_args)["requests"][path] = (spec, request, train_args["dataset"])
        train_args["init_from"] = path
    elif getattr(sweep_args, "pretrained_featurizer", None) and not train_args.get("init_from"):
        train_args["init_from"] = normalised_phi_pt(sweep_args)
        train_args["init_part"] = "featurizer"
    return train_args


def normalised_phi_pt(sweep_args, write: bool = False) -> str:
    """--pretrained_featurizer rewritten with ``featurizer.*`` keys (whatever its layout:
    featurizer-only, or a whole model) under ``<output_dir>/phi_pt/``: its path (listing
    writes nothing), written with ``write``. A file that does not exist yet (a recipe's
    pretrain run) is passed as is."""
    cache = _cache(sweep_args)
    if "phi_pt" not in cache:
        from domainbed.lib.weights import extract_state_dict, load_file
        from domainbed_aux.pool.members import featurizer_state_dict
        source = os.path.abspath(sweep_args.pretrained_featurizer)
        if not os.path.exists(source):  # made by an earlier recipe stage: a whole model
            log.info("--pretrained_featurizer %s does not exist yet; used as is", source)
            cache["phi_pt"] = (source, None)
            return source
        content, _ = load_file(source, device="cpu")
        state = featurizer_state_dict(extract_state_dict(content), strict=False, source=source)
        cache["phi_pt"] = (None, state)
    path, state = cache["phi_pt"]
    if state is None:
        return path
    from domainbed_aux.init.probe import phi_pt_location, write_phi_pt
    folder = os.path.abspath(sweep_args.output_dir)
    if write:
        return write_phi_pt(state, folder)[0]
    return phi_pt_location(state, folder)[0]


@hooks.register_before_launch("ratatouille")
def prepare_inits(jobs, sweep_args) -> List[str]:
    """Build or verify pools, train missing linear probes, write phi_pt and the init files
    the jobs use (the core does not call it for launchers that only list, e.g. dummy)."""
    from domainbed_aux.init.files import compose_init_file
    from domainbed_aux.init.probe import ensure_linear_probe, probe_path
    requests = _cache(sweep_args)["requests"]
    for job in jobs:  # jobs listed from another spec object: plan their init files again
        if job.train_args.get("init_from") and job.train_args["init_from"] not in requests:
            transform_job(dict(job.train_args), sweep_args)
    wanted = {job.train_args.get("init_from") for job in jobs}
    written = []
    if getattr(sweep_args, "pretrained_featurizer", None):
        phi_pt = normalised_phi_pt(sweep_args)
        if phi_pt in wanted:
            written.append(normalised_phi_pt(sweep_args, write=True))
    probes: Dict[str, Tuple[str, bool]] = {}
    for path, (spec, request, dataset) in requests.items():
        if path not in wanted:
            continue
        probe_file = probe_path(spec, lp_root(sweep_args))
        if probe_file not in probes:
            probe = ensure_linear_probe(spec, lp_root(sweep_args))
            probes[probe_file] = (probe.sha256, probe.trained)
        if request is None:  # the probe is the init
            written.append(probe_file)
            continue
        pool = ensure_pool(sweep_args, dataset)
        written.append(compose_init_file(request, pool, lp_root(sweep_args),
                                         probes[probe_file][0]))
    if written:
        n_trained = sum(1 for _, trained in probes.values() if trained)
        log.info("ratatouille: %d linear probes (%d trained now), %d init files ready",
                 len(probes), n_trained, len(set(written)))
    return written

