"""What every command line does with an error: one line per problem, never a traceback.

- bad input (``ValidationError``): one line per problem, exit status 2, nothing written;
- another ``DomainBedError``: its one line;
- ``OSError`` (a folder that is a file, not writable, a full disk): one line naming the path
  and what to do;
- Ctrl-C: one line, exit status 130 (``exit_on_interrupt``, around ``main`` when the module
  runs as a script: ``main`` itself lets ``KeyboardInterrupt`` through, so that the
  in-process launcher stops on it).
"""

import argparse
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from domainbed.errors import os_error_line, print_errors  # noqa: F401 (the CLIs' helpers)

INTERRUPTED = 130  # the shell's status of a command stopped by SIGINT


def exit_on_interrupt(main: Callable[[], Optional[int]],
                      message: Optional[str] = "interrupted (Ctrl-C)") -> int:
    """``main()``'s exit status; on Ctrl-C one line (``message``; None: ``main`` said it
    already) and 130 instead of a traceback."""
    try:
        return int(main() or 0)
    except KeyboardInterrupt:
        try:
            if message:
                print(message, file=sys.stderr)
            sys.stderr.flush()
        except (OSError, ValueError, AttributeError):
            pass
        return INTERRUPTED


def typed_launcher_options(launcher: Any, parser: argparse.ArgumentParser,
                           args: argparse.Namespace, minimal_argv: Sequence[str]
                           ) -> Tuple[Dict[str, Any], List[str]]:
    """The launcher's options of a parsed command line and the names of those the user
    set (they differ from what ``minimal_argv``, the command without options, gives): a
    plan's launcher defaults replace only the others."""
    options = launcher.options_from_args(args)
    defaults = launcher.options_from_args(parser.parse_args(list(minimal_argv)))
    return options, [k for k in options if options[k] != defaults.get(k)]


def add_launcher_arguments(parser: argparse.ArgumentParser, launcher: Any) -> None:
    """The launcher's command-line options (its ``options_class``), generated in a section
    of ``--help`` named after it."""
    from domainbed.lib.options import add_dataclass_arguments
    if getattr(launcher, "options_class", None) is not None:
        add_dataclass_arguments(parser.add_argument_group(f"{launcher.name} launcher"),
                                launcher.options_class)

