#!/usr/bin/env bash
# Installs what is missing, builds, and runs KVWorld on the default model (assets/models/v2, 256x256; the
# smaller 128x128 model is assets/models/default):
#   - with a display: the kvworld app (CUDA backend with CUDA-GL interop when a GPU is present, else CPU);
#   - without one (or with --headless): kvworld-cli generates a clip from a simulator trace into out/run/.
# Extra arguments go to the app (or to `kvworld-cli generate` when headless).
set -euo pipefail
cd "$(dirname "$0")"
headless=0
if [[ "${1:-}" == "--headless" ]]; then headless=1; shift; fi
scripts/install-deps.sh
# The same build tree and commands as test.sh and a user's `cmake -S . -B build && cmake --build build`
# (no -G: a second generator on the same tree would be refused); only the programs run.sh needs.
cmake -S . -B build >/dev/null
cmake --build build -j "$(nproc)" --target kvworld-cli kvworld-sim $( [[ -d build/app/gui/CMakeFiles/kvworld.dir ]] && echo kvworld )

model=assets/models/v2
[[ -f $model/model.json ]] || model=assets/models/default
[[ -f $model/model.json ]] || { echo "run.sh: no trained model in assets/models; using the tiny test model (it shows no world)"; model=tests/data/tiny; }

if [[ $headless == 0 && ( -n "${DISPLAY:-}" || -n "${WAYLAND_DISPLAY:-}" ) && -x build/app/gui/kvworld ]]; then
  echo "run.sh: starting kvworld on $model (F1 for help)"
  exec build/app/gui/kvworld --model "$model" "$@"
fi

# Headless: a trace from the simulator's player, generated on the best backend available.
backend=cpu
frames=32
if build/app/cli/kvworld-cli info --model "$model" >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then backend=cuda; frames=320; fi
# The trace sits beside the run's folder: generate replaces out/run as a whole (--overwrite: a rerun's).
mkdir -p out && rm -f out/run/trace.json  # where earlier versions kept it
build/sim/kvworld-sim trace --world-seed "${WORLD_SEED:-901}" --policy-seed 7 --frames "$frames" --out out/trace.json
echo "run.sh: no display — generating $frames frames on the $backend backend (INT4 keys/values, groups of 64, Taylor correction)"
build/app/cli/kvworld-cli generate --model "$model" --trace out/trace.json --out out/run --overwrite \
  --backend "$backend" --k-bits 4 --v-bits 4 --group 64 --correction taylor --ground-truth "$@"
echo "run.sh: frames in out/run/frames, the simulator's ground truth in out/run/ground_truth, metrics in out/run/metrics.json"
