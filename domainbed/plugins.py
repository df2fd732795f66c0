"""Loads extensions (such as ``domainbed_aux``) that register into the core's registries.

The core never imports an extension by name: extensions announce themselves through the
``domainbed.plugins`` entry-point group (see setup.py) or the ``DOMAINBED_PLUGINS``
environment variable (comma-separated module names).
"""

import importlib
import logging
import os
from importlib import metadata

log = logging.getLogger(__name__)


PLUGINS = "domainbed.plugins"  # full extensions: algorithms, datasets, sweep hooks
SWEEP_PLUGINS = "domainbed.sweep_plugins"  # torch-free parts: sweep options and hooks only
_loaded_groups = set()


def load_plugins(group: str = PLUGINS) -> None:
    """Import every extension of ``group`` (once), and the ``DOMAINBED_PLUGINS`` modules.

    ``domainbed.sweep_plugins`` lets a command that only lists jobs or reads records (sweep
    status, collect_results) load an extension's sweep options without its torch models.
    """
    if group in _loaded_groups:
        return
    _loaded_groups.add(group)
    names = []
    try:
        eps = metadata.entry_points(group=group)
    except TypeError:  # Python < 3.10 style API
        eps = metadata.entry_points().get(group, [])
    names.extend(ep.value for ep in eps)
    names.extend(n.strip() for n in os.environ.get("DOMAINBED_PLUGINS", "").split(",") if n.strip())
    for name in dict.fromkeys(names):
        try:
            importlib.import_module(name)
        except ImportError as exc:
            log.warning("could not load domainbed plugin %s: %s", name, exc)
