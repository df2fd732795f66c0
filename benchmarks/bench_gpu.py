"""Training throughput (images/s) of one model on one device, outside the training loop.

    python benchmarks/bench_gpu.py --model resnet50 --device cuda --precision bf16 \
        --channels_last --batch_size 64 --seconds 20
    python benchmarks/bench_gpu.py --model tiny --device cpu --steps 3     # smoke test

Each step is a forward pass, cross-entropy, a backward pass and an SGD step on random
images (the data pipeline is left out: this measures the arithmetic). Warm-up steps come
first; with ``--barrier DIR --n_procs N`` the process then waits until N processes are
ready, so that N runs packed on one GPU measure the same window. Prints one JSON object.
``benchmarks/bench_gpu.sh`` runs the grid and prints the table.
"""

import argparse
import contextlib
import json
import os
import sys
import time


def build_model(name: str, num_classes: int):
    """``resnet50`` / ``resnet18`` (torchvision, random weights: nothing is downloaded) or
    ``tiny``, a 3-layer CNN for smoke tests."""
    import torch.nn as nn
    if name == "tiny":
        return nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, num_classes))
    try:
        import torchvision
    except ImportError:
        raise SystemExit("bench_gpu: --model resnet* needs torchvision (pip install "
                         "torchvision), or use --model tiny") from None
    if name not in ("resnet18", "resnet50"):
        raise SystemExit(f"bench_gpu: unknown --model {name!r}; choose tiny, resnet18 or "
                         "resnet50")
    return getattr(torchvision.models, name)(weights=None, num_classes=num_classes)


def _wait_for_peers(barrier: str, n_procs: int, timeout_s: float = 600.0) -> None:
    os.makedirs(barrier, exist_ok=True)
    open(os.path.join(barrier, f"ready.{os.getpid()}"), "w").close()
    deadline = time.monotonic() + timeout_s
    while len([f for f in os.listdir(barrier) if f.startswith("ready.")]) < n_procs:
        if time.monotonic() > deadline:
            raise SystemExit(f"bench_gpu: fewer than {n_procs} processes reached {barrier} "
                             f"within {timeout_s:.0f} s")
        time.sleep(0.01)


def run(args) -> dict:
    """Warm up, then time training steps; returns the measurement as a dict."""
    import torch
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_gpu: --device cuda but torch sees no GPU; use --device cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels
    model = build_model(args.model, args.num_classes).to(device)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    images = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=device)
    images = images.contiguous(memory_format=memory_format)
    labels = torch.randint(0, args.num_classes, (args.batch_size,), device=device)
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.precision]
    scaler = torch.amp.GradScaler(device.type) if args.precision == "fp16" else None

    def autocast():
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=dtype)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            loss = torch.nn.functional.cross_entropy(model(images), labels)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        return loss

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(args.warmup):
        step()
    sync()
    if args.barrier:
        _wait_for_peers(args.barrier, args.n_procs)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    n_steps, start = 0, time.perf_counter()
    while True:
        loss = step()
        n_steps += 1
        if args.seconds is None and n_steps >= args.steps:
            break
        if args.seconds is not None and n_steps % 5 == 0:
            sync()
            if time.perf_counter() - start >= args.seconds:
                break
    sync()
    elapsed = time.perf_counter() - start
    loss_value = float(loss.detach().float())
    if loss_value != loss_value:  # NaN: the numbers below would measure a broken run
        raise SystemExit(f"bench_gpu: the loss is NaN with --precision {args.precision}")
    peak = torch.cuda.max_memory_allocated(device) / 1024 ** 3 if device.type == "cuda" else None
    return {"model": args.model, "device": str(device), "precision": args.precision,
            "channels_last": bool(args.channels_last), "batch_size": args.batch_size,
            "image_size": args.image_size, "steps": n_steps, "seconds": round(elapsed, 4),
            "img_per_s": round(n_steps * args.batch_size / elapsed, 2),
            "peak_mem_gb": None if peak is None else round(peak, 3), "loss": loss_value}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet50", help="tiny, resnet18 or resnet50")
    p.add_argument("--device", default="cuda", help="cuda, cuda:1, cpu ...")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32",
                   help="fp32, or autocast to bf16 / fp16 (fp16 with a gradient scaler)")
    p.add_argument("--channels_last", action="store_true", help="NHWC model and images")
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--image_size", type=int, default=None,
                   help="default: 224 (32 for --model tiny)")
    p.add_argument("--num_classes", type=int, default=7)
    p.add_argument("--warmup", type=int, default=None, help="default: 10 (1 on a CPU)")
    p.add_argument("--steps", type=int, default=50, help="timed steps (unless --seconds)")
    p.add_argument("--seconds", type=float, default=None,
                   help="time steps for this long instead of a fixed count")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--barrier", default=None, metavar="DIR",
                   help="after warm-up, wait until --n_procs processes are ready in DIR")
    p.add_argument("--n_procs", type=int, default=1)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.image_size is None:
        args.image_size = 32 if args.model == "tiny" else 224
    if args.warmup is None:
        args.warmup = 1 if args.device == "cpu" else 10
    for name in ("batch_size", "image_size", "steps", "n_procs"):
        if getattr(args, name) < 1:
            raise SystemExit(f"bench_gpu: --{name} must be >= 1, got {getattr(args, name)}")
    print(json.dumps(run(args), sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
