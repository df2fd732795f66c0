"""A declarative recipe: pretrain -> linear probes -> auxiliary pool sweeps -> target sweeps
-> report, run locally in order or submitted to SLURM with dependencies.

Linear probes of phi_pt come before the auxiliary sweeps: each auxiliary run starts from a
probe on its own dataset (every domain), each non-recycling target run from the target's
probe, as the paper's released code does.

Recipe file (JSON; see ``sweeps/ratatouille_paper.json`` and docs/ratatouille.md)::

    {"name": "paper", "data_dir": "data", "output_root": "ratatouille_out",
     "datasets": ["VLCS", ...],                   # target datasets
     "hparams": {...} | null,                      # overrides for every job
     "hparams_space": "mild",
     "steps": {"default": 5001, "DomainNet": 15001},
     "checkpoint_freq": {"default": null, "VLCS": 50},
     "pretrained_featurizer": null | FILE,
     "pretrain": null | {"dataset": D, "algorithm": "ERM", "steps": N, "hparams": {...}},
     "aux": {"datasets": null (= the targets), "algorithm": "ERM", "n_hparams": 4,
             "n_trials": 1},
     "linear_probe": {"steps": null},
     "target": {"algorithms": ["Ratatouille"], "n_hparams": 20, "n_trials": 3,
                "test_envs": null (= each one), "fusing_range": null},
     "report": {"module": "domainbed_aux.scripts.report", "args": [...]} | null,
     "train_extra": {"full_evaluation": true} | null}  # training flags of every job

Layout under ``output_root``: ``pretrain/``, ``aux/<Dataset>_notest/<run>/``, ``lp/``
(linear probes and init files), ``target/<Dataset>/test<k>/`` (one sweep per dataset and
test env, as the paper's code), ``report.txt``. With a pretrain stage, phi_pt is the
featurizer of its single run (``pretrain/<job>/model.safetensors``).
"""

import importlib.util
import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

from domainbed.errors import DomainBedError

log = logging.getLogger(__name__)

STAGES = ("pretrain", "linear_probe", "aux", "target", "report")
DEFAULT_REPORT_MODULE = "domainbed_aux.scripts.report"
DEFAULT_REPORT_ARGS = ["--input_dir", "{target_dirs}", "--output", "{output_root}/report.txt"]


class RecipeError(DomainBedError):
    """A recipe file that cannot be run as written."""


@dataclass
class Stage:
    """One stage: training sweeps (argv of ``domainbed.scripts.sweep`` without the command
    and launcher) or an in-process step (linear probes, report)."""

    name: str
    sweeps: List[List[str]] = field(default_factory=list)
    report_command: Optional[List[str]] = None

    @property
    def is_training(self) -> bool:
        return self.name in ("pretrain", "aux", "target")


def load_recipe(path: str, data_dir: Optional[str] = None,
                output_root: Optional[str] = None) -> Dict[str, Any]:
    """Read a recipe file; ``data_dir`` / ``output_root`` override the file's values."""
    try:
        with open(path, encoding="utf-8") as f:
            recipe = json.load(f)
    except (OSError, ValueError) as exc:
        raise RecipeError(f"cannot read recipe {path!r}: {exc}") from None
    if not isinstance(recipe, dict) or not recipe.get("datasets"):
        raise RecipeError(f"{path}: a recipe is a JSON object with a non-empty 'datasets' list")
    unknown = set(recipe) - {"name", "data_dir", "output_root", "datasets", "hparams",
                             "hparams_space", "steps", "checkpoint_freq",
                             "pretrained_featurizer", "pretrain", "aux", "linear_probe",
                             "target", "report", "comment", "train_extra"}
    if unknown:
        raise RecipeError(f"{path}: unknown recipe keys {sorted(unknown)}; see "
                          "docs/ratatouille.md for the format")
    if data_dir is not None:
        recipe["data_dir"] = data_dir
    if output_root is not None:
        recipe["output_root"] = output_root
    recipe.setdefault("output_root", "ratatouille_out")
    recipe.setdefault("data_dir", "data")
    return recipe


