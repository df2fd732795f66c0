"""The full extension: the ratatouille family's algorithms and sweep options."""

from domainbed_aux import algorithms, sweep_hooks  # noqa: F401  (registrations)
