"""A recipe as the core's multi-stage ``Plan``: pretrain -> linear_probe -> aux -> pool ->
target -> report.

Linear probes of phi_pt come before the auxiliary sweeps: each auxiliary run starts from a
probe on its own dataset (every domain), each non-recycling target run from the target's
probe, as the paper's released code does. The pool stage builds the pool of every target
sweep from the finished auxiliary runs; listing jobs (the dummy launcher, ``status``) writes
nothing.
"""

import json
import os
from typing import Any, Dict, List, Sequence

from domainbed import hparams_registry
from domainbed.sweep.options import train_args_list
from domainbed.sweep.plan import Plan, Stage
from domainbed.sweep.spec import SweepSpec

from domainbed_aux.recipe import steps
from domainbed_aux.recipe.spec import root
from domainbed_aux.recipe.sweeps import (aux_sweeps, pretrain_sweep, pretrained_featurizer,
                                         target_sweeps)

STAGES = ("pretrain", "linear_probe", "aux", "pool", "target", "report")



def local_launcher_options() -> Dict[str, Any]:
    """The recipe's options of the local launcher: runs in-process (short runs do not pay
    the import of torch each), each with one math thread, as many at once as this process
    has cores. One thread per run makes every run's numbers independent of the machine's
    core count (a convolution's sums are split between threads, and the split changes the
    last bits), so the report is the same on 1, 2 or 64 cores of one CPU architecture."""
    from domainbed.command_launchers.core.resources import cpu_count
    return {"in_process": True, "threads_per_job": 1, "max_parallel": cpu_count()}


def sweep_details(sweeps: List[SweepSpec]) -> List[str]:
    """Per sweep: dataset, test env, algorithms, jobs, steps, hparams space and lp_steps."""
    out = []
    for spec in sweeps:
        jobs = train_args_list(spec)
        space = getattr(spec, "hparams_space", None) or "upstream"
        algorithms = sorted({a["algorithm"] for a in jobs})
        overrides = json.loads(spec.hparams) if spec.hparams else {}
        declared = [hparams_registry.default_hparams(a, spec.datasets[0], space)
                    for a in algorithms]
        # what the runs use: the recipe's override where it gives one, else the default
        lp_steps = {overrides.get("lp_steps", d["lp_steps"]) for d in declared
                    if "lp_steps" in d}
        out.append(f"{spec.datasets[0]} test_env={spec.test_env} {','.join(algorithms)}: "
                   f"{len(jobs)} jobs ({spec.n_hparams} hparams x {spec.n_trials} trials), "
                   f"steps={spec.steps}, hparams_space={space}"
                   + (f", lp_steps={','.join(map(str, sorted(lp_steps)))}" if lp_steps else ""))
    return out


def _training(name: str, sweeps: List[SweepSpec], listable=lambda: False) -> Stage:
    return Stage(name, sweeps=sweeps, details=lambda: sweep_details(sweeps), listable=listable)


def recipe_plan(recipe: Dict[str, Any], allowed_report_modules: Sequence[str] = ()) -> Plan:
    """The recipe's stages, in order (a stage the recipe leaves out is absent);
    ``allowed_report_modules``: report modules the command line allows besides the
    registered report providers."""
    stages: List[Stage] = []
    pre = pretrain_sweep(recipe)
    if pre is not None:
        stages.append(_training("pretrain", [pre], listable=lambda: True))
    auxes = aux_sweeps(recipe)
    targets = target_sweeps(recipe)
    probed = auxes + targets  # the probes both stages start from
    stages.append(Stage("linear_probe", step=lambda: steps.train_probes(probed),
                        count=lambda: steps.count_probes(probed), unit="linear probes"))
    if auxes:
        phi_pt = pretrained_featurizer(recipe)
        # on SLURM the aux jobs are listed once phi_pt exists: their probes' names hash it
        stages.append(_training("aux", auxes, listable=lambda: phi_pt is None
                                or os.path.exists(phi_pt)))
    pooled = steps.pool_sweeps(targets)
    if pooled:
        stages.append(Stage("pool", step=lambda: steps.build_pools(pooled),
                            count=lambda: len(pooled), unit="auxiliary pools"))
    stages.append(_training("target", targets))
    target_dirs = [s.output_dir for s in targets]
    request = steps.report_request(recipe, target_dirs)
    command = steps.report_command(recipe, target_dirs)
    if request is not None:  # our report, called here
        stages.append(Stage("report", step=lambda: steps.make_report_here(request),
                            count=lambda: 1, unit="report"))
    elif command is not None:  # another provider's command line
        allowed = tuple(allowed_report_modules)
        stages.append(Stage("report", step=lambda: steps.run_report(command, allowed),
                            count=lambda: 1, unit=steps.report_note(command)))
    return Plan(name=f"recipe {recipe.get('name', '')}".strip(), root=root(recipe),
                stages=stages, launcher_defaults={"local": local_launcher_options()},
                outputs=[f"report: {root(recipe, 'report.txt')}"])
