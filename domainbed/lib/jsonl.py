"""Decode a ``results.jsonl`` file: one JSON object per line, tolerant of bad lines.

``orjson`` decodes when installed (3x faster on records) and gives the records ``json``
gives: a line it refuses (``NaN``, invalid UTF-8, lone surrogates...) goes to ``json``, and a
file that may hold an integer beyond 64 bits goes to ``json`` whole. Lines that are not JSON
objects (a torn last line of a killed run, a blank line, an array) are skipped with a warning
and counted. Torch-free.
"""

import json
import logging
from typing import Any, Callable, List, Tuple

log = logging.getLogger(__name__)


def _json_decoder() -> Callable[[bytes], Any]:
    """``orjson.loads`` when installed, else ``json.loads``."""
    try:
        import orjson
    except ImportError:
        return json.loads
    return orjson.loads


_fast_loads = _json_decoder()
_DIGITS_TO_ZERO = bytes.maketrans(b"0123456789", b"0" * 10)
_LONG_DIGIT_RUN = b"0" * 19  # 19 digits: an integer that may not fit in 64 bits


def _may_hold_a_long_integer(data: bytes) -> bool:
    """Whether ``data`` may hold an integer of 19 digits or more. ``orjson`` turns integers
    beyond 64 bits into floats where ``json`` keeps them exact: such files go to ``json``.
    Long runs of digits after a ``.`` (fractions) do not count."""
    runs = data.translate(_DIGITS_TO_ZERO)
    start = runs.find(_LONG_DIGIT_RUN)
    while start != -1:
        if data[start - 1:start] != b".":
            return True
        end = start + len(_LONG_DIGIT_RUN)
        while runs[end:end + 1] == b"0":
            end += 1
        start = runs.find(_LONG_DIGIT_RUN, end)
    return False


def _warn_bad_line(path: str, lines: List[Any], i: int) -> None:
    last = not any(rest.strip() for rest in lines[i + 1:])
    where = "last line (truncated write?)" if last else f"line {i + 1}"
    log.warning("%s: skipping undecodable %s", path, where)


def _decode_lines(text: str, path: str) -> Tuple[List[dict], int]:
    """Decode line by line, skipping (with a warning) lines that are not JSON objects."""
    records, n_bad = [], 0
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        n_bad += _keep(records, record, path, lines, i)
    return records, n_bad


def _decode_lines_fast(data: bytes, path: str) -> Tuple[List[dict], int]:
    """``_decode_lines`` with the fast decoder, ``json`` for the lines it refuses."""
    records, n_bad = [], 0
    lines = data.split(b"\n")
    for i, line in enumerate(lines):
        try:
            record = _fast_loads(line)
        except ValueError:  # orjson.JSONDecodeError is a ValueError, and so is a blank line
            if not line.strip():
                continue
            try:
                record = json.loads(line.decode("utf-8", errors="replace"))
            except ValueError:
                record = None
        n_bad += _keep(records, record, path, lines, i)
    return records, n_bad


def _keep(records: List[dict], record, path: str, lines: list, i: int) -> int:
    """Append a decoded record; a line that is no JSON object is warned about and counted
    (returns 1)."""
    if not isinstance(record, dict):
        _warn_bad_line(path, lines, i)
        return 1
    records.append(record)
    return 0


def decode_records(data: bytes, path: str = "<results>") -> Tuple[List[dict], int]:
    """``(records, n_bad_lines)`` of the bytes of a ``results.jsonl``; ``path`` names it in
    the warnings."""
    if _fast_loads is not json.loads and not _may_hold_a_long_integer(data):
        return _decode_lines_fast(data, path)
    text = data.decode("utf-8", errors="replace")
    # without orjson: the whole file as one JSON array (one decoder call per run)
    try:
        records = json.loads("[" + text.strip().replace("\n", ",") + "]")
        if all(isinstance(r, dict) for r in records):
            return records, 0
    except ValueError:
        pass
    return _decode_lines(text, path)


def read_records_file(path: str) -> Tuple[List[dict], int]:
    """``(records, n_bad_lines)`` of the file at ``path``; raises ``OSError`` as ``open``."""
    with open(path, "rb") as f:
        data = f.read()
    return decode_records(data, path)
