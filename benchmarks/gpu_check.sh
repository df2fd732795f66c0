#!/usr/bin/env bash
# GPU checks, for a machine with an NVIDIA GPU and PyTorch (CI has no GPU):
#   bash benchmarks/gpu_check.sh [WORK_DIR]
# 1. the tests marked `gpu`, and the CPU suite's training tests, which use the GPU when
#    there is one (resume after SIGKILL, MA/SWAD, soups of runs trained on the GPU);
# 2. the README's first command (the embedded recipe) on the GPU, timed.
# Installs the package without dependencies (offline); falls back to PYTHONPATH.
set -u -o pipefail
export PYTHONUNBUFFERED=1
WORK=${1:-${TMPDIR:-/tmp}/domainbed_gpu_check}
mkdir -p "$WORK"
if ! python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >"$WORK/pip.log" 2>&1; then
    echo "pip install -e . failed (see $WORK/pip.log); using PYTHONPATH"
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" DOMAINBED_PLUGINS=domainbed_aux
fi
python3 - <<'PY'
import torch
print("torch", torch.__version__, "| cuda", torch.version.cuda, "|",
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "NO GPU")
PY
status=0
echo "== tests on the GPU"
timeout "${GPU_TEST_TIMEOUT:-900}" python3 -m pytest -q -p no:cacheprovider tests/domainbed/test_gpu.py tests/domainbed/training/test_train.py \
    tests/domainbed/algorithms/test_trajectory.py tests/domainbed_aux/scoring/test_soups.py tests/domainbed/lib/test_weights.py || status=1
echo "== the embedded recipe (README's first command) on the GPU"
start=$(date +%s.%N)
python3 -m domainbed.scripts.sweep launch --recipe sweeps/embedded.json \
    --output_dir "$WORK/runs" --data_dir "$WORK/data" --skip_confirmation \
    >"$WORK/recipe.log" 2>&1 || status=1
end=$(date +%s.%N)
tail -n 30 "$WORK/recipe.log"
python3 -c "print('recipe wall time: %.1f s' % ($end - $start))"
exit $status
