"""A sweep folder remembers its spec: ``sweep.json``, written by a real launch.

``status`` and ``delete_incomplete`` rebuild the job list from the sweep's options; given
only ``--output_dir`` (or some of the options), they take the others from the folder's
``sweep.json`` (``domainbed.scripts.sweep_args.remembered``), so that a flag left out cannot
make a finished sweep look "not launched". An option given on the command line that differs
from the stored one is named. Listing
with the dummy launcher writes nothing. Torch-free.
"""

import json
import logging
import os
from typing import Any, Dict, Optional

from domainbed.sweep.spec import SweepSpec, jsonable, spec_fields

SPEC_FILE = "sweep.json"
FORMAT = 1
# options that are not the sweep's: how and where it ran, never read back
NOT_STORED = ("output_dir", "data_dir", "mode")

log = logging.getLogger(__name__)


def spec_values(spec: SweepSpec) -> Dict[str, Any]:
    """The options that describe the sweep's jobs: fields and extensions' options."""
    values = {name: getattr(spec, name) for name in spec_fields() if name not in NOT_STORED}
    for name, value in (spec.options or {}).items():
        if not name.startswith("_") and name not in NOT_STORED and jsonable(value):
            values[name] = value
    if isinstance(values.get("algorithms"), list):
        values["algorithms"] = list(values["algorithms"])  # a plain list, not a subclass
    return {k: v for k, v in values.items() if jsonable(v)}


def write_spec(spec: SweepSpec) -> str:
    """Write ``<output_dir>/sweep.json`` (atomically); returns its path."""
    from domainbed.lib.atomic import atomic_write_text
    path = os.path.join(spec.output_dir, SPEC_FILE)
    atomic_write_text(path, json.dumps({"format": FORMAT, "spec": spec_values(spec)},
                                       indent=1, sort_keys=True) + "\n")
    return path


def read_spec(output_dir: str) -> Optional[Dict[str, Any]]:
    """The stored options of the sweep in ``output_dir``, or None (no or unreadable file)."""
    path = os.path.join(output_dir, SPEC_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("ignoring %s: %s", path, exc)
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT or \
            not isinstance(data.get("spec"), dict):
        log.warning("ignoring %s: not a sweep spec of format %d", path, FORMAT)
        return None
    return data["spec"]


