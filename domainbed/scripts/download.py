"""Download the benchmark datasets and lay them out as the dataset classes read them.

    python -m domainbed.scripts.download --data_dir DIR [--datasets NAME [NAME ...]]

Each dataset is fetched into ``DIR/downloads/`` (resumable ``.part`` files, retries with
backoff), checked, extracted into a staging folder, reorganised, and moved into place with a
completion marker; a dataset whose folder already exists is skipped, so the command can be
re-run after any interruption. The library is ``domainbed.datasets.download``.
"""

import argparse
import logging
import sys
from typing import Optional, Sequence

from domainbed.datasets.download import (DOWNLOADS, aliases, download_datasets,
                                         read_file_list)
from domainbed.errors import DomainBedError
from domainbed.lib.fetch import Fetcher


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--datasets", nargs="+", metavar="NAME",
                        choices=DOWNLOADS.names() + list(aliases()),
                        help=f"default: all of {', '.join(DOWNLOADS.names())}")
    parser.add_argument("--keep_archives", action="store_true",
                        help="keep the downloaded archives in DATA_DIR/downloads")
    parser.add_argument("--retries", type=int, default=5)
    parser.add_argument("--domainnet_duplicates", metavar="FILE",
                        help="list of DomainNet files to remove, one path per line "
                             "relative to domain_net/ (default: the shipped list of 9,431)")
    parser.add_argument("--keep_domainnet_duplicates", action="store_true",
                        help="keep DomainNet's duplicate files")
    parser.add_argument("--no_progress", action="store_true")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        duplicates = (() if args.keep_domainnet_duplicates else
                      read_file_list(args.domainnet_duplicates, strip_prefix="domain_net/")
                      if args.domainnet_duplicates else None)
        outcome = download_datasets(args.data_dir, args.datasets,
                                    Fetcher(retries=args.retries, progress=not args.no_progress),
                                    args.keep_archives, duplicates)
    except (DomainBedError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    failed = [n for n, v in outcome.items() if v not in ("done", "skipped")]
    if failed:
        print(f"error: failed: {', '.join(failed)} (see above); run the command again to "
              f"resume", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
