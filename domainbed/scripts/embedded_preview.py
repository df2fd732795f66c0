"""A PNG grid of the embedded datasets: one row per (dataset, domain), a few images each.

    python -m domainbed.scripts.embedded_preview docs/embedded_preview.png [--per_domain 8]
"""

import argparse
import logging

from domainbed.datasets.embedded.preview import save_preview


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", help="PNG file to write")
    parser.add_argument("--datasets", nargs="*", default=None, help="default: all")
    parser.add_argument("--per_domain", type=int, default=8)
    parser.add_argument("--scale", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.info("wrote %s", save_preview(args.output, args.datasets, args.per_domain, args.scale))


if __name__ == "__main__":
    main()
