"""The recipe's training sweeps as ``SweepSpec`` values: the pretraining run, one auxiliary
sweep per auxiliary dataset (every domain trains) and one target sweep per target dataset
and test environment."""

import json
import os
from typing import Any, Dict, List, Optional

from domainbed.datasets.registry import num_environments, split_dataset_root
from domainbed.sweep.options import make_spec
from domainbed.sweep.spec import SweepSpec

from domainbed_aux.recipe.schema import dataset_value
from domainbed_aux.recipe.spec import RecipeError, root


def _common(recipe: Dict[str, Any], dataset: str,
            hparams: Optional[dict] = None) -> Dict[str, Any]:
    """What every sweep of the recipe shares: data, hparams overrides, steps, checkpoint
    frequency and extra training flags."""
    values: Dict[str, Any] = {"data_dir": data_dir_of(recipe, dataset)}
    merged = dict(recipe.get("hparams") or {})
    merged.update(hparams or {})
    if merged:
        values["hparams"] = json.dumps(merged, sort_keys=True)
    for key in ("steps", "checkpoint_freq"):
        value = dataset_value(recipe.get(key), dataset_name(dataset))
        if value is not None:
            values[key] = int(value)
    if recipe.get("train_extra"):  # training flags of every job, e.g. {"full_evaluation": true}
        values["train_extra"] = dict(recipe["train_extra"])
    return values


def _split(dataset: str):
    try:
        return split_dataset_root(dataset)
    except ValueError as exc:
        raise RecipeError(f"{exc} (recipe datasets)") from None


def data_dir_of(recipe: Dict[str, Any], dataset: str) -> str:
    """The data folder of a recipe dataset: PATH of ``folder:NAME=PATH`` (relative to the
    working directory, as ``data_dir``), else the recipe's ``data_dir``."""
    return _split(dataset)[1] or recipe["data_dir"]


def dataset_name(dataset: str) -> str:
    """A recipe dataset's name (``folder:NAME=PATH`` -> ``folder:NAME``)."""
    return _split(dataset)[0]


def folder_label(dataset: str) -> str:
    """A folder name for a dataset's sweeps (``folder:NAME`` -> ``folder-NAME``)."""
    return dataset_name(dataset).replace(":", "-")


def pretrain_sweep(recipe: Dict[str, Any]) -> Optional[SweepSpec]:
    """The single pretraining run (its featurizer is phi_pt), or None."""
    spec = recipe.get("pretrain")
    if not spec:
        return None
    common = _common({**recipe, "steps": spec.get("steps", recipe.get("steps"))},
                     spec["dataset"], spec.get("hparams"))
    return make_spec(root(recipe, "pretrain"), datasets=[dataset_name(spec["dataset"])],
                     test_env=-1, n_hparams=1, n_trials=1,
                     algorithms=[spec.get("algorithm", "ERM")], **common)


def pretrained_featurizer(recipe: Dict[str, Any]) -> Optional[str]:
    """phi_pt: the pretrain run's model, else the recipe's file, else None (core network)."""
    from domainbed.sweep.jobs import make_jobs
    from domainbed.sweep.options import train_args_list
    spec = pretrain_sweep(recipe)
    if spec is None:
        path = recipe.get("pretrained_featurizer")
        return os.path.abspath(path) if path else None
    (job,) = make_jobs(train_args_list(spec), spec.output_dir)
    return os.path.join(job.output_dir, "model.safetensors")


def _ratatouille_options(recipe: Dict[str, Any]) -> Dict[str, Any]:
    """The options of the ratatouille sweep plugin every aux and target sweep gets."""
    values: Dict[str, Any] = {"output_dir_lp": root(recipe, "lp")}
    probe = recipe.get("linear_probe") or {}
    if probe.get("steps") is not None:
        values["lp_steps_total"] = int(probe["steps"])
    if probe.get("checkpoint_freq") is not None:
        values["lp_checkpoint_freq"] = int(probe["checkpoint_freq"])
    if recipe.get("hparams_space"):
        values["hparams_space"] = recipe["hparams_space"]
    phi = pretrained_featurizer(recipe)
    if phi:
        values["pretrained_featurizer"] = phi
    return values


def aux_sweeps(recipe: Dict[str, Any]) -> List[SweepSpec]:
    """One sweep per auxiliary dataset, every domain trains (``test_env -1``)."""
    aux = recipe.get("aux")
    if aux is None and "aux" in recipe:
        return []  # "aux": null: no auxiliary pool
    aux = aux or {}
    specs = []
    shared = _ratatouille_options(recipe)
    for dataset in aux.get("datasets") or recipe["datasets"]:
        specs.append(make_spec(
            root(recipe, "aux", f"{folder_label(dataset)}_notest"),
            datasets=[dataset_name(dataset)], test_env=-1,
            n_hparams=int(aux.get("n_hparams", 4)), n_trials=int(aux.get("n_trials", 1)),
            algorithms=[aux.get("algorithm", "ERM")], **shared,
            **_common(recipe, dataset)))
    return specs


def _test_envs(recipe: Dict[str, Any], dataset: str) -> List[int]:
    wanted = dataset_value((recipe.get("target") or {}).get("test_envs"), dataset_name(dataset))
    if wanted is not None:
        return [int(t) for t in (wanted if isinstance(wanted, list) else [wanted])]
    return list(range(num_environments(dataset_name(dataset), data_dir_of(recipe, dataset))))


def target_sweeps(recipe: Dict[str, Any]) -> List[SweepSpec]:
    """One sweep per target dataset and test environment (the paper's code's layout)."""
    target = recipe.get("target") or {}
    algorithms = list(target.get("algorithms") or ["Ratatouille"])
    specs = []
    shared = _ratatouille_options(recipe)
    for dataset in recipe["datasets"]:
        for env in _test_envs(recipe, dataset):
            values = dict(shared, **_common(recipe, dataset))
            if recipe.get("aux", True) is not None:
                values["aux_dir"] = root(recipe, "aux")
            if target.get("fusing_range") is not None:
                values["fusing_range"] = float(target["fusing_range"])
            if (recipe.get("aux") or {}).get("pool_kind"):
                values["aux_pool_kind"] = recipe["aux"]["pool_kind"]
            # one test env per sweep, no pair runs: leave-one-domain-out never reads these
            # runs, so each scores its test split once, for the record it selects (unless
            # the recipe's train_extra says otherwise)
            extra = dict(values.get("train_extra") or {})
            extra.setdefault("score_test_once", True)
            values["train_extra"] = extra
            specs.append(make_spec(
                root(recipe, "target", folder_label(dataset), f"test{env}"),
                datasets=[dataset_name(dataset)],
                test_env=env, n_hparams=int(target.get("n_hparams", 20)),
                n_trials=int(target.get("n_trials", 3)), algorithms=algorithms, **values))
    return specs
