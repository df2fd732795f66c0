"""What every bad-input case asserts: the exit status, the one line (per problem) that
names the problem, no traceback, and that nothing was written or marked done."""

import os
from typing import Callable, Dict, List, Sequence, Tuple


def run_cli(main: Callable, argv: Sequence[str], capsys) -> Tuple[int, List[str]]:
    """(exit status, non-empty output lines) of ``main(argv)`` run in-process; an argparse
    error (SystemExit) gives its status."""
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "Traceback" not in text, text
    return code, [line for line in text.splitlines() if line.strip()]


def errors(lines: List[str]) -> List[str]:
    return [line for line in lines if "error:" in line]


def assert_one_error(lines: List[str], fragment: str, n: int = 1) -> None:
    found = errors(lines)
    assert len(found) == n, lines
    assert any(fragment in line for line in found), (fragment, found)


def tree(root) -> Dict[str, bytes]:
    """Every file under ``root`` with its bytes ({} when root does not exist)."""
    out = {}
    for path, _, files in os.walk(str(root)):
        for name in files:
            full = os.path.join(path, name)
            with open(full, "rb") as f:
                out[os.path.relpath(full, str(root))] = f.read()
    return out
