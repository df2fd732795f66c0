"""theta_0 of a soup of runs: the shared linear probe ``(w_lp, phi_pt)`` they descend from.

Every run of a target sweep starts from the sweep's linear probe: vanilla fine-tuning runs
from the probe file itself, inter-training / ratatouille / fusing runs from an init file
``(w_lp, phi_aux)`` that names its probe (``linear_probe_key``). Either way the record's
``init`` says which probe, and the probe file lies in the sweep's ``--output_dir_lp`` (init
files in its ``inits/`` folder), so theta_0 is found from the runs alone. ``probe`` (a file)
or ``probe_dir`` (the folder of probes) override where it is looked for.
"""

import os
from typing import List, Optional, Sequence

from domainbed.errors import DomainBedError


def _where(run) -> Optional[str]:
    init = run.init or {}
    return init.get("path") or run.args.get("init_from")


def theta_0_path(runs: Sequence, probe: Optional[str] = None,
                 probe_dir: Optional[str] = None) -> str:
    """The probe file every run of ``runs`` descends from (checked against its manifest and
    against the hash the runs recorded); a one-line ``DomainBedError`` naming the fix."""
    from domainbed.lib.digests import verify_file
    from domainbed_aux.pool.members import sha256_file
    if probe:
        if not os.path.isfile(probe):
            raise DomainBedError(f"--probe {probe}: no such file (give the linear probe "
                                 "<key>.safetensors the runs started from)")
        verify_file(probe)
        return probe
    keys = {}
    for run in runs:
        key = (run.init or {}).get("linear_probe_key")
        if not key:
            raise DomainBedError(
                f"{run.run_dir} records no linear probe (it did not start from the shared "
                "linear probe of a sweep): rules built on task vectors need theta_0; give "
                "--probe FILE (the weights the runs started from)")
        keys.setdefault(key, run.run_dir)
    if len(keys) > 1:
        (a, ra), (b, rb) = list(keys.items())[:2]
        raise DomainBedError(f"the runs descend from different linear probes ({a} for {ra}, "
                             f"{b} for {rb}); merge the runs of one sweep and trial seed")
    key = next(iter(keys))
    name = key + ".safetensors"
    candidates: List[str] = [os.path.join(probe_dir, name)] if probe_dir else []
    for run in runs:
        path = _where(run)
        if path:
            folder = os.path.dirname(os.path.abspath(path))
            candidates += [os.path.join(folder, name),
                           os.path.join(os.path.dirname(folder), name)]
    recorded = {(r.init or {}).get("linear_probe") for r in runs} - {None}
    for candidate in dict.fromkeys(candidates):
        if os.path.isfile(candidate):
            digest = verify_file(candidate) or sha256_file(candidate)
            if recorded and digest not in recorded:
                raise DomainBedError(f"{candidate} is not the probe the runs started from (its "
                                     "sha256 differs from the one they recorded); give "
                                     "--probe FILE")
            return candidate
    looked = ", ".join(dict.fromkeys(os.path.dirname(c) for c in candidates)) or "nowhere"
    raise DomainBedError(f"theta_0, the linear probe {name} the runs started from, is not in "
                         f"{looked}; give --output_dir_lp (the sweep's) or "
                         "--probe FILE")
