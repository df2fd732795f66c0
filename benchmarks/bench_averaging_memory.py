"""Peak memory of every merge rule for M ResNet-50-sized members, against one model's size.

Members have the shapes of torchvision's ``resnet50(weights=None).state_dict()`` (97.7 MiB in
float32), random values and identical batch-norm statistics (frozen batch norm), and are
written as safetensors files in a temporary folder (deleted afterwards); theta_0 is one more
such file. Each (rule, M) runs in a fresh subprocess that merges the files with the rule's
default hyperparameters (``domainbed_aux.merging``: members streamed from disk, tensor by
tensor) and reports its peak resident memory (``VmHWM`` of ``/proc/self/status``, reset after
the imports through ``/proc/self/clear_refs``) minus the resident memory before merging, as a
multiple of one model's size. ``--distinct K`` writes K different files and lets the M
members cycle through them as hard links (default: M distinct files).

Data-aware rules (``--data_rules fisher regmean``) merge ``--data_members`` members of a
real ResNet-50 (its initialisation plus noise) on ``--n_examples`` random 224x224 images;
they report the same peak and the seconds per member, from which the time of M members
follows (they stream too: memory does not grow with M).

    python benchmarks/bench_averaging_memory.py [--members 60] [--rules uniform ties ...]
        [--accum float32] [--distinct K] [--data_rules fisher regmean] [--data_members 3]
        [--n_examples 16]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

DATA_FREE = ["uniform", "task_arithmetic", "ties", "dare_linear", "dare_ties", "model_stock",
             "slerp", "slerp_tangent"]


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


class ResNetData:
    """Random 224x224 images and a ResNet-50 whose ``predict`` is its forward."""

    def __init__(self, n_classes: int = 1000):
        import torch
        import torchvision

        class Net(torchvision.models.ResNet):
            def predict(self, x):
                return self(x)
        self.net = Net(torchvision.models.resnet.Bottleneck, [3, 4, 6, 3],
                       num_classes=n_classes).eval()
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(64, 3, 224, 224, generator=g)
        self.y = torch.randint(0, n_classes, (64,), generator=g)

    def batches(self, n):
        for start in range(0, min(n, len(self.x)), 8):
            stop = min(start + 8, n)
            yield self.x[start:stop], self.y[start:stop]

    def model(self, state):
        self.net.load_state_dict(state)
        return self.net.eval()


def child(rule_name: str, files, theta_0: str, accum: str, n_examples: int) -> None:
    import gc

    import torch

    from domainbed_aux.merging import MergeInputs, get_rule
    torch.set_num_threads(1)
    rule = get_rule(rule_name)
    data = ResNetData() if "train_data" in rule.needs else None
    hparams = rule.defaults()
    if "n_examples" in hparams:
        hparams["n_examples"] = n_examples
    inputs = MergeInputs([(f"m{i}", f) for i, f in enumerate(files)], theta_0=theta_0,
                         val_acc_of_member={f"m{i}": 1.0 for i in range(len(files))},
                         data=data, accum_dtype=getattr(torch, accum))
    gc.collect()
    reset = _reset_peak()
    base_rss = _status_kb("VmRSS")
    start = time.perf_counter()
    result = rule.merge(inputs, hparams)
    seconds = time.perf_counter() - start
    peak = _status_kb("VmHWM")
    seen = set()
    model_bytes = 0
    for value in result.state_dict.values():
        if value.data_ptr() not in seen:
            seen.add(value.data_ptr())
            model_bytes += value.numel() * value.element_size()
    print(json.dumps({"base_kb": base_rss, "peak_kb": peak, "peak_reset": reset,
                      "seconds": seconds, "model_bytes": model_bytes,
                      "n_members": len(files)}))


def write_files(folder: str, n_members: int, n_distinct: int, realistic: bool):
    """theta_0 and the members' files (hard links when fewer distinct files are asked)."""
    import torch
    import torchvision

    from domainbed.lib.weights import save_weights
    torch.manual_seed(0)
    shapes = torchvision.models.resnet50(weights=None).state_dict()

    def state(seed: int, scale: float):
        gen = torch.Generator().manual_seed(seed)
        out = {}
        for key, value in shapes.items():
            if not value.is_floating_point() or "running_" in key:
                out[key] = value.clone()  # frozen batch norm: the same in every member
            elif realistic:  # a real initialisation plus noise: the network runs sanely
                out[key] = value + scale * torch.randn(value.shape, generator=gen)
            else:
                out[key] = torch.randn(value.shape, generator=gen)
        return out
    theta_0 = os.path.join(folder, "theta0.safetensors")
    save_weights(theta_0, state(10_000, 0.0))
    distinct = []
    for i in range(n_distinct):
        path = os.path.join(folder, f"distinct{i:03d}.safetensors")
        save_weights(path, state(i, 0.01))
        distinct.append(path)
    members = []
    for m in range(n_members):
        path = os.path.join(folder, f"member{m:03d}.safetensors")
        try:
            os.link(distinct[m % n_distinct], path)
        except OSError:
            shutil.copyfile(distinct[m % n_distinct], path)
        members.append(path)
    return theta_0, members


