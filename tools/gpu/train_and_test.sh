#!/usr/bin/env bash
# One device command (GPU machine, see ../shared/device/README.md): build the project there, generate the
# training data with the simulator, train the default model for TRAIN_MINUTES while the CUDA build and the
# GPU tests run beside it, evaluate, and leave everything that must come back under $OUT.
#   TRAIN_MINUTES (6)  EPISODES (6000)  BATCH (16)  RESUME (0: fresh; 1: continue /tmp/kvw/ckpt.pt)
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT" /tmp/kvw/logs
LOG=/tmp/kvw/logs
TRAIN_MINUTES=${TRAIN_MINUTES:-6}
EPISODES=${EPISODES:-6000}
BATCH=${BATCH:-16}
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 ))s] $*"; }

bash .debs/unpack-debs.sh .debs >/dev/null 2>&1
export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$LOG/gpu.txt"

stamp "configure"
cmake -S . -B /tmp/kvw/build -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 -DKVW_GUI=${KVW_GUI:-OFF} \
  > "$LOG/configure.log" 2>&1 || { cat "$LOG/configure.log"; exit 1; }
stamp "build the simulator"
ninja -C /tmp/kvw/build kvworld-sim > "$LOG/build_sim.log" 2>&1 || { tail -30 "$LOG/build_sim.log"; exit 1; }

if [[ "${RESUME:-0}" == 0 || ! -f /dev/shm/kvw_data/meta.json ]]; then
  stamp "dataset: $EPISODES episodes x 32 frames"
  /tmp/kvw/build/sim/kvworld-sim dataset --out /dev/shm/kvw_data --episodes "$EPISODES" --frames 32 \
    --seed-base 1000 --threads "$(nproc)" > "$LOG/dataset.log" 2>&1 || { tail "$LOG/dataset.log"; exit 1; }
  tail -1 "$LOG/dataset.log"
fi

stamp "training for $TRAIN_MINUTES min"
PYTHONUNBUFFERED=1 python3 tools/train/train.py --data /dev/shm/kvw_data --config config/model-default.json \
  --ckpt /tmp/kvw/ckpt.pt --export "$OUT/model" --log "$LOG/train_log.json" --minutes "$TRAIN_MINUTES" \
  --batch "$BATCH" --total-steps "${TOTAL_STEPS:-6000}" > "$LOG/train.log" 2>&1 &
train_pid=$!

stamp "building everything else (CUDA) beside the training"
nice ninja -C /tmp/kvw/build > "$LOG/build.log" 2>&1; build_rc=$?
stamp "build rc=$build_rc"; grep -E "error" "$LOG/build.log" | head -20
if [[ $build_rc == 0 ]]; then
  stamp "GPU tests"
  /tmp/kvw/build/tests/test_cuda_ops > "$LOG/gpu_tests.log" 2>&1
  grep -E "^\[  (PASSED|FAILED)|tolerance|quantization\]|Failure" "$LOG/gpu_tests.log" | head -80
  (cd /tmp/kvw/build && ctest -L cpu -j 8 --timeout 300 > "$LOG/cpu_tests.log" 2>&1); tail -3 "$LOG/cpu_tests.log"
fi
if [[ -n "${PARITY:-}" ]]; then
  stamp "PyTorch parity data on the GPU machine"
  python3 tools/train/parity.py > "$LOG/parity.log" 2>&1; cat "$LOG/parity.log"
  mkdir -p "$LOG/parity" && cp tests/data/tiny/* tests/data/parity_tiny.safetensors "$LOG/parity/"
fi
stamp "waiting for training"
wait $train_pid; echo "train rc=$?"
tail -4 "$LOG/train.log"
tar -czf "$OUT/results.tar.gz" -C /tmp/kvw logs
stamp "done"; ls -la "$OUT" "$OUT/model" 2>/dev/null
