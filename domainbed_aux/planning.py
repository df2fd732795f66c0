"""The init planner: which job of a sweep starts from what, and where its probe lives.

The paper's recipe starts target runs from a linear probe ``(w_lp, phi_pt)`` and, for the
recycling algorithms, from a member of the auxiliary pool (or a fused featurizer) with that
probe. ``InitOptions`` is what the planner reads of a sweep (typed); the functions below
are pure over it; ``InitPlanner`` holds the state of one plan run (the pools loaded or
planned, the probe specs, the init files the jobs were given) and is what the extension's
hooks (``domainbed_aux.hooks``) and the recipe's stages call.

Which init (SPEC section 7), once the sweep gives ``--aux_dir`` or ``--output_dir_lp``:
InterTraining / Ratatouille / Fusing a composed file ``(w_lp, pool member or fused
featurizer)``; every other algorithm (ERM, LPFT, CORAL, MA, SWAD, ...) the shared linear
probe file ``(w_lp, phi_pt)`` itself. LPFT always gets the probe. Auxiliary jobs
(``--test_envs -1``) given ``--output_dir_lp`` start from a linear probe of phi_pt on their
own dataset (every domain); without it, with ``--pretrained_featurizer``, from that
featurizer and a fresh head. File names are fixed when the jobs are listed (nothing is
written); ``prepare`` trains the missing linear probes and writes the files.

The pool of a sweep is built once into ``<output_dir>/aux_pool/<Dataset>[_robust]/`` (the
target dataset excluded by recorded identity) and reused afterwards. Torch-free until a
pool, a probe or a file is needed.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

from domainbed.algorithms.registry import init_kind as declared_init

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


@dataclass
class InitOptions:
    """What the planner reads of a sweep: the ratatouille options and the core's."""

    output_dir: Optional[str] = None  # the sweep folder (pools, default probe folder)
    aux_dir: Optional[str] = None
    output_dir_lp: Optional[str] = None
    fusing_range: float = -1.0
    pretrained_featurizer: Optional[str] = None
    aux_pool_kind: str = "standard"
    lp_steps_total: Optional[int] = None
    lp_checkpoint_freq: Optional[int] = None
    hparams_space: Optional[str] = None
    data_dir: Optional[str] = None
    steps: Optional[int] = None
    checkpoint_freq: Optional[int] = None
    hparams: Optional[str] = None  # JSON text of the sweep's hparam overrides
    mode: str = "launch"

    @classmethod
    def of(cls, spec: Any) -> "InitOptions":
        """The options of a ``SweepSpec`` (or any object with these attributes)."""
        values = {}
        for name in cls.__dataclass_fields__:
            value = getattr(spec, name, None)
            if value is not None:
                values[name] = value
        return cls(**values)


def default_algorithms(options: Any) -> Optional[List[str]]:
    """``--algorithms`` when the user gives none (the paper code's rule), else None."""
    fusing_range = getattr(options, "fusing_range", -1)
    if fusing_range is not None and fusing_range >= 0:
        return [DEFAULT_FUSING]
    if getattr(options, "aux_dir", None) not in (None,) + NO_POOL:
        return [DEFAULT_RECYCLING]
    if getattr(options, "output_dir_lp", None):
        return [DEFAULT_PROBED]
    return None


def uses_pool(options: InitOptions) -> bool:
    return options.aux_dir not in (None,) + NO_POOL


def engaged(options: InitOptions) -> bool:
    """Whether the sweep asked for the recipe (--aux_dir or --output_dir_lp)."""
    return uses_pool(options) or bool(options.output_dir_lp)


def lp_root(options: InitOptions) -> str:
    """Where the shared linear probes and the composed init files live."""
    if options.output_dir_lp:
        return os.path.abspath(options.output_dir_lp)
    return os.path.join(os.path.abspath(options.output_dir), "linear_probe")


def pool_root(options: InitOptions, dataset: str) -> str:
    suffix = "_robust" if options.aux_pool_kind == "robust" else ""
    return os.path.join(os.path.abspath(options.output_dir), "aux_pool", dataset + suffix)


def init_kind(train_args: Dict[str, Any], options: InitOptions) -> Optional[str]:
    """Where a job starts, or None for the core's own initialisation.

    - ``"probe"``: ``(w_lp, phi_pt)``, the shared linear probe file itself. Every target job
      of an algorithm that does not recycle once the sweep gives ``--aux_dir`` or
      ``--output_dir_lp``; an algorithm that declares ``init="probe"`` (LPFT) always;
      auxiliary jobs (``--test_envs -1``) given ``--output_dir_lp``.
    - ``"pool"``: the algorithms that declare ``init="pool"`` or ``"fused"`` (InterTraining,
      Ratatouille, Fusing) in such a sweep: a member of the pool (or a fused featurizer)
      with the probe, composed into one file.
    """
    if list(train_args.get("test_envs") or []) == [-1]:
        return "probe" if options.output_dir_lp else None
    declared = declared_init(train_args["algorithm"])
    if declared == "probe":
        return "probe"  # e.g. LP-FT: always from the shared linear probe
    if not engaged(options):
        return None
    return "pool" if declared in ("pool", "fused") else "probe"