def _per_dataset(value: Any, dataset: str) -> Any:
    if isinstance(value, dict):
        return value.get(dataset, value.get("default"))
    return value


def _common(recipe: Dict[str, Any], dataset: str, hparams: Optional[dict] = None) -> List[str]:
    argv = ["--data_dir", recipe["data_dir"]]
    merged = dict(recipe.get("hparams") or {})
    merged.update(hparams or {})
    if merged:
        argv += ["--hparams", json.dumps(merged, sort_keys=True)]
    for key in ("steps", "checkpoint_freq"):
        value = _per_dataset(recipe.get(key), dataset)
        if value is not None:
            argv += [f"--{key}", str(value)]
    if recipe.get("train_extra"):  # training flags of every job, e.g. {"full_evaluation": true}
        argv += ["--train_extra", json.dumps(recipe["train_extra"], sort_keys=True)]
    return argv


def _root(recipe: Dict[str, Any], *parts: str) -> str:
    return os.path.join(os.path.abspath(recipe["output_root"]), *parts)


def pretrain_argv(recipe: Dict[str, Any]) -> Optional[List[str]]:
    spec = recipe.get("pretrain")
    if not spec:
        return None
    argv = ["--dataset", spec["dataset"], "--test_env", "-1", "--n_hparams", "1",
            "--n_trials", "1", "--algorithms", spec.get("algorithm", "ERM"),
            "--output_dir", _root(recipe, "pretrain")]
    argv += _common({**recipe, "steps": spec.get("steps", recipe.get("steps"))},
                    spec["dataset"], spec.get("hparams"))
    return argv


def pretrained_featurizer(recipe: Dict[str, Any]) -> Optional[str]:
    """phi_pt: the pretrain run's model, else the recipe's file, else None (core network)."""
    argv = pretrain_argv(recipe)
    if argv is None:
        path = recipe.get("pretrained_featurizer")
        return os.path.abspath(path) if path else None
    from domainbed.sweep.jobs import make_jobs
    (train_args,) = sweep_args_list(argv)
    (job,) = make_jobs([train_args], _root(recipe, "pretrain"))
    return os.path.join(job.output_dir, "model.safetensors")


def _phi_argv(recipe: Dict[str, Any]) -> List[str]:
    phi = pretrained_featurizer(recipe)
    return ["--pretrained_featurizer", phi] if phi else []


def aux_argvs(recipe: Dict[str, Any]) -> List[List[str]]:
    aux = recipe.get("aux") or {}
    argvs = []
    for dataset in aux.get("datasets") or recipe["datasets"]:
        argv = ["--dataset", dataset, "--test_env", "-1",
                "--n_hparams", str(aux.get("n_hparams", 4)),
                "--n_trials", str(aux.get("n_trials", 1)),
                "--algorithms", aux.get("algorithm", "ERM"),
                "--output_dir", _root(recipe, "aux", f"{dataset}_notest"),
                "--output_dir_lp", _root(recipe, "lp")]
        lp_steps = (recipe.get("linear_probe") or {}).get("steps")
        if lp_steps is not None:
            argv += ["--lp_steps_total", str(lp_steps)]
        if recipe.get("hparams_space"):
            argv += ["--hparams_space", recipe["hparams_space"]]
        argvs.append(argv + _common(recipe, dataset) + _phi_argv(recipe))
    return argvs


def _test_envs(recipe: Dict[str, Any], dataset: str) -> List[int]:
    wanted = _per_dataset((recipe.get("target") or {}).get("test_envs"), dataset)
    if wanted is not None:
        return [int(t) for t in (wanted if isinstance(wanted, list) else [wanted])]
    from domainbed import datasets
    return list(range(datasets.num_environments(dataset, recipe["data_dir"])))


