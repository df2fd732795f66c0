"""Model ratatouille and its family on top of the DomainBed core.

Importing this package registers its algorithms (InterTraining, Ratatouille, Fusing,
LinearProbe) and its sweep options into the core's registries; the core loads it as a
plugin (entry point ``domainbed.plugins`` in setup.py).
"""

from domainbed_aux import algorithms, sweep_plugin, sweep_recipe  # noqa: F401  (registrations)
