"""A sweep as a typed value: what ``sweep``'s options describe, built by the command line or
by a library (a recipe stage) without any argv.

``SweepSpec`` holds the core's options as fields and the options that extensions register
(``hooks.SWEEP_ARGUMENTS``, e.g. ``aux_dir``) in ``options``, readable as attributes
(``spec.aux_dir``), so job transformers read a spec the way they read the command line.

``mode`` says what the job list is for: ``"launch"`` (extensions may prepare what the jobs
need), ``"list"`` (the dummy launcher: full commands, nothing written) or ``"ids"``
(``status`` and ``delete_incomplete``: job ids only, extensions plan nothing).

A spec is made from typed values with ``options.make_spec`` (extensions' options filled with
their defaults) or from a parsed command line with
``domainbed.scripts.sweep_args.from_namespace``.
"""

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from domainbed.errors import DomainBedError
from domainbed.lib.options import option, option_fields

MODES = ("launch", "list", "ids")
TASKS = ("domain_generalization", "domain_adaptation")

@dataclass
class SweepSpec:
    """The jobs of one sweep folder (upstream's flags, same defaults). Each field declared
    with ``option`` is the flag ``--<name>`` of ``sweep``
    (``domainbed.scripts.sweep_args.build_parser``)."""

    output_dir: str = option(help="the sweep folder (required; with --recipe, default: the "
                                  "recipe's output_root)")
    datasets: Optional[List[str]] = option(None, help="default: every registered dataset")
    algorithms: Optional[List[str]] = option(None, help="default: every registered algorithm")
    task: str = option("domain_generalization", choices=TASKS)
    n_hparams_from: int = option(0)
    n_hparams: int = option(20)
    data_dir: Optional[str] = option(None)
    seed: int = option(0)
    n_trials: int = option(3)
    steps: Optional[int] = option(None)
    checkpoint_freq: Optional[int] = option(None)
    # JSON text, as given (upstream hashes the text)
    hparams: Optional[str] = option(None, help="JSON object of hparam overrides")
    holdout_fraction: float = option(0.2)
    single_test_envs: bool = option(False)
    test_env: Optional[int] = option(None, help="only this test env (-1: no test env, every "
                                                "domain trains)")
    skip_model_save: bool = option(False)
    # flags added to every job; on the command line a JSON text (``options.parse_train_extra``)
    train_extra: Dict[str, Any] = option(
        default_factory=dict, type=str, cli_default=None,
        help='JSON object of extra training flags for every job, e.g. '
             '\'{"save_model_every_checkpoint": true}\'')
    upstream_job_ids: bool = option(
        False, help="upstream DomainBed's job arguments and ids (paths hashed in), to continue "
                    "a sweep that upstream's sweep script started")
    mode: str = "launch"
    options: Dict[str, Any] = field(default_factory=dict)  # extensions' options

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise DomainBedError(f"sweep mode must be one of {', '.join(MODES)}, got "
                                 f"{self.mode!r}")
        if self.task not in TASKS:
            raise DomainBedError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if not isinstance(self.train_extra, dict):
            raise DomainBedError("train_extra must be a dict of training flag: value")

    def __getattr__(self, name: str) -> Any:
        # only called for names that are not fields: an extension's option
        options = self.__dict__.get("options") or {}
        if name in options:
            return options[name]
        raise AttributeError(f"sweep spec has no option {name!r}")

    def replace(self, **changes: Any) -> "SweepSpec":
        """A copy with ``changes`` (fields or extension options)."""
        fields = {f.name for f in dataclasses.fields(self)}
        options = dict(self.options)
        options.update({k: v for k, v in changes.items() if k not in fields})
        return dataclasses.replace(self, options=options,
                                   **{k: v for k, v in changes.items() if k in fields})


def spec_fields() -> List[str]:
    """The fields that are options of the command line (every field but mode and options)."""
    return [f.name for f in option_fields(SweepSpec)]



def jsonable(value: Any) -> bool:
    """Whether JSON can hold ``value``."""
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False


def spec_to_dict(spec: SweepSpec) -> Dict[str, Any]:
    """Every field and extension option of ``spec`` that JSON can hold (what a queued job
    reads the spec back from)."""
    values = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)
              if f.name != "options"}
    values["options"] = {k: v for k, v in spec.options.items()
                         if not k.startswith("_") and jsonable(v)}
    return values


def spec_from_dict(values: Dict[str, Any]) -> SweepSpec:
    """The spec ``spec_to_dict`` gave ``values`` of."""
    return SweepSpec(**values)

