"""The full extension (``domainbed.plugins``, see setup.py): the torch-free hooks and the
ratatouille family's algorithms."""

from domainbed_aux import algorithms, hooks  # noqa: F401  (registrations)
