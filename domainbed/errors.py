"""Errors that the command-line tools turn into a one-line message (no traceback)."""


class DomainBedError(Exception):
    """A user-facing error: its message names the bad value and the fix."""


class DataError(DomainBedError):
    """A dataset is missing, malformed or corrupt."""


class WeightFileError(DomainBedError):
    """A weight file is missing, unsafe, or does not fit the model."""
