#!/usr/bin/env bash
# ResNet-50 training throughput on ONE GPU, for a machine with an NVIDIA GPU and PyTorch:
#   bash benchmarks/bench_gpu.sh [WORK_DIR]
# 1. one run at a time: fp32, bf16 autocast, channels_last, bf16 + channels_last;
# 2. N runs packed on the same GPU at once (N in $PACK), each its own process, measured
#    over the same window (a barrier after warm-up), with their total img/s;
# then a table. Each measurement is benchmarks/bench_gpu.py (model, loss, backward and
# SGD step on random images: the arithmetic, without the data pipeline).
# Settings (environment): GPU (id, default 0), MODEL (resnet50), BATCH (64), BENCH_SECONDS
# (20, timed per measurement), PACK ("1 2 4"), PACK_PRECISION (bf16), PACK_CHANNELS_LAST (1),
# DEVICE (cuda; `DEVICE=cpu MODEL=tiny BENCH_SECONDS=1 PACK="1 2"` checks the script itself
# on a CPU).
set -u -o pipefail
export PYTHONUNBUFFERED=1
WORK=${1:-${TMPDIR:-/tmp}/domainbed_bench_gpu}
GPU=${GPU:-0}
MODEL=${MODEL:-resnet50}
BATCH=${BATCH:-64}
SECONDS_EACH=${BENCH_SECONDS:-20}
DEVICE=${DEVICE:-cuda}
PACK=${PACK:-1 2 4}
PACK_PRECISION=${PACK_PRECISION:-bf16}
PACK_CHANNELS_LAST=${PACK_CHANNELS_LAST:-1}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RESULTS="$WORK/results.jsonl"
mkdir -p "$WORK"
: >"$RESULTS"
status=0

bench() {  # bench LABEL ARGS...: one process, its JSON line tagged with LABEL
    local label=$1
    shift
    local line
    if line=$(CUDA_VISIBLE_DEVICES=$GPU python3 "$HERE/bench_gpu.py" --device "$DEVICE" \
            --model "$MODEL" --batch_size "$BATCH" --seconds "$SECONDS_EACH" "$@" \
            2>>"$WORK/errors.log"); then
        printf '{"label": "%s", "packed": 1, "run": %s}\n' "$label" "$line" >>"$RESULTS"
    else
        echo "FAILED: $label (see $WORK/errors.log)"
        status=1
    fi
}

DEVICE="$DEVICE" python3 - <<'PY' || exit 1
import os, torch
if os.environ["DEVICE"] == "cpu":
    print("torch", torch.__version__, "| CPU (a check of this script, not a GPU benchmark)")
elif not torch.cuda.is_available():
    raise SystemExit("bench_gpu.sh: torch sees no GPU (run it on a GPU machine)")
else:
    print("torch", torch.__version__, "| cuda", torch.version.cuda, "|",
          torch.cuda.get_device_name(0))
PY

echo "== one run at a time ($MODEL, batch $BATCH, ${SECONDS_EACH} s each)"
bench "fp32" --precision fp32
bench "bf16 autocast" --precision bf16
bench "fp32 channels_last" --precision fp32 --channels_last
bench "bf16 + channels_last" --precision bf16 --channels_last

pack_flags=(--precision "$PACK_PRECISION")
if [ "$PACK_CHANNELS_LAST" = "1" ]; then
    pack_flags+=(--channels_last)
fi
for n in $PACK; do
    echo "== $n runs packed on $DEVICE $GPU (${pack_flags[*]})"
    barrier="$WORK/barrier_$n"
    rm -rf "$barrier"
    pids=()
    for i in $(seq 1 "$n"); do
        CUDA_VISIBLE_DEVICES=$GPU python3 "$HERE/bench_gpu.py" --device "$DEVICE" \
            --model "$MODEL" \
            --batch_size "$BATCH" --seconds "$SECONDS_EACH" "${pack_flags[@]}" \
            --barrier "$barrier" --n_procs "$n" >"$WORK/pack_${n}_$i.json" \
            2>>"$WORK/errors.log" &
        pids+=("$!")
    done
    ok=1
    for pid in "${pids[@]}"; do
        wait "$pid" || ok=0
    done
    if [ "$ok" = "1" ]; then
        for i in $(seq 1 "$n"); do
            printf '{"label": "packed x%s", "packed": %s, "run": %s}\n' "$n" "$n" \
                "$(cat "$WORK/pack_${n}_$i.json")" >>"$RESULTS"
        done
    else
        echo "FAILED: $n packed runs (see $WORK/errors.log; out of GPU memory?)"
        status=1
    fi
done

python3 - "$RESULTS" <<'PY'
import json, sys
from collections import OrderedDict
rows = OrderedDict()
for line in open(sys.argv[1]):
    entry = json.loads(line)
    rows.setdefault(entry["label"], []).append(entry)
print(f"{'configuration':<24} {'runs':>4} {'img/s per run':>14} {'total img/s':>12} "
      f"{'peak GB/run':>12}")
base = None
for label, entries in rows.items():
    runs = [e["run"] for e in entries]
    total = sum(r["img_per_s"] for r in runs)
    base = base or total
    peak = max((r["peak_mem_gb"] or 0) for r in runs)
    print(f"{label:<24} {len(runs):>4} {total / len(runs):>14.1f} {total:>12.1f} "
          f"{peak:>12.2f}   x{total / base:.2f}")
PY
exit $status