def target_argvs(recipe: Dict[str, Any]) -> List[List[str]]:
    target = recipe.get("target") or {}
    algorithms = target.get("algorithms") or ["Ratatouille"]
    argvs = []
    for dataset in recipe["datasets"]:
        for env in _test_envs(recipe, dataset):
            argv = ["--dataset", dataset, "--test_env", str(env),
                    "--n_hparams", str(target.get("n_hparams", 20)),
                    "--n_trials", str(target.get("n_trials", 3)),
                    "--algorithms", *algorithms,
                    "--output_dir", _root(recipe, "target", dataset, f"test{env}"),
                    "--output_dir_lp", _root(recipe, "lp")]
            if recipe.get("aux", True) is not None:
                argv += ["--aux_dir", _root(recipe, "aux")]
            if target.get("fusing_range") is not None:
                argv += ["--fusing_range", str(target["fusing_range"])]
            if (recipe.get("aux") or {}).get("pool_kind"):
                argv += ["--aux_pool_kind", recipe["aux"]["pool_kind"]]
            lp_steps = (recipe.get("linear_probe") or {}).get("steps")
            if lp_steps is not None:
                argv += ["--lp_steps_total", str(lp_steps)]
            if recipe.get("hparams_space"):
                argv += ["--hparams_space", recipe["hparams_space"]]
            argvs.append(argv + _common(recipe, dataset) + _phi_argv(recipe))
    return argvs


def report_command(recipe: Dict[str, Any]) -> Optional[List[str]]:
    spec = recipe.get("report", {})
    if spec is None:
        return None
    module = spec.get("module", DEFAULT_REPORT_MODULE)
    names = {"output_root": os.path.abspath(recipe["output_root"]),
             "target_dirs": ",".join(_flag(a, "--output_dir") for a in target_argvs(recipe))}
    args = [a.format(**names) for a in spec.get("args", DEFAULT_REPORT_ARGS)]
    return [sys.executable, "-m", module] + args


def _flag(argv: Sequence[str], name: str) -> str:
    return argv[list(argv).index(name) + 1]


def stages(recipe: Dict[str, Any]) -> List[Stage]:
    """The recipe's stages, in order (a stage the recipe leaves out is absent)."""
    out = []
    pre = pretrain_argv(recipe)
    if pre is not None:
        out.append(Stage("pretrain", [pre]))
    auxes = aux_argvs(recipe) if recipe.get("aux", {}) is not None else []
    targets = target_argvs(recipe)
    out.append(Stage("linear_probe", auxes + targets))  # the probes both stages start from
    if auxes:
        out.append(Stage("aux", auxes))
    out.append(Stage("target", targets))
    command = report_command(recipe)
    if command is not None:
        out.append(Stage("report", report_command=command))
    return out


# --------------------------------------------------------------- job lists, counts

def parse_sweep(argv: Sequence[str], command: str = "launch"):
    from domainbed.sweep.options import build_parser
    return build_parser().parse_args([command, *argv])


def sweep_args_list(argv: Sequence[str]) -> List[Dict[str, Any]]:
    """The training arguments of a sweep BEFORE job transformers (no pool needed)."""
    from domainbed.sweep.options import train_args_list
    return train_args_list(parse_sweep(argv))


def probe_specs(argvs: Sequence[Sequence[str]]) -> list:
    """The distinct linear probes the target sweeps need."""
    from domainbed_aux import sweep_plugin
    specs = {}
    for argv in argvs:
        args = parse_sweep(argv)
        for train_args in sweep_args_list(argv):
            if sweep_plugin.needs_init(train_args, args):
                spec = sweep_plugin.probe_spec(train_args, args)
                specs[(sweep_plugin.lp_root(args), spec.key())] = (spec,
                                                                   sweep_plugin.lp_root(args))
    return list(specs.values())


