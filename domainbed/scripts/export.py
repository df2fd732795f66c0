"""Export a model folder's weights for timm or torchvision.

``python -m domainbed.scripts.export --model DIR --to timm|torchvision [--output FILE]``

Writes a safetensors state dict in the target library's own keys (default
``DIR/<format>/model.safetensors``) and a JSON beside it with the model name, class names,
input pipeline and the lines that load it with that library alone (see docs/models.md).
"""

import argparse
import sys

from domainbed.errors import DomainBedError, one_line


def parse_args(argv=None) -> argparse.Namespace:
    from domainbed.model_folder.export import FORMATS
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="a model folder")
    p.add_argument("--to", required=True, choices=FORMATS, dest="fmt")
    p.add_argument("--output", default=None, help="the safetensors file to write")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from domainbed.model_folder.export import export
    try:
        info = export(args.model, args.fmt, args.output)
    except DomainBedError as exc:
        print(f"export: error: {one_line(exc, last=False)}", file=sys.stderr)
        return 1
    print(f"{info['format']} weights of {info['model']} written: {info['path']}")
    print(info["load"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
