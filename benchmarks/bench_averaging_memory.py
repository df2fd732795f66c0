"""Peak memory of uniform weight averaging as the number of members M grows.

For each M, a fresh subprocess averages M ResNet-50-sized members (the shapes of
torchvision's ``resnet50(weights=None).state_dict()``, random values, safetensors files)
with :func:`domainbed_aux.averaging.uniform_soup` and reports its peak resident memory
(``VmHWM`` of ``/proc/self/status``, reset after imports through ``/proc/self/clear_refs``)
minus the resident memory before averaging, as a multiple of one model's size.
Only 4 distinct files are written; the M member files are hard links to them, each loaded
as a distinct member. Target: within 3x one model, whatever M.

    python benchmarks/bench_averaging_memory.py [--members 2 5 10 20 40 60]
        [--accum float64 float32]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

N_DISTINCT = 4


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status (Linux only)")


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def child(files, accum: str) -> None:
    import gc

    import torch

    from domainbed_aux.averaging import uniform_soup
    gc.collect()
    reset = _reset_peak()
    base_rss = _status_kb("VmRSS")
    start = time.perf_counter()
    result = uniform_soup(files, accum_dtype=getattr(torch, accum))
    seconds = time.perf_counter() - start
    peak = _status_kb("VmHWM")
    model_bytes = sum(t.numel() * t.element_size() for t in result.state_dict.values())
    print(json.dumps({"base_kb": base_rss, "peak_kb": peak, "peak_reset": reset,
                      "seconds": seconds, "model_bytes": model_bytes,
                      "n_members": len(result.members)}))


def write_members(folder: str, max_members: int):
    import torch
    import torchvision

    from domainbed.lib.weights import save_weights
    shapes = torchvision.models.resnet50(weights=None).state_dict()
    distinct = []
    for i in range(N_DISTINCT):
        gen = torch.Generator().manual_seed(i)
        state = {k: (torch.randn(v.shape, generator=gen) if v.is_floating_point() else v.clone())
                 for k, v in shapes.items()}
        # frozen batch norm: every member has the same statistics
        state.update({k: v.clone() for k, v in shapes.items() if "running_" in k})
        path = os.path.join(folder, f"distinct{i}.safetensors")
        save_weights(path, state, metadata={"bench": i})
        distinct.append(path)
    members = []
    for m in range(max_members):
        path = os.path.join(folder, f"member{m:03d}.safetensors")
        try:
            os.link(distinct[m % N_DISTINCT], path)
        except OSError:
            os.symlink(distinct[m % N_DISTINCT], path)
        members.append(path)
    return members


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, nargs="+", default=[2, 5, 10, 20, 40, 60])
    parser.add_argument("--accum", nargs="+", default=["float64", "float32"],
                        choices=["float64", "float32"])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--files", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.files, args.accum[0])
        return
    with tempfile.TemporaryDirectory(prefix="bench_avg_") as folder:
        members = write_members(folder, max(args.members))
        print(f"{'accum':>8} {'M':>4} {'model MB':>9} {'peak growth MB':>15} "
              f"{'x model':>8} {'seconds':>8}")
        for accum in args.accum:
            for m in args.members:
                out = subprocess.run([sys.executable, __file__, "--child", "--accum", accum,
                                      "--files", *members[:m]], check=True,
                                     capture_output=True, text=True)
                row = json.loads(out.stdout.strip().splitlines()[-1])
                growth_mb = (row["peak_kb"] - row["base_kb"]) / 1024
                model_mb = row["model_bytes"] / 2 ** 20
                note = "" if row["peak_reset"] else "  (peak not reset: includes imports)"
                print(f"{accum:>8} {m:>4} {model_mb:>9.1f} {growth_mb:>15.1f} "
                      f"{growth_mb / model_mb:>8.2f} {row['seconds']:>8.1f}{note}", flush=True)


if __name__ == "__main__":
    main()
