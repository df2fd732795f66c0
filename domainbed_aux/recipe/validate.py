"""Every problem of a recipe file, found before any stage starts (dry runs included).

The file is checked against ``schema.RECIPE_SCHEMA`` at every level (types, ranges, required
keys, unknown keys with the closest known name, registered dataset and algorithm names),
then what the schema cannot say: ``hparams`` keys and values for every job they reach,
``train_extra`` flags, test environments in range, and the report provider.
"""

from typing import Any, Dict, List, Sequence, Set, Tuple

from domainbed.validation import check_object

from domainbed_aux.recipe import providers
from domainbed_aux.recipe.schema import RECIPE_SCHEMA

PROBE_ALGORITHM = "LinearProbe"
# training flags the recipe sets itself for every job: train_extra may not set them
RESERVED_FLAGS = ("dataset", "algorithm", "test_envs", "hparams_seed", "trial_seed", "seed",
                  "output_dir", "data_dir", "init_from", "init_part", "hparams", "steps",
                  "checkpoint_freq", "holdout_fraction", "hparams_space")


def _strings(value: Any) -> List[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def _section(recipe: Dict[str, Any], name: str) -> Dict[str, Any]:
    value = recipe.get(name)
    return value if isinstance(value, dict) else {}


def mentioned_datasets(recipe: Dict[str, Any]) -> Set[str]:
    names = set(_strings(recipe.get("datasets")))
    names |= set(_strings(_section(recipe, "aux").get("datasets")))
    names |= set(_strings(_section(recipe, "pretrain").get("dataset")))
    return names


def _folder_problem(entry: str) -> str:
    """The problem of a ``folder:NAME[=PATH]`` entry ('' when well formed)."""
    from domainbed.datasets.registry import split_dataset_root
    try:
        split_dataset_root(entry)
    except ValueError as e:
        return str(e)
    return ""


def folder_problems(recipe: Dict[str, Any]) -> List[str]:
    """Malformed ``folder:NAME[=PATH]`` dataset entries, with the accepted form."""
    from domainbed.datasets.registry import is_folder_dataset
    return [f"recipe: {_folder_problem(name)}" for name in sorted(mentioned_datasets(recipe))
            if is_folder_dataset(name) and _folder_problem(name)]


def _recipe_dataset_names() -> List[str]:
    """The registered names; every ``folder:`` entry passes (a malformed one is reported by
    ``folder_problems`` with the accepted form, not as an unknown dataset)."""
    from domainbed.datasets.registry import AcceptedNames, dataset_names, is_folder_dataset

    class _Names(AcceptedNames):
        def __contains__(self, name: object) -> bool:
            return is_folder_dataset(name) or AcceptedNames.__contains__(self, name)

    return _Names(dataset_names())


def known_names(recipe: Dict[str, Any]) -> Dict[str, Sequence[str]]:
    """The names each ``Rule.names`` kind accepts, for this recipe."""
    from domainbed.algorithms.registry import algorithm_names
    from domainbed.hparams_registry import HPARAM_SPACES
    return {"dataset": _recipe_dataset_names(),
            "algorithm": algorithm_names(),
            "hparams_space": HPARAM_SPACES.names(),
            "report provider": list(providers.report_providers())}


def _jobs(recipe: Dict[str, Any]) -> List[Tuple[str, str, str, dict]]:
    """(where, algorithm, dataset, hparams overrides) of every kind of job of the recipe."""
    common = recipe.get("hparams") or {}
    common = common if isinstance(common, dict) else {}
    targets = _strings(recipe.get("datasets"))
    aux = recipe.get("aux", {})
    aux = aux if isinstance(aux, dict) or aux is None else {}
    aux_datasets = (_strings((aux or {}).get("datasets")) or targets) if aux is not None else []
    jobs = []
    pretrain = _section(recipe, "pretrain")
    if isinstance(pretrain.get("dataset"), str):
        own = pretrain.get("hparams") if isinstance(pretrain.get("hparams"), dict) else {}
        algorithm = pretrain.get("algorithm") or "ERM"
        jobs.append(("recipe.hparams", algorithm, pretrain["dataset"], common))
        jobs.append(("recipe.pretrain.hparams", algorithm, pretrain["dataset"], own))
    for dataset in aux_datasets:
        jobs.append(("recipe.hparams", (aux or {}).get("algorithm") or "ERM", dataset, common))
    for dataset in targets:
        for algorithm in _strings(_section(recipe, "target").get("algorithms")) or \
                ["Ratatouille"]:
            jobs.append(("recipe.hparams", algorithm, dataset, common))
    for dataset in set(targets) | set(aux_datasets):
        jobs.append(("recipe.hparams", PROBE_ALGORITHM, dataset, common))
    return jobs


def hparams_problems(recipe: Dict[str, Any], known: Dict[str, Sequence[str]]) -> List[str]:
    """``hparams`` (and ``pretrain.hparams``) keys and values for every job they reach (jobs
    of unknown names or spaces are left to the schema's problems)."""
    from domainbed.hparams_checks import hparam_problems
    space = recipe.get("hparams_space") or "upstream"
    if space not in known["hparams_space"]:
        return []
    problems: List[str] = []
    for where, algorithm, dataset, overrides in _jobs(recipe):
        if overrides and dataset in known["dataset"] and (
                algorithm in known["algorithm"] or algorithm == PROBE_ALGORITHM):
            problems += hparam_problems(algorithm, dataset, overrides, space, where)
    return problems


def train_extra_problems(extra: Dict[str, Any]) -> List[str]:
    """``train_extra``: training flags that exist, that the recipe does not set itself, with
    values of their type and range."""
    from domainbed.training.validate import flag_problems
    return flag_problems(extra, "recipe.train_extra", RESERVED_FLAGS)


def test_env_problems(recipe: Dict[str, Any]) -> List[str]:
    """``target.test_envs`` within each target dataset's environments (known without data)."""
    from domainbed.datasets.registry import known_environment_count
    from domainbed_aux.recipe.schema import dataset_value
    wanted_all = _section(recipe, "target").get("test_envs")
    problems = []
    for dataset in _strings(recipe.get("datasets")):
        n_envs = known_environment_count(dataset)
        wanted = dataset_value(wanted_all, dataset)
        if n_envs is None or wanted is None:
            continue
        for env in wanted if isinstance(wanted, list) else [wanted]:
            if isinstance(env, int) and not isinstance(env, bool) and env >= n_envs:
                problems.append(f"recipe.target.test_envs: {env} is out of range for {dataset} "
                                f"({n_envs} environments: 0..{n_envs - 1})")
    return problems


def report_problems(recipe: Dict[str, Any], allowed: Sequence[str]) -> List[str]:
    """A report module that is not a registered provider, is installed (so would run) and
    is not allowed on the command line."""
    report = recipe.get("report", {})
    if not isinstance(report, dict) or report.get("provider"):
        return []
    module = report.get("module")
    if not isinstance(module, str) or providers.is_registered(module) or module in allowed:
        return []
    if not providers.module_exists(module):
        return []  # not installed: the stage is skipped with a warning, nothing runs
    return [providers.refusal(module)]


def recipe_problems(recipe: Any, allowed_report_modules: Sequence[str] = ()) -> List[str]:
    """One line per problem of a parsed recipe file; [] when it can run as written."""
    if not isinstance(recipe, dict):
        return [f"recipe: a recipe is a JSON object, got {type(recipe).__name__}"]
    known = known_names(recipe)
    problems = check_object(recipe, RECIPE_SCHEMA, "recipe", known)
    problems += hparams_problems(recipe, known)
    extra = recipe.get("train_extra")
    problems += train_extra_problems(extra if isinstance(extra, dict) else {})
    problems += test_env_problems(recipe)
    problems += folder_problems(recipe)
    problems += report_problems(recipe, allowed_report_modules)
    return list(dict.fromkeys(problems))
