"""The torch-free part of the extension: sweep options, job transformers, the recipe runner,
and the names of its algorithms (so that listing jobs and reading records need no torch)."""

from domainbed.catalogue import declare_extension_algorithms
from domainbed_aux import sweep_plugin, sweep_recipe  # noqa: F401  (registrations)

# in the order domainbed_aux.algorithms registers them
declare_extension_algorithms(["InterTraining", "Ratatouille", "Fusing", "LinearProbe", "LPFT"])
