"""Classify images with a saved model folder.

``python -m domainbed.scripts.predict --model DIR --images FOLDER_OR_FILES [--output
preds.csv] [--batch_size 64] [--topk 3]``, or on a registered dataset's environment:
``--model DIR --data_dir DATA --env K [--dataset NAME] [--split in|out|all]
[--trial_seed T]`` (``in`` / ``out`` are the splits the model's training made).

An ``ImageFolder``-shaped folder (``<folder>/<class>/<image>``, the model's class names)
and a dataset split also print the accuracy. Unreadable files are listed and counted (exit
status 2), never dropped silently. Core only: imports nothing from ``domainbed_aux``.
"""

import argparse
import csv
import io
import logging
import sys
from typing import List

from domainbed.errors import DomainBedError, one_line


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="a model folder (merge's --output_dir)")
    p.add_argument("--images", nargs="+", default=None, metavar="PATH",
                   help="image files and/or folders (searched recursively)")
    p.add_argument("--dataset", default=None,
                   help="a registered dataset (default: the model's) with --data_dir/--env")
    p.add_argument("--data_dir", default=None, help="root of the registered datasets")
    p.add_argument("--env", default=None, help="environment index or name (with --data_dir)")
    p.add_argument("--split", default="in", choices=("in", "out", "all"),
                   help="which part of the environment: the in or out split of the "
                        "model's training (default in), or all of it")
    p.add_argument("--trial_seed", type=int, default=None,
                   help="trial seed of the split (default: the model's, when it has one)")
    p.add_argument("--output", default=None, help="CSV file of the predictions")
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--topk", type=int, default=1, help="classes per image in the CSV")
    p.add_argument("--num_workers", type=int, default=2, help="image-decoding processes")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: automatic)")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if (args.images is None) == (args.env is None):
        p.error("give either --images PATH ... or --data_dir DATA --env K")
    if args.topk < 1 or args.batch_size < 1:
        p.error("--topk and --batch_size must be at least 1")
    return args


def csv_text(predictions, topk: int) -> str:
    """One row per item (readable or not): the item, its top-k classes and probabilities,
    the true label and whether it is right (when known), the error for an unreadable file."""
    k = min(topk, len(predictions.class_names))
    header = ["item"] + [c for i in range(1, k + 1)
                         for c in ((f"prediction_{i}", f"probability_{i}") if k > 1
                                   else ("prediction", "probability"))]
    labelled = predictions.labels is not None
    header += (["label", "correct"] if labelled else []) + ["error"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    probs, indices = predictions.topk(k)
    predicted = predictions.indices.tolist()
    for row, item in enumerate(predictions.items):
        cells: List[object] = [item]
        for p, i in zip(probs[row].tolist(), indices[row].tolist()):
            cells += [predictions.class_names[i], f"{p:.6f}"]
        if labelled:
            label = int(predictions.labels[row])
            cells += [predictions.class_names[label], int(predicted[row] == label)]
        writer.writerow(cells + [""])
    blanks = [""] * (2 * k + (2 if labelled else 0))
    for path, why in predictions.unreadable:
        writer.writerow([path] + blanks + [why])
    return out.getvalue()


def run(args) -> int:
    from domainbed.lib.misc import atomic_write_text, show_progress
    from domainbed.model_folder import load_model
    from domainbed.model_folder.predict import predict, predict_dataset
    model = load_model(args.model, args.device)
    progress = show_progress(args.no_progress)
    if args.images is not None:
        predictions = predict(model, args.images, args.batch_size, args.num_workers, progress)
        where = ", ".join(args.images)
    else:
        from domainbed.model_folder.data import dataset_split
        data, where = dataset_split(model.config, args.data_dir, args.env, args.split,
                                    args.trial_seed, args.dataset)
        predictions = predict_dataset(model, data, args.batch_size, 0, progress)
    print(f"{len(predictions)} images predicted by {args.model} "
          f"({model.config['dataset']}, {len(model.class_names)} classes)")
    if predictions.accuracy is not None:
        print(f"accuracy on {where}: {100 * predictions.accuracy:.2f}% "
              f"({predictions.n_correct}/{len(predictions.labels)})")
    if args.output:
        atomic_write_text(args.output, csv_text(predictions, args.topk))
        print(f"predictions written: {args.output}")
    elif predictions.labels is None and len(predictions) <= 20:
        for item, name in zip(predictions.items, predictions.names()):
            print(f"  {name}\t{item}")
    if predictions.unreadable:
        print(f"{len(predictions.unreadable)} unreadable file(s), not predicted:",
              file=sys.stderr)
        for path, why in predictions.unreadable:
            print(f"  {path}: {why}", file=sys.stderr)
        return 2
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        return run(args)
    except DomainBedError as exc:
        print(f"predict: error: {one_line(exc, last=False)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
