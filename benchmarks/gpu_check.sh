#!/usr/bin/env bash
# Every GPU check of the project in one prepared run, sized for a lent GPU machine (about 8 minutes on one GPU):
# the CUDA tests, then the model-only and end-to-end speed tables (issue 7's GPU targets).
#
#   HFAN_SHARED=/path/to/shared bash benchmarks/gpu_check.sh OUT_DIR
#
# Uses the machine's own python3 with torch, torchvision and OpenCV (the package runs from src/, nothing is
# installed). From the shared folder it needs the reference fixture (3 files) and the blackswan frames, 26 MB.
# With the device tool, stage them first in a git-ignored folder of the checkout (here, in the repo root):
#   echo /.gpu_shared/ >> .git/info/exclude
#   mkdir -p .gpu_shared/fixtures/hfan_reference_b0 .gpu_shared/data/davis16_mini/JPEGImages/480p
#   cp ../shared/fixtures/hfan_reference_b0/{state_dict_b0,inputs,outputs_b0_hfan}.pt .gpu_shared/fixtures/hfan_reference_b0/
#   cp -r ../shared/data/davis16_mini/JPEGImages/480p/blackswan .gpu_shared/data/davis16_mini/JPEGImages/480p/
# then: run(command="HFAN_SHARED=.gpu_shared bash benchmarks/gpu_check.sh $OUT", carry=[".gpu_shared"], timeout_s=580)
# Each step has its own time limit so that one slow step leaves the others their time; logs go to OUT_DIR.
set -uo pipefail
out=$(realpath -m "${1:-gpu_check_out}")
mkdir -p "$out"
if [ -n "${HFAN_SHARED:-}" ]; then export HFAN_SHARED=$(realpath -m "$HFAN_SHARED"); fi
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python=${PYTHON:-python3}

{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  "$python" -c "import torch, torchvision, cv2; print('torch', torch.__version__, 'cuda', torch.version.cuda,
'torchvision', torchvision.__version__, 'opencv', cv2.__version__, '|', torch.cuda.get_device_name())"
  nproc
} 2>&1 | tee "$out/device.txt"

step() {  # step NAME SECONDS COMMAND...: run with a limit, log to OUT_DIR/NAME.txt, report the exit status
  local name=$1 limit=$2
  shift 2
  echo "== $name (limit ${limit}s): $*"
  timeout "$limit" "$@" 2>&1 | tee "$out/$name.txt"
  echo "== $name: exit ${PIPESTATUS[0]}" | tee -a "$out/summary.txt"
}

step tests 150 "$python" -m pytest -q -ra -p no:cacheprovider tests/inference/test_cuda.py tests/inference/test_fast_paths.py
# Model only, HFAN-Small at the official scale: faithful, batched, whole-image and CUDA-graph paths, fp16.
step model_speed 240 "$python" benchmarks/model_speed.py --device cuda --compile --batches 1,4,16 --threads 8
# End to end with RAFT (random weights: speed only) on the GPU, prefetching on and off.
step segment_speed 150 "$python" benchmarks/segment_speed.py --device cuda --flow raft_large --frames 50 \
    --presets hfan-small --batch-size 8 --threads 8
