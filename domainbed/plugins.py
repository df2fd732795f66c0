"""Loads extensions (such as ``domainbed_aux``) that register into the core's registries.

The core never imports an extension by name: extensions announce themselves through the
``domainbed.plugins`` entry-point group (see setup.py) or the ``DOMAINBED_PLUGINS``
environment variable (comma-separated module names).
"""

import importlib
import logging
import os
from importlib import metadata

_loaded = False
log = logging.getLogger(__name__)


def load_plugins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    names = []
    try:
        eps = metadata.entry_points(group="domainbed.plugins")
    except TypeError:  # Python < 3.10 style API
        eps = metadata.entry_points().get("domainbed.plugins", [])
    names.extend(ep.value for ep in eps)
    names.extend(n.strip() for n in os.environ.get("DOMAINBED_PLUGINS", "").split(",") if n.strip())
    for name in dict.fromkeys(names):
        try:
            importlib.import_module(name)
        except ImportError as exc:
            log.warning("could not load domainbed plugin %s: %s", name, exc)
