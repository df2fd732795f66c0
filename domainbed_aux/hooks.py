"""The extension's torch-free entry point (``domainbed.sweep_plugins``, see setup.py): what
the core needs to list this package's names and plan its sweeps without importing torch.

- the registries' indexes search this package: its algorithms (``algorithms``) are indexed
  from source with their metadata (init kind, report family), as the core's are;
- the sweep options, job transformer, before-launch hook and plan reader of the recipe.
"""

from domainbed.algorithms.registry import ALGORITHM_REGISTRY
from domainbed.datasets.registry import DATASET_REGISTRY
from domainbed_aux import sweep_plugin, sweep_recipe  # noqa: F401  (registrations)

# a registration anywhere in this package is indexed (read from source, not imported)
ALGORITHM_REGISTRY.search("domainbed_aux")
DATASET_REGISTRY.search("domainbed_aux")
