"""The recipe's in-process stages: training the shared linear probes, building the pools,
and the report (a typed call of ``domainbed_aux.report.make`` for the default provider, the
provider's command otherwise)."""

import contextlib
import logging
import os
import subprocess
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

from domainbed.sweep.options import train_args_list
from domainbed.sweep.spec import SweepSpec

from domainbed_aux.recipe.spec import RecipeError

log = logging.getLogger(__name__)

DEFAULT_REPORT_MODULE = "domainbed_aux.scripts.report"
DEFAULT_REPORT_ARGS = ["--input_dir", "{target_dirs}", "--output", "{output_root}/report.txt"]


# ------------------------------------------------------------------------ linear probes

def probe_specs(sweeps: Sequence[SweepSpec]) -> List[Tuple[Any, str]]:
    """The distinct linear probes the sweeps' jobs start from: (spec, probe folder)."""
    from domainbed_aux.planning import init_kind, lp_root, planner_of
    specs: Dict[Tuple[str, str], Tuple[Any, str]] = {}
    for sweep in sweeps:
        planner = planner_of(sweep)
        for train_args in train_args_list(sweep):
            if init_kind(train_args, planner.options) is not None:
                spec = planner.probe_spec(train_args)
                folder = lp_root(planner.options)
                specs[(folder, spec.key())] = (spec, folder)
    return list(specs.values())


def count_probes(sweeps: Sequence[SweepSpec]) -> int:
    """How many probes the sweeps need: one per (folder, dataset, test envs, trial seed);
    torch-free (the probe specs themselves hash phi_pt)."""
    from domainbed_aux.planning import InitOptions, init_kind, lp_root
    keys = set()
    for sweep in sweeps:
        options = InitOptions.of(sweep)
        keys.update((lp_root(options), a["dataset"], tuple(a["test_envs"]), a["trial_seed"])
                    for a in train_args_list(sweep) if init_kind(a, options) is not None)
    return len(keys)


@contextlib.contextmanager
def one_math_thread():
    """Torch on one math thread inside the block, as every run of the recipe (see
    ``plan.local_launcher_options``): a probe's numbers then do not depend on the cores."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_probes(sweeps: Sequence[SweepSpec]) -> None:
    """Train the probes that do not exist yet (finished ones are reused)."""
    from domainbed_aux.init.probe import ensure_linear_probe
    specs = probe_specs(sweeps)
    with one_math_thread():
        for i, (spec, folder) in enumerate(specs):
            probe = ensure_linear_probe(spec, folder)
            log.info("stage linear_probe: [%d/%d] %s %s", i + 1, len(specs), spec.key(),
                     "trained" if probe.trained else "reused")


# ---------------------------------------------------------------------------- pools

def pool_sweeps(sweeps: Sequence[SweepSpec]) -> List[SweepSpec]:
    """The target sweeps that recycle a pool."""
    from domainbed_aux.planning import InitOptions, uses_pool
    return [s for s in sweeps if uses_pool(InitOptions.of(s))]


def build_pools(sweeps: Sequence[SweepSpec]) -> None:
    """Build (or check) the pool of every target sweep from the finished auxiliary runs."""
    from domainbed_aux.planning import planner_of
    wanted = pool_sweeps(sweeps)
    for i, sweep in enumerate(wanted):
        for dataset in sweep.datasets:
            pool = planner_of(sweep).ensure_pool(dataset)
            log.info("stage pool: [%d/%d] %s: %d members in %s", i + 1, len(wanted), dataset,
                     len(pool.members), pool.root)


# ---------------------------------------------------------------------------- report

def report_command(recipe: Dict[str, Any], target_dirs: Sequence[str]) -> Optional[List[str]]:
    """The report command of the recipe file (its provider's module and arguments), or
    None."""
    from domainbed_aux.recipe.providers import provider_module
    spec = recipe.get("report", {})
    if spec is None:
        return None
    module = provider_module(spec)
    names = {"output_root": os.path.abspath(recipe["output_root"]),
             "target_dirs": ",".join(target_dirs)}
    args = [a.format(**names) for a in spec.get("args", DEFAULT_REPORT_ARGS)]
    if "args" not in spec and module == DEFAULT_REPORT_MODULE:
        args += regime_args(recipe)
    return [sys.executable, "-m", module] + args


def report_request(recipe: Dict[str, Any], target_dirs: Sequence[str]):
    """The report of a recipe that uses our provider with its default arguments, as a
    typed ``ReportRequest`` (the stage calls it in this process); None for any other
    report section (its provider's command runs)."""
    from domainbed_aux.recipe.providers import provider_module
    from domainbed_aux.recipe.spec import root
    from domainbed_aux.report.make import ReportRequest
    spec = recipe.get("report", {})
    if spec is None or "args" in spec or provider_module(spec) != DEFAULT_REPORT_MODULE:
        return None
    request = ReportRequest(input_dirs=list(target_dirs),
                            output=os.path.join(os.path.abspath(recipe["output_root"]),
                                                "report.txt"),
                            probe_dirs=[root(recipe, "lp", _probe_runs_dir())])
    if recipe.get("pretrain"):
        request.foundation_dirs = [root(recipe, "pretrain")]
    if recipe.get("aux", True) is not None:
        request.aux_dirs = [root(recipe, "aux")]
    return request


def _probe_runs_dir() -> str:
    from domainbed_aux.init.probe import RUNS_DIR
    return RUNS_DIR


def make_report_here(request) -> None:
    """Run the report in this process, with one math thread as every run (the scores of
    averaged weights then do not depend on the number of cores)."""
    import torch
    from domainbed_aux.report.make import make_report
    log.info("stage report: %s", ", ".join(request.input_dirs))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code = make_report(request)
    finally:
        torch.set_num_threads(threads)
    if code != 0:
        raise RecipeError("stage report: the report failed (see its message above)")


def regime_args(recipe: Dict[str, Any]) -> List[str]:
    """The report's regime flags: the folders of the recipe's pretraining run, linear probes
    and auxiliary runs (the stages the recipe has)."""
    from domainbed_aux.init.probe import RUNS_DIR
    from domainbed_aux.recipe.spec import root
    args = ["--probe_dir", root(recipe, "lp", RUNS_DIR)]
    if recipe.get("pretrain"):
        args += ["--foundation_dir", root(recipe, "pretrain")]
    if recipe.get("aux", True) is not None:
        args += ["--aux_dir", root(recipe, "aux")]
    return args


def report_note(command: Sequence[str]) -> str:
    from domainbed_aux.recipe.providers import module_exists
    module = command[2]
    if not module_exists(module):
        return f"report command ({module} not installed: will be skipped)"
    return "report command"


def run_report(command: Sequence[str], allowed_modules: Sequence[str] = ()) -> None:
    """Run the recipe's report command: a registered report provider, or a module the
    command line allows (printed first); skipped with a warning when its module is absent."""
    from domainbed_aux.recipe.providers import is_registered, module_exists, refusal
    module = command[2]
    if not module_exists(module):
        log.warning("stage report: module %s is not installed; skipped", module)
        return
    if not is_registered(module):
        if module not in allowed_modules:
            raise RecipeError(refusal(module))
        log.warning("stage report: running %s, which is not a registered report provider "
                    "(allowed by --allow_report_module): %s", module, " ".join(command))
    log.info("stage report: %s", " ".join(command))
    from domainbed.command_launchers.core.resources import thread_env
    # one math thread, as every run: the scores of averaged weights do not depend on cores
    env = dict(os.environ, **thread_env(1))
    if subprocess.run(list(command), env=env).returncode != 0:
        raise RecipeError(f"stage report: {module} failed (see its message above)")
