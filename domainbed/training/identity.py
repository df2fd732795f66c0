"""A run's identity: the arguments that define what it computes, checked on every resume.

A run directory holds one run. Resuming it with other arguments would mix two runs in one
``results.jsonl`` (other splits, another lr under the old optimiser state), and a finished
run relaunched with other arguments would pretend to be the run asked for. The identity is
stored in the checkpoint's metadata (and read back from the records of a finished run);
a difference stops the run with one line naming the arguments, and ``--restart`` moves the
old directory aside.
"""

import os
from typing import Any, Dict, List, Mapping, Optional

from domainbed.errors import DomainBedError

# arguments that do not change what a run computes: paths, evaluation-only, performance and
# launcher flags (``init_from`` enters by file name: a moved folder keeps its runs)
NOT_IDENTITY = ("data_dir", "output_dir", "num_workers", "keep_checkpoint", "skip_model_save",
                "save_model_every_checkpoint", "full_evaluation", "score_test_once",
                "augmented_validation", "channels_last", "cudnn_benchmark")
METADATA_KEY = "run_identity"
_ABSENT = object()


class RunIdentityError(DomainBedError):
    """A run directory holds a run of other arguments."""


def _hparams(value: Any) -> Any:
    import json
    if isinstance(value, str) and value:
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value or None


def identity_of(args: Mapping[str, Any]) -> Dict[str, Any]:
    """The identity of a run from its ``args`` record (``TrainConfig.as_record()``)."""
    identity = {k: v for k, v in args.items() if k not in NOT_IDENTITY}
    if identity.get("init_from"):
        identity["init_from"] = os.path.basename(str(identity["init_from"]))
    if "hparams" in identity:
        identity["hparams"] = _hparams(identity["hparams"])
    if "test_envs" in identity and identity["test_envs"] is not None:
        identity["test_envs"] = [int(t) for t in identity["test_envs"]]
    return identity


def differences(stored: Mapping[str, Any], current: Mapping[str, Any],
                prefix: str = "") -> List[str]:
    """``name: A there, B here`` for each argument whose value differs (a name only one of
    the two knows counts when its value is not the default None/False); dicts (hparams)
    are compared key by key."""
    out = []
    for key in sorted(set(stored) | set(current)):
        there, here = stored.get(key, _ABSENT), current.get(key, _ABSENT)
        if isinstance(there, dict) and isinstance(here, dict):
            out += differences(there, here, f"{prefix}{key}.")
            continue
        if there == here or (there is _ABSENT and here in (None, False)) or \
                (here is _ABSENT and there in (None, False)):
            continue
        out.append(f"{prefix}{key}: {_short(there)} there, {_short(here)} here")
    return out


def _short(value: Any) -> str:
    import json
    if value is _ABSENT:
        return "unset"
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 50 else text[:47] + "..."


def way_out(out_dir: str) -> str:
    return (f"use a new --output_dir, or add --restart to move {out_dir} aside and start "
            "again")


def check_checkpoint(checkpoint_path: str, identity: Mapping[str, Any], out_dir: str) -> None:
    """Raise RunIdentityError when the checkpoint was written by a run of other arguments
    (a checkpoint from before identities were stored passes)."""
    from domainbed.lib.weights import read_metadata
    stored = read_metadata(checkpoint_path).get(METADATA_KEY)
    if not isinstance(stored, dict):
        return
    diff = differences(stored, identity)
    if diff:
        raise RunIdentityError(
            f"{out_dir} holds an unfinished run of other arguments ({'; '.join(diff)}); "
            f"resuming would mix two runs: {way_out(out_dir)}")


def check_done(out_dir: str, identity: Mapping[str, Any]) -> None:
    """Raise RunIdentityError when the finished run in ``out_dir`` had other arguments."""
    from domainbed.lib.run_dir import run_args
    args = run_args(out_dir).get("args")
    if not isinstance(args, dict):
        return
    diff = differences(identity_of(args), identity)
    if diff:
        raise RunIdentityError(
            f"{out_dir} is already done, with other arguments ({'; '.join(diff)}); nothing "
            f"was run: {way_out(out_dir)}")


def move_aside(out_dir: str) -> Optional[str]:
    """Rename ``out_dir`` to the first free ``<parent>/.<name>.old-<n>`` (hidden, so that
    sweeps and tables no longer count it); returns the new path (None when there was
    nothing to move)."""
    if not os.path.isdir(out_dir) or not os.listdir(out_dir):
        return None
    parent, name = os.path.split(os.path.abspath(out_dir))
    n = 1
    while os.path.exists(os.path.join(parent, f".{name}.old-{n}")):
        n += 1
    target = os.path.join(parent, f".{name}.old-{n}")
    os.rename(out_dir, target)
    return target
