"""Errors that the command-line tools turn into a one-line message (no traceback)."""


class DomainBedError(Exception):
    """A user-facing error: its message names the bad value and the fix."""


class DataError(DomainBedError):
    """A dataset is missing, malformed or corrupt."""


class WeightFileError(DomainBedError):
    """A weight file is missing, unsafe, or does not fit the model."""


def one_line(exc: BaseException, last: bool = True) -> str:
    """The message of ``exc`` on one line: its last line by default (a data-loader worker's
    error arrives with the worker's traceback before it), else its first."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    return lines[-1] if last else lines[0]