def count_jobs(stage: Stage) -> int:
    """How many jobs the stage runs (probes: one per target dataset, test envs, trial)."""
    if stage.name == "linear_probe":
        from domainbed_aux import sweep_plugin
        keys = set()
        for argv in stage.sweeps:
            args = parse_sweep(argv)
            keys.update((sweep_plugin.lp_root(args), a["dataset"], tuple(a["test_envs"]),
                         a["trial_seed"]) for a in sweep_args_list(argv)
                        if sweep_plugin.needs_init(a, args))
        return len(keys)
    if stage.name == "report":
        return 1
    return sum(len(sweep_args_list(argv)) for argv in stage.sweeps)


def _sweep_details(stage: Stage) -> List[str]:
    """Per sweep: dataset, test env, algorithms, jobs, steps, hparams space and lp_steps."""
    from domainbed import hparams_registry
    out = []
    for argv in stage.sweeps:
        args = parse_sweep(argv)
        jobs = sweep_args_list(argv)
        space = getattr(args, "hparams_space", None) or "upstream"
        algorithms = sorted({a["algorithm"] for a in jobs})
        lp_steps = {hparams_registry.default_hparams(a, args.dataset, space).get("lp_steps")
                    for a in algorithms} - {None}
        out.append(f"{args.dataset} test_env={args.test_env} {','.join(algorithms)}: "
                   f"{len(jobs)} jobs ({args.n_hparams} hparams x {args.n_trials} trials), "
                   f"steps={args.steps}, hparams_space={space}"
                   + (f", lp_steps={','.join(map(str, sorted(lp_steps)))}" if lp_steps else ""))
    return out


def describe(recipe: Dict[str, Any]) -> List[str]:
    """One line per stage: name, job count, what it runs (the dry run)."""
    lines = []
    total = 0
    for stage in stages(recipe):
        n = count_jobs(stage)
        total += n if stage.is_training else 0
        what = {"linear_probe": "linear probes", "report": "report command"}.get(
            stage.name, f"training jobs in {len(stage.sweeps)} sweeps")
        if stage.name == "report":
            module = stage.report_command[2]
            if importlib.util.find_spec(module) is None:
                what += f" ({module} not installed: will be skipped)"
        lines.append(f"stage {stage.name}: {n} {what}")
        if stage.is_training:
            lines.extend("  " + d for d in _sweep_details(stage))
    lines.append(f"total: {total} training jobs")
    return lines


# ---------------------------------------------------------------------- running

def _sweep_jobs(argv: Sequence[str]):
    from domainbed.sweep.options import jobs_from_args
    return jobs_from_args(parse_sweep(argv))


# launcher options of the recipe's local training stages (see run_stage_locally)
LOCAL_LAUNCHER_ARGV = ("--in_process",)


def run_stage_locally(stage: Stage, launcher: str = "local",
                      launcher_argv: Sequence[str] = ()) -> None:
    """Run one stage here; finished jobs are skipped; raises if a job is left unfinished.

    With the local launcher and no ``launcher_argv``, training runs go in-process
    (``LOCAL_LAUNCHER_ARGV``): the recipe's runs are short, a subprocess each would pay the
    import of torch every time (docs/sweeps.md)."""
    from domainbed.scripts import sweep
    if launcher == "local" and not launcher_argv:
        launcher_argv = LOCAL_LAUNCHER_ARGV
    if stage.name == "linear_probe":
        from domainbed_aux.init.probe import ensure_linear_probe
        specs = probe_specs(stage.sweeps)
        for i, (spec, root) in enumerate(specs):
            probe = ensure_linear_probe(spec, root)
            log.info("stage linear_probe: [%d/%d] %s %s", i + 1, len(specs), spec.key(),
                     "trained" if probe.trained else "reused")
        return
    if stage.name == "report":
        module = stage.report_command[2]
        if importlib.util.find_spec(module) is None:
            log.warning("stage report: module %s is not installed; skipped", module)
            return
        log.info("stage report: %s", " ".join(stage.report_command))
        if subprocess.run(stage.report_command).returncode != 0:
            raise RecipeError(f"stage report: {module} failed (see its message above)")
        return
    for i, argv in enumerate(stage.sweeps):
        log.info("stage %s: sweep %d/%d (%s)", stage.name, i + 1, len(stage.sweeps),
                 _flag(argv, "--output_dir"))
        code = sweep.main(["launch", *argv, "--command_launcher", launcher,
                           "--skip_confirmation", *launcher_argv])
        if code != 0:
            raise RecipeError(f"stage {stage.name}: the sweep in {_flag(argv, '--output_dir')} "
                              "failed (see the error above)")
        if launcher == "dummy":
            continue
        left = [j for j in _sweep_jobs(argv) if j.state != "Done"]
        if left:
            raise RecipeError(f"stage {stage.name}: {len(left)} jobs are not done, e.g. "
                              f"{left[0].name} in {left[0].output_dir}; fix them and run the "
                              "recipe again (finished work is reused)")
    log.info("stage %s: done", stage.name)


