#!/usr/bin/env bash
# One device command that does everything the GPU machine is needed for after the first training runs:
# build (CUDA + GUI with EGL), fine-tune the default model for TRAIN_MINUTES while the GPU tests and the
# compute-sanitizer checks run beside it, then — with the GPU to themselves — the attention benchmark with
# PyTorch's SDPA baseline, the end-to-end benchmark, the evaluation (quality bar + grid) of the new model on
# the CUDA backend, and the GUI in offscreen mode with CUDA-GL interop. Results are re-packed into
# $OUT/results.tar.gz after every phase, so a run cut short still returns what it finished.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}
R=/tmp/kvw/r
mkdir -p "$OUT" "$R"
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 ))s] $*" | tee -a "$R/timeline.txt"; }
pack() { tar -czf "$OUT/results.tar.gz.tmp" -C /tmp/kvw r && mv "$OUT/results.tar.gz.tmp" "$OUT/results.tar.gz"; }
TRAIN_MINUTES=${TRAIN_MINUTES:-5}

bash .debs/unpack-debs.sh .debs >/dev/null 2>&1
export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader > "$R/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__)" >> "$R/gpu.txt"
stamp "configure"
cmake -S . -B /tmp/kvw/build -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 -DKVW_GUI=ON > "$R/configure.log" 2>&1
ninja -C /tmp/kvw/build kvworld-sim > "$R/build_sim.log" 2>&1 || { stamp "sim build failed"; tail -20 "$R/build_sim.log"; pack; exit 1; }
stamp "dataset"
/tmp/kvw/build/sim/kvworld-sim dataset --out /dev/shm/kvw_data --episodes "${EPISODES:-5000}" --frames 32 --seed-base 1000 \
  --threads "$(nproc)" > "$R/dataset.log" 2>&1
stamp "fine-tuning for $TRAIN_MINUTES min"
PYTHONUNBUFFERED=1 python3 tools/train/train.py --data /dev/shm/kvw_data --config config/model-default.json --init assets/models/default \
  --ckpt /tmp/kvw/ckpt2.pt --export /tmp/kvw/model --log "$R/train_log_2.json" --minutes "$TRAIN_MINUTES" --batch 16 \
  --lr "${LR:-2e-4}" --warmup 50 --ema 0.995 --total-steps "${TOTAL_STEPS:-700}" --eval-episodes 8 > "$R/train.log" 2>&1 &
train_pid=$!
stamp "build (all but the GUI)"
nice ninja -C /tmp/kvw/build -k 0 kvworld-cli test_cuda_ops test_parity test_session > "$R/build.log" 2>&1 || grep -E "error" "$R/build.log" | head
B=/tmp/kvw/build
stamp "GPU tests"
$B/tests/test_cuda_ops > "$R/gpu_tests.log" 2>&1; grep -E "^\[  (PASSED|FAILED)" "$R/gpu_tests.log"
F1='Formats/CudaAttention.MatchesCpuOnDequantizedKV/9:Formats/CudaAttention.MatchesCpuOnDequantizedKV/13:Formats/CudaQuantize.BytesIdenticalToCpu/5:CudaOps.ElementwiseOpsMatchCpu'
for tool in memcheck racecheck; do
  timeout 120 compute-sanitizer --tool $tool $B/tests/test_cuda_ops --gtest_filter="$F1" > "$R/sanitizer_$tool.log" 2>&1
  echo "compute-sanitizer $tool rc=$?: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$R/sanitizer_$tool.log" | tail -1)" | tee -a "$R/timeline.txt"
done
pack
stamp "build the GUI"
nice ninja -C $B -k 0 kvworld > "$R/build_gui.log" 2>&1; echo "gui build rc=$?"
stamp "waiting for training"
wait $train_pid; echo "train rc=$?"; tail -3 "$R/train.log"
mkdir -p "$OUT/model" && cp /tmp/kvw/model/* "$OUT/model/" 2>/dev/null
pack
stamp "attention benchmark + SDPA baseline"
timeout 90 $B/app/cli/kvworld-cli bench-attention --iters 20 --json "$R/bench_attention.json" 2>&1 | tee "$R/bench_attention.txt"
timeout 60 python3 tools/bench/sdpa_baseline.py --json "$R/sdpa_baseline.json" 2>&1 | tee -a "$R/bench_attention.txt"
stamp "end-to-end benchmark"
timeout 60 $B/app/cli/kvworld-cli bench --backend cuda --model /tmp/kvw/model --chunks 20 --json "$R/bench_e2e.json" 2>&1 | tee "$R/bench_e2e.txt"
pack
stamp "evaluation: quality bar"
timeout 100 $B/app/cli/kvworld-cli eval --backend cuda --model /tmp/kvw/model --mode quality --traces 4 --out "$R/eval_quality" 2>&1 | tail -8
pack
stamp "evaluation: grid"
timeout 150 $B/app/cli/kvworld-cli eval --backend cuda --model /tmp/kvw/model --mode grid --traces 2 --frames 32 --out "$R/eval_grid" > "$R/eval_grid.txt" 2>&1
tail -5 "$R/eval_grid.txt"
python3 tools/plot/plot_eval.py "$R/eval_grid/eval.json" "$R/plots" > /dev/null 2>&1
pack
stamp "GUI offscreen with CUDA-GL interop"
if [[ -x $B/app/gui/kvworld ]]; then
  timeout 40 $B/app/gui/kvworld --offscreen --backend cuda --model /tmp/kvw/model --world-seed 901 --frames 48 --shot-every 24 --out "$R/gui_main" > "$R/gui_main.log" 2>&1; echo "gui main rc=$?"
  timeout 40 $B/app/gui/kvworld --offscreen --backend cuda --model /tmp/kvw/model --world-seed 902 --frames 32 --shot-every 32 --ab --out "$R/gui_ab" > "$R/gui_ab.log" 2>&1; echo "gui ab rc=$?"
  timeout 30 $B/app/gui/kvworld --offscreen --backend cuda --model /tmp/kvw/model --world-seed 903 --frames 16 --shot-every 16 --memory --out "$R/gui_mem" > "$R/gui_mem.log" 2>&1; echo "gui memory rc=$?"
fi
pack
stamp "done"