def space(train_args: Dict[str, Any], options: InitOptions) -> str:
    """The hparams space of the sweep's jobs: the probe trains with its defaults."""
    return train_args.get("hparams_space") or options.hparams_space or "upstream"


def select_runs(aux_dir: str, kind: str) -> List[str]:
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


@dataclass
class InitPlanner:
    """The init plan of one sweep, with the caches of its plan run: pools (loaded or
    planned), probe specs, and the init file each job was given (what ``prepare`` writes).
    Get a sweep spec's planner with ``planner_of(spec)``."""

    options: InitOptions
    pools: Dict[Tuple[str, bool], Optional["AuxPool"]] = field(default_factory=dict)
    specs: Dict[Tuple[str, Tuple[int, ...], int], "LinearProbeSpec"] = \
        field(default_factory=dict)
    # init file -> (probe spec, composition request or None for the probe itself, dataset)
    requests: Dict[str, Tuple[Any, Any, str]] = field(default_factory=dict)
    phi_pt: Optional[Tuple[Optional[str], Any]] = None

    # ---------------------------------------------------------------- pools and probes

    def pool(self, dataset: str, verify: bool = False, build: bool = False
             ) -> Optional["AuxPool"]:
        """The pool of target ``dataset``: ``--aux_dir`` itself when it is a pool, else the
        sweep's pool folder; loaded when it exists, else planned (what ``build`` would
        write, nothing written) or, with ``build``, built from the runs of ``--aux_dir``."""
        from domainbed_aux.pool import build as pool_build
        from domainbed_aux.pool.load import load_pool
        from domainbed_aux.pool.members import MANIFEST
        options = self.options
        if not uses_pool(options):
            return None
        if (dataset, verify) in self.pools:
            return self.pools[(dataset, verify)]
        aux_dir, kind, root = options.aux_dir, options.aux_pool_kind, pool_root(options,
                                                                                dataset)
        if os.path.isfile(aux_dir) or os.path.isfile(os.path.join(aux_dir, MANIFEST)):
            pool = load_pool(aux_dir, target_dataset=dataset, verify=verify)
        elif os.path.isfile(os.path.join(root, MANIFEST)):
            pool = load_pool(root, target_dataset=dataset, verify=verify)
        elif build:
            log.info("building the auxiliary pool of %s in %s", dataset, root)
            pool = pool_build.build_pool(select_runs(aux_dir, kind), root,
                                         exclude_dataset=dataset,
                                         pretrained_file=options.pretrained_featurizer)
        else:  # not built yet: what building it will give, so that listing writes nothing
            pool = pool_build.plan_pool(select_runs(aux_dir, kind), root,
                                        exclude_dataset=dataset,
                                        pretrained_file=options.pretrained_featurizer)
        self.pools[(dataset, verify)] = pool
        return pool

    def ensure_pool(self, dataset: str) -> "AuxPool":
        """The pool of target ``dataset``, built now if needed and verified (the recipe's
        pool stage; a plain ``sweep launch`` builds it before launching)."""
        return self.pool(dataset, verify=True, build=True)

    def probe_spec(self, train_args: Dict[str, Any]) -> "LinearProbeSpec":
        """The linear probe a job starts from (one per dataset, test envs, trial seed)."""
        from domainbed_aux.init.probe import LinearProbeSpec
        options = self.options
        key = (train_args["dataset"], tuple(train_args["test_envs"]), train_args["trial_seed"])
        if key not in self.specs:
            steps = options.lp_steps_total if options.lp_steps_total is not None \
                else options.steps
            self.specs[key] = LinearProbeSpec(
                dataset=key[0], test_envs=list(key[1]), trial_seed=key[2],
                data_dir=train_args.get("data_dir") or options.data_dir,  # folder:NAME=PATH
                hparams=json.loads(options.hparams) if options.hparams else {}, steps=steps,
                checkpoint_freq=options.lp_checkpoint_freq or options.checkpoint_freq,
                holdout_fraction=train_args["holdout_fraction"],
                pretrained_featurizer=options.pretrained_featurizer,
                hparams_space=space(train_args, options))
        return self.specs[key]

    def _request(self, train_args: Dict[str, Any]):
        from domainbed_aux.init.choice import DEFAULT_FUSING_RANGE
        from domainbed_aux.init.files import plan_init
        from domainbed_aux.init.probe import probe_path
        options = self.options
        spec = self.probe_spec(train_args)
        pool = self.pool(train_args["dataset"])
        fusing = declared_init(train_args["algorithm"]) == "fused"
        r = options.fusing_range if options.fusing_range >= 0 else DEFAULT_FUSING_RANGE
        request = plan_init(pool, spec.key(), probe_path(spec, lp_root(options)),
                            train_args["hparams_seed"], train_args["trial_seed"],
                            fusing=fusing, fusing_range=r,
                            robust=options.aux_pool_kind == "robust")
        return spec, request

    # ---------------------------------------------------------------- jobs

    def plan_job(self, train_args: Dict[str, Any]) -> Dict[str, Any]:
        """The job's arguments with ``init_from`` (and ``hparams_space``) where it needs
        them; in ``ids`` mode (status, delete_incomplete) nothing is planned: init files
        are absolute paths, which job ids never hash."""
        options = self.options
        if options.hparams_space and "hparams_space" not in train_args:
            train_args["hparams_space"] = options.hparams_space
        kind = init_kind(train_args, options)
        if options.mode == "ids":  # no pool, no probe, no file, no torch
            if kind is None and options.pretrained_featurizer \
                    and not train_args.get("init_from"):
                train_args["init_part"] = "featurizer"
            return train_args
        if kind == "probe":  # (w_lp, phi_pt): the probe file is itself the init file
            from domainbed_aux.init.probe import probe_path
            spec = self.probe_spec(train_args)
            path = probe_path(spec, lp_root(options))
            self.requests[path] = (spec, None, train_args["dataset"])
            train_args["init_from"] = path
        elif kind == "pool":
            from domainbed_aux.init.files import init_path
            spec, request = self._request(train_args)
            path = init_path(request, lp_root(options))
            self.requests[path] = (spec, request, train_args["dataset"])
            train_args["init_from"] = path
        elif options.pretrained_featurizer and not train_args.get("init_from"):
            train_args["init_from"] = self.normalised_phi_pt()
            train_args["init_part"] = "featurizer"
        return train_args

    def normalised_phi_pt(self, write: bool = False) -> str:
        """--pretrained_featurizer rewritten with ``featurizer.*`` keys (whatever its
        layout: featurizer-only, or a whole model) under ``<output_dir>/phi_pt/``: its path
        (listing writes nothing), written with ``write``. A file that does not exist yet
        (a recipe's pretrain run) is passed as is."""
        if self.phi_pt is None:
            from domainbed.lib.weights import extract_state_dict, load_file
            from domainbed_aux.pool.members import featurizer_state_dict
            source = os.path.abspath(self.options.pretrained_featurizer)
            if not os.path.exists(source):  # made by an earlier recipe stage: a whole model
                log.info("--pretrained_featurizer %s does not exist yet; used as is", source)
                self.phi_pt = (source, None)
                return source
            content, _ = load_file(source, device="cpu")
            state = featurizer_state_dict(extract_state_dict(content), strict=False,
                                          source=source)
            self.phi_pt = (None, state)
        path, state = self.phi_pt
        if state is None:
            return path
        from domainbed_aux.init.probe import phi_pt_location, write_phi_pt
        folder = os.path.abspath(self.options.output_dir)
        if write:
            return write_phi_pt(state, folder)[0]
        return phi_pt_location(state, folder)[0]

    def prepare(self, jobs: Sequence[Any]) -> List[str]:
        """Build or verify pools, train missing linear probes, write phi_pt and the init
        files ``jobs`` use; returns the files written or verified."""
        from domainbed_aux.init.files import compose_init_file
        from domainbed_aux.init.probe import ensure_linear_probe, probe_path
        for job in jobs:  # jobs listed from another spec object: plan their init files again
            if job.train_args.get("init_from") and \
                    job.train_args["init_from"] not in self.requests:
                self.plan_job(dict(job.train_args))
        wanted = {job.train_args.get("init_from") for job in jobs}
        written = []
        if self.options.pretrained_featurizer:
            if self.normalised_phi_pt() in wanted:
                written.append(self.normalised_phi_pt(write=True))
        root = lp_root(self.options)
        probes: Dict[str, Tuple[str, bool]] = {}
        for path, (spec, request, dataset) in self.requests.items():
            if path not in wanted:
                continue
            probe_file = probe_path(spec, root)
            if probe_file not in probes:
                probe = ensure_linear_probe(spec, root)
                probes[probe_file] = (probe.sha256, probe.trained)
            if request is None:  # the probe is the init
                written.append(probe_file)
                continue
            pool = self.ensure_pool(dataset)
            written.append(compose_init_file(request, pool, root, probes[probe_file][0]))
        if written:
            n_trained = sum(1 for _, trained in probes.values() if trained)
            log.info("ratatouille: %d linear probes (%d trained now), %d init files ready",
                     len(probes), n_trained, len(set(written)))
        return written


_PLANNER = "_init_planner"  # the attribute of a sweep spec that holds its planner


def planner_of(spec: Any) -> InitPlanner:
    """The planner of a sweep spec: made once per spec object (a stage's spec, the spec
    of a command line) and kept with it, so that listing, preparing and launching its
    jobs share the pools and probes planned."""
    planner = spec.__dict__.get(_PLANNER) if hasattr(spec, "__dict__") else None
    if planner is None:
        planner = InitPlanner(InitOptions.of(spec))
        object.__setattr__(spec, _PLANNER, planner)
    return planner