def run_locally(recipe: Dict[str, Any], launcher: str = "local",
                only: Optional[Sequence[str]] = None) -> None:
    """Run every stage in order (or only the named ones)."""
    for stage in stages(recipe):
        if only and stage.name not in only:
            continue
        log.info("stage %s: %d jobs", stage.name, count_jobs(stage))
        run_stage_locally(stage, launcher)


def submit_to_slurm(recipe: Dict[str, Any], stage_command: Sequence[str],
                    slurm_options: Dict[str, Any]) -> Dict[str, List[str]]:
    """Submit every stage with ``afterok`` on the previous one; returns SLURM ids per stage.

    Jobs of an earlier submission that are still in the SLURM queue are not submitted again;
    the next stage waits for them instead.

    A stage whose jobs can be listed now (pretrain; aux once phi_pt exists) is one job array;
    the others (linear probes, aux before phi_pt exists, target sweeps that need the pool,
    report) run as one small job each:
    ``stage_command + [stage name]``; the target one submits its arrays and waits for them.
    """
    from domainbed.command_launchers import get_launcher
    from domainbed.command_launchers.base import Task
    from domainbed.lib import run_dir
    from domainbed.sweep import actions
    slurm = get_launcher("slurm")
    options = {k: v for k, v in slurm_options.items() if k != "wait"}
    ids: Dict[str, List[str]] = {}
    previous: List[str] = []
    phi_pt = pretrained_featurizer(recipe)
    phi_pt_ready = phi_pt is None or os.path.exists(phi_pt)
    for stage in stages(recipe):
        waiting: List[str] = []  # ids of this stage's jobs still in the SLURM queue
        # listable now: pretraining; the aux jobs once phi_pt exists (their probes' names
        # hash it); the other stages need earlier outputs and list their jobs when they run
        if stage.name == "pretrain" or (stage.name == "aux" and phi_pt_ready):
            jobs = [j for argv in stage.sweeps for j in _sweep_jobs(argv) if j.state != "Done"]
            queued = actions.queued_dirs(jobs)
            waiting = [run_dir.read_submission(j.output_dir) for j in jobs
                       if j.output_dir in queued]
            jobs = [j for j in jobs if j.output_dir not in queued]
        else:
            jobs = [Task(list(stage_command) + [stage.name], _root(recipe),
                         f"recipe stage {stage.name}")]
        if not jobs and not waiting:
            log.info("stage %s: every job is done", stage.name)
            continue
        submitted = slurm.submit(jobs, after=previous, job_name=f"recipe-{stage.name}",
                                 **options) if jobs else []
        ids[stage.name] = [s.job_id for s in submitted] + waiting
        log.info("stage %s: %d SLURM jobs (after %s)%s", stage.name, len(submitted),
                 ",".join(previous) or "nothing",
                 f"; {len(waiting)} still queued from an earlier submission" if waiting else "")
        previous = ids[stage.name]
    return ids