def run(rule: str, files, theta_0: str, accum: str, n_examples: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", rule, "--accum", accum,
                          "--theta_0", theta_0, "--n_examples", str(n_examples),
                          "--files", *files], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def show(rule: str, row: dict, extra: str = "") -> None:
    growth_mb = (row["peak_kb"] - row["base_kb"]) / 1024
    model_mb = row["model_bytes"] / 2 ** 20
    note = "" if row["peak_reset"] else "  (peak not reset: includes imports)"
    print(f"{rule:>16} {row['n_members']:>4} {model_mb:>9.1f} {growth_mb:>15.1f} "
          f"{growth_mb / model_mb:>8.2f} {row['seconds']:>9.1f}{extra}{note}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, nargs="+", default=[60])
    parser.add_argument("--rules", nargs="*", default=DATA_FREE)
    parser.add_argument("--accum", default="float32", choices=["float64", "float32"])
    parser.add_argument("--distinct", type=int, default=None,
                        help="distinct member files (default: one per member)")
    parser.add_argument("--data_rules", nargs="*", default=[])
    parser.add_argument("--data_members", type=int, default=3)
    parser.add_argument("--n_examples", type=int, default=16)
    parser.add_argument("--tmp", default=None, help="where the temporary folder goes")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--theta_0", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--files", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.files, args.theta_0, args.accum, args.n_examples)
        return
    header = (f"{'rule':>16} {'M':>4} {'model MB':>9} {'peak growth MB':>15} {'x model':>8} "
              f"{'seconds':>9}")
    with tempfile.TemporaryDirectory(prefix="bench_merge_", dir=args.tmp) as folder:
        if args.rules:
            most = max(args.members)
            theta_0, members = write_files(folder, most, args.distinct or most, False)
            print(f"data-free rules, {args.accum} accumulation, members streamed from disk "
                  f"({args.distinct or most} distinct files)")
            print(header)
            for rule in args.rules:
                for m in args.members:
                    show(rule, run(rule, members[:m], theta_0, args.accum, args.n_examples))
        if args.data_rules:
            sub = os.path.join(folder, "data")
            os.makedirs(sub)
            theta_0, members = write_files(sub, args.data_members, args.data_members, True)
            print(f"data-aware rules on a ResNet-50, {args.n_examples} training examples "
                  "(224x224) per member, one CPU thread")
            print(header + "  seconds per member")
            for rule in args.data_rules:
                row = run(rule, members, theta_0, args.accum, args.n_examples)
                show(rule, row, f"  {row['seconds'] / row['n_members']:>8.1f}")


if __name__ == "__main__":
    main()
