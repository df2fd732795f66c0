"""Images/s of augmented training batches: our image-folder pipeline vs upstream's.

    python benchmarks/bench_data_pipeline.py [--per_class 40] [--workers 2] [--steps 20]
        [--rounds 5]

Generates a synthetic image folder (``--envs`` domains x ``--classes`` classes x
``--per_class`` JPEGs of about 500 x 400 pixels), then measures, in the same run and with
the same number of loaders, workers and batch size:

- reference: upstream's pipeline, one ``torchvision.datasets.ImageFolder`` per domain with
  the v1 PIL transforms (``transforms.train_transform``) and a ``DataLoader`` that samples
  with replacement (upstream's infinite loader);
- ours, cached: ``ImageFolder`` with ``decode_cache`` on (the cache is built first; its
  build time is printed, not counted), v2 uint8 transforms, ``infinite_loader``;
- ours, uncached: the same without the cache (Pillow decodes every image).

Each measurement starts its loaders, discards ``--warmup`` steps (worker start-up, first
reads), then times ``--steps`` steps of one batch per domain; the main process reads every
pixel of each batch once (a sum), as a training step would. Besides images/s it reports the
CPU time of the main process and all workers per image (and the main process's share),
which other load on the machine disturbs less. Rounds interleave the pipelines (A B A B
...) so that such load hits them alike; each ratio is the median over rounds of ours over
the reference of the same round; the load average is printed at start and end. Not a test:
speed figures come from here, never from assertions.
"""

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def make_folder(root: str, envs: int, classes: int, per_class: int, width: int,
                height: int, seed: int = 0) -> int:
    """JPEGs (quality 90) of smooth colour fields, shapes and noise, sizes within +-10%."""
    from PIL import Image, ImageDraw
    rng = np.random.RandomState(seed)
    n = 0
    for e in range(envs):
        for c in range(classes):
            folder = os.path.join(root, f"env{e}", f"class{c}")
            os.makedirs(folder, exist_ok=True)
            for k in range(per_class):
                w = int(width * rng.uniform(0.9, 1.1))
                h = int(height * rng.uniform(0.9, 1.1))
                yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
                colour = rng.uniform(0, 255, (3, 3))
                field = (colour[:, 0] * (xx / w)[..., None] + colour[:, 1] * (yy / h)[..., None]
                         + colour[:, 2] * 0.5)
                field += rng.normal(0, 12, field.shape)
                image = Image.fromarray(np.clip(field / 1.5, 0, 255).astype(np.uint8))
                draw = ImageDraw.Draw(image)
                for _ in range(6):
                    x0, y0 = rng.randint(0, w - 40), rng.randint(0, h - 40)
                    draw.ellipse([x0, y0, x0 + rng.randint(20, w // 2),
                                  y0 + rng.randint(20, h // 2)],
                                 fill=tuple(int(v) for v in rng.randint(0, 256, 3)))
                image.save(os.path.join(folder, f"img_{k:04d}.jpg"), quality=90)
                n += 1
    return n


def reference_loaders(root, envs, batch_size, workers, size):
    """Upstream's pipeline: torchvision ImageFolder + v1 PIL transforms + DataLoader."""
    import torch
    from torch.utils.data import DataLoader, RandomSampler
    from torchvision.datasets import ImageFolder

    from domainbed.datasets import transforms as T
    loaders = []
    for e in range(envs):
        dataset = ImageFolder(os.path.join(root, f"env{e}"), transform=T.train_transform(size))
        sampler = RandomSampler(dataset, replacement=True, num_samples=10 ** 9,
                                generator=torch.Generator().manual_seed(e))
        loaders.append(iter(DataLoader(dataset, batch_size=batch_size, sampler=sampler,
                                       num_workers=workers, drop_last=True)))
    return loaders


def our_loaders(root, envs, batch_size, workers, size, cached):
    from domainbed.datasets import get_dataset_class
    from domainbed.lib.fast_data_loader import infinite_loader
    dataset = get_dataset_class("ImageFolder")(root, [], {"decode_cache": cached,
                                                          "image_size": size})
    assert len(dataset) == envs
    return [infinite_loader(dataset[e], batch_size, 0, e, 0, workers) for e in range(envs)]


def _cpu_seconds(pids) -> float:
    """User + system CPU time of the processes ``pids`` (Linux ``/proc``; 0 elsewhere)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
        except (OSError, IndexError, ValueError):
            return 0.0
    return total / os.sysconf("SC_CLK_TCK")


def _children():
    """Pids of this process's children (the loader workers; Linux ``/proc``)."""
    pids = []
    try:
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/children") as f:
                pids.extend(int(p) for p in f.read().split())
    except OSError:
        pass
    return pids


def measure(make, steps: int, warmup: int):
    """``(images/s, CPU ms per image, main-process CPU ms per image)`` over ``steps`` steps
    after ``warmup`` steps; the CPU time is that of the main process and every worker
    (robust to other load on the machine, unlike images/s). The loaders are closed
    afterwards."""
    loaders = make()
    for _ in range(warmup):
        for it in loaders:
            next(it)
    pids = [os.getpid()] + _children()
    images = 0
    cpu_start, main_start = _cpu_seconds(pids), _cpu_seconds(pids[:1])
    start = time.perf_counter()
    for _ in range(steps):
        for it in loaders:
            x, _ = next(it)
            float(x.sum())  # read every pixel once, as a training step does
            images += x.shape[0]
    elapsed = time.perf_counter() - start
    cpu = _cpu_seconds(pids) - cpu_start
    main_cpu = _cpu_seconds(pids[:1]) - main_start
    del loaders  # shuts the workers down before the next measurement
    return images / elapsed, 1000 * cpu / images, 1000 * main_cpu / images


def _load() -> str:
    try:
        return " ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def _median(values):
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else 0.5 * (values[mid - 1] + values[mid])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", help="image folder to use or create (default: a temporary one)")
    p.add_argument("--envs", type=int, default=3)
    p.add_argument("--classes", type=int, default=7)
    p.add_argument("--per_class", type=int, default=40)
    p.add_argument("--width", type=int, default=500)
    p.add_argument("--height", type=int, default=400)
    p.add_argument("--image_size", type=int, default=224)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--workers", type=int, default=2, help="workers per loader")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--skip_uncached", action="store_true")
    args = p.parse_args(argv)

    import logging

    import torch
    import torchvision
    import PIL
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    root = args.root or tempfile.mkdtemp(prefix="bench_data_pipeline_")
    try:
        if not os.path.isdir(os.path.join(root, "env0")):
            start = time.perf_counter()
            n = make_folder(root, args.envs, args.classes, args.per_class, args.width,
                            args.height)
            print(f"generated {n} JPEGs (~{args.width}x{args.height}) in {root} in "
                  f"{time.perf_counter() - start:.0f} s")
        start = time.perf_counter()
        our_loaders(root, args.envs, 1, 0, args.image_size, cached=True)
        print(f"decode cache ready in {time.perf_counter() - start:.1f} s (built on first use)")

        pipelines = {"reference (torchvision ImageFolder + PIL v1)":
                     lambda: reference_loaders(root, args.envs, args.batch_size, args.workers,
                                               args.image_size),
                     "ours, decode cache":
                     lambda: our_loaders(root, args.envs, args.batch_size, args.workers,
                                         args.image_size, cached=True)}
        if not args.skip_uncached:
            pipelines["ours, no cache (Pillow decodes)"] = (
                lambda: our_loaders(root, args.envs, args.batch_size, args.workers,
                                    args.image_size, cached=False))
        reference = "reference (torchvision ImageFolder + PIL v1)"
        results = {name: [] for name in pipelines}
        print(f"load average at start: {_load()}")
        for r in range(args.rounds):
            for name, make in pipelines.items():  # A B (C) A B (C) ...: load hits all alike
                rate, cpu_ms, main_ms = measure(make, args.steps, args.warmup)
                results[name].append((rate, cpu_ms, main_ms))
                print(f"round {r + 1}: {name}: {rate:.0f} images/s, {cpu_ms:.2f} CPU ms/image "
                      f"({main_ms:.2f} in the main process)", flush=True)
        print(f"load average at end: {_load()}")
        print(f"\nmachine: {platform.platform()}, {platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} CPUs; python {platform.python_version()}, torch "
              f"{torch.__version__}, torchvision {torchvision.__version__}, Pillow "
              f"{PIL.__version__}")
        print(f"setup: {args.envs} loaders x {args.workers} workers, batch {args.batch_size}, "
              f"{args.image_size} px, {args.steps} timed steps after {args.warmup} warm-up, "
              f"{args.rounds} interleaved rounds; ratios: median over rounds of ours / the "
              f"reference of the same round")
        print(f"{'pipeline':40s} {'images/s':>9s} {'ratio':>6s} {'(rounds)':>18s} "
              f"{'CPU ms/image':>13s} {'ratio':>6s} {'main ms':>8s}")
        ref = results[reference]
        for name, runs in results.items():
            rates = [run[0] / base[0] for run, base in zip(runs, ref)]
            cpus = [base[1] / run[1] for run, base in zip(runs, ref) if run[1]]
            per_round = ",".join(f"{v:.1f}" for v in rates)
            print(f"{name:40s} {_median([r[0] for r in runs]):9.0f} {_median(rates):5.2f}x "
                  f"{per_round:>18s} {_median([r[1] for r in runs]):13.2f} "
                  f"{_median(cpus) if cpus else float('nan'):5.2f}x "
                  f"{_median([r[2] for r in runs]):8.2f}")
    finally:
        if not args.root:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
