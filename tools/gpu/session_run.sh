#!/usr/bin/env bash
# One device command of the second day (GPU machine, see ../shared/device/README.md), in phases chosen by
# PHASES (space-separated; default all):
#   parity  first of all: regenerate the PyTorch parity fixture (tools/train/parity.py: tests/data/tiny,
#           tests/data/parity_tiny.safetensors; returned under $R/parity) and run the C++ parity test on it, then
#           check_consistency.py on a small dataset with the tiny config, source warped and walked (and again with
#           "recall_first": false); stops the
#           command when either fails
#   train   fine-tune the model in INIT (assets/models/default) for TRAIN_MINUTES with the model's own rollouts
#           (ROLLOUT_STEPS Euler steps) as context for a fraction SELF_CONTEXT of each batch (--self-context)
#           while everything else builds and runs beside it;
#           exported to $OUT/model. Data: EPISODES episodes of EPISODE_FRAMES frames, worlds SEED_BASE.. ;
#           batch BATCH; TRAIN_ARGS: more train.py flags (e.g. --absolute-position). A checkpoint left by the previous command on a still-warm machine
#           (/tmp/kvw/ckpt_s2.pt) is resumed instead of INIT.
#   tests   the GPU test suite, then compute-sanitizer memcheck + racecheck on the attention tests
#   gui     the GUI offscreen with the CUDA backend: must name "CUDA-GL interop" as its presentation path
#   bench   bench-attention with PyTorch's SDPA baseline (unless BENCH_ATTENTION=0), and the end-to-end benchmark
#   quality kvworld-cli eval --mode quality on the newly trained model (or INIT without training); QUALITY_ARGS: more eval flags
#   grid    kvworld-cli eval --mode grid (GRID_ARGS, or several: GRIDS="name|args;...")
#   film    2-minute rollouts (FILM_WORLDS), every 15 s beside the simulator, with per-second frame statistics
#           (the README's film strip; FILM_EARLY: the same for INIT while the training runs)
#   worldchange  on the CPU cores, beside the GPU phases: kvworld-cli eval --mode world-change WC_ARGS (default: 64
#           traces, each replayed in a pool of 2048 other worlds, the 8 most alike at the start and 8 at random scored)
#   sweep   several quality evaluations: SWEEP="name|model dir|extra eval args;..." (e.g. other --cache-t);
#           SWEEP_EARLY (same form) runs while the training does; VARIANTS makes sampler variants of INIT
# Results are packed into $OUT/results.tar.gz after every phase, so a run cut short returns what it did.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}
R=/tmp/kvw/r
mkdir -p "$OUT" "$R"
PHASES=" ${PHASES:-train tests gui bench quality} "
has() { [[ "$PHASES" == *" $1 "* ]]; }
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 ))s] $*" | tee -a "$R/timeline.txt"; }
pack() { tar -czf "$OUT/results.tar.gz.tmp" -C /tmp/kvw r && mv "$OUT/results.tar.gz.tmp" "$OUT/results.tar.gz"; }
# Several quality evaluations: "name|model dir|extra eval args;..." ("$MODEL" in a dir is the trained model).
run_sweep() {
  IFS=';' read -ra entries <<< "$1"
  for e in "${entries[@]}"; do
    IFS='|' read -r name mdir extra <<< "$e"
    mdir=${mdir//\$MODEL/$MODEL}
    stamp "sweep $name: $mdir $extra"
    timeout "${QUALITY_TIMEOUT:-150}" $B/app/cli/kvworld-cli eval --backend cuda --model "$mdir" --mode quality --traces "${QUALITY_TRACES:-4}" \
      $extra --out "$R/sweep_$name" > "$R/sweep_$name.txt" 2>&1; tail -7 "$R/sweep_$name.txt" | tee -a "$R/timeline.txt"
    pack
  done
}
# 2-minute rollouts of the quality evaluation (worlds "world_seed:policy_seed ...": eval's i-th rollout is world
# 1600000 + 7919 i under policy 4242 + i, same noise), every 15 s beside the simulator's frames ($R/<name>_<world>;
# tools/plot/plot_film.py makes the README's film strip), and per-second frame statistics of model and simulator
# (tools/plot/film_stats.py): run_film MODEL_DIR WORLDS NAME
run_film() {
  local pids=() ws w ps d k f
  for ws in $2; do
    w=${ws%%:*}; ps=${ws#*:}; d=$R/$3_$w
    stamp "$3: world $w policy $ps, a 2-minute rollout ($1)"
    $B/sim/kvworld-sim trace --world-seed "$w" --policy-seed "$ps" --frames 1920 --context-frames 4 --out /tmp/kvw/$3_$w.json > /dev/null
    rm -rf /tmp/kvw/$3_$w
    timeout 120 $B/app/cli/kvworld-cli generate --backend cuda --model "$1" --trace /tmp/kvw/$3_$w.json --out /tmp/kvw/$3_$w \
      --ground-truth --no-video > "$d.log" 2>&1; echo "$3 $w rc=$?"
    mkdir -p "$d/frames" "$d/ground_truth"
    for k in 0 1 2 3 4 5 6 7 8; do
      f=$(printf "frame_%05d.png" $(( 4 + (k * 1919) / 8 )))
      cp "/tmp/kvw/$3_$w/frames/$f" "$d/frames/" && cp "/tmp/kvw/$3_$w/ground_truth/$f" "$d/ground_truth/"
    done
    cp /tmp/kvw/$3_$w.json "$d/trace.json"
    python3 tools/plot/film_stats.py /tmp/kvw/$3_$w "$d/stats.json" > "$d.stats.log" 2>&1 &
    pids+=($!)
  done
  for k in "${pids[@]}"; do wait "$k"; done
}
INIT=${INIT:-assets/models/default}
MODEL=$INIT
# Sampler variants of INIT for sweeps: VARIANTS="name:key=value,key=value;..." -> /tmp/kvw/v_name (keys of
# model.json's "sampler": steps, shift, source_sigma, cache_t, guidance, warp_eye_height; warp_source=true|false;
# "context." keys: context.window, context.recall, context.recall_first=true|false).
IFS=';' read -ra variants <<< "${VARIANTS:-}"
for v in "${variants[@]}"; do
  vdir=/tmp/kvw/v_${v%%:*}
  rm -rf "$vdir" && cp -r "$INIT" "$vdir"
  python3 -c 'import json,sys; p=sys.argv[2]; j=json.load(open(p))
for kv in sys.argv[1].split(","):
    k, x = kv.split("="); sec, k = ("context", k[8:]) if k.startswith("context.") else ("sampler", k)
    j[sec][k] = int(x) if k in ("steps", "window", "recall") else (x == "true" if x in ("true", "false") else float(x))
json.dump(j, open(p, "w"), indent=2)' "${v#*:}" "$vdir/model.json"
done

bash .debs/unpack-debs.sh .debs >/dev/null 2>&1
export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader > "$R/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__)" >> "$R/gpu.txt"
stamp "configure ($PHASES)"
B=/tmp/kvw/build
cmake -S . -B $B -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 -DKVW_GUI=ON > "$R/configure.log" 2>&1
if has parity; then
  stamp "parity fixture"
  ninja -C $B test_parity kvworld-sim > "$R/build_parity.log" 2>&1 || { stamp "parity build failed"; tail -20 "$R/build_parity.log"; pack; exit 1; }
  python3 tools/train/parity.py > "$R/parity.log" 2>&1 || { stamp "parity.py failed"; tail -20 "$R/parity.log"; pack; exit 1; }
  mkdir -p "$R/parity/tiny" && cp tests/data/parity_tiny.safetensors "$R/parity/" && cp tests/data/tiny/* "$R/parity/tiny/"
  $B/tests/test_parity > "$R/test_parity.log" 2>&1; rc=$?; grep -E "^\[  (PASSED|FAILED)|Failure" "$R/test_parity.log" | tee -a "$R/timeline.txt"
  [[ $rc == 0 ]] || { stamp "parity test failed"; tail -40 "$R/test_parity.log"; pack; exit 1; }
  rm -rf /tmp/kvw/cons_data
  # the tiny model with the source turned and walked (warp_eye_height), at its 32x32
  $B/sim/kvworld-sim dataset --out /tmp/kvw/cons_data --episodes 2 --frames 32 --seed-base 777 --threads 2 --width 32 --height 32 > /dev/null 2>&1
  python3 -c 'import json; j=json.load(open("config/model-tiny.json")); j["sampler"].update(warp_source=True, warp_eye_height=2.5)
json.dump(j, open("/tmp/kvw/tiny_walked.json", "w"))'
  (cd tools/train && timeout 200 python3 check_consistency.py /tmp/kvw/cons_data /tmp/kvw/tiny_walked.json) > "$R/check_consistency.log" 2>&1
  rc=$?; tail -3 "$R/check_consistency.log" | tee -a "$R/timeline.txt"
  [[ $rc == 0 ]] || { stamp "check_consistency failed"; tail -30 "$R/check_consistency.log"; pack; exit 1; }
  # the same with both recall slots by field-of-view overlap ("context": {"recall_first": false})
  python3 -c 'import json; j=json.load(open("/tmp/kvw/tiny_walked.json")); j["context"]["recall_first"] = False
json.dump(j, open("/tmp/kvw/tiny_overlap.json", "w"))'
  (cd tools/train && timeout 200 python3 check_consistency.py /tmp/kvw/cons_data /tmp/kvw/tiny_overlap.json) > "$R/check_consistency_overlap.log" 2>&1
  rc=$?; tail -3 "$R/check_consistency_overlap.log" | tee -a "$R/timeline.txt"
  [[ $rc == 0 ]] || { stamp "check_consistency (recall_first false) failed"; tail -30 "$R/check_consistency_overlap.log"; pack; exit 1; }
  pack
fi
if has train; then
  ninja -C $B kvworld-sim > "$R/build_sim.log" 2>&1 || { stamp "sim build failed"; tail -20 "$R/build_sim.log"; pack; exit 1; }
  # Episode e is world SEED_BASE + e (the evaluation's worlds start at 900000). A warm machine keeps the data.
  # EPISODE_FRAMES > 32 makes longer self-context rollouts (the last chunks see up to 2*window chunks of drift).
  data_id="${EPISODES:-6000}x${EPISODE_FRAMES:-32}@${SEED_BASE:-1000}"
  if [[ "$(cat /dev/shm/kvw_data.id 2>/dev/null)" != "$data_id" ]]; then
    stamp "dataset $data_id"
    rm -rf /dev/shm/kvw_data
    $B/sim/kvworld-sim dataset --out /dev/shm/kvw_data --episodes "${EPISODES:-6000}" --frames "${EPISODE_FRAMES:-32}" --seed-base "${SEED_BASE:-1000}" \
      --threads "$(nproc)" > "$R/dataset.log" 2>&1 && echo "$data_id" > /dev/shm/kvw_data.id
  fi
  stamp "fine-tuning from $INIT for ${TRAIN_MINUTES:-6} min, self-context ${SELF_CONTEXT:-0.5}"
  PYTHONUNBUFFERED=1 python3 tools/train/train.py --data /dev/shm/kvw_data --config config/model-default.json --init "$INIT" \
    --ckpt /tmp/kvw/ckpt_s2.pt --export /tmp/kvw/model --log "$R/train_log.json" --minutes "${TRAIN_MINUTES:-6}" --batch "${BATCH:-16}" \
    --lr "${LR:-2e-4}" --warmup 50 --ema 0.995 --total-steps "${TOTAL_STEPS:-1000}" --self-context "${SELF_CONTEXT:-0.5}" \
    --rollout-steps "${ROLLOUT_STEPS:-4}" --eval-episodes 16 ${TRAIN_ARGS:-} > "$R/train.log" 2>&1 &
  train_pid=$!
fi
stamp "build"
nice ninja -C $B -k 0 ${BUILD_TARGETS:-} > "$R/build.log" 2>&1; echo "build rc=$?" | tee -a "$R/timeline.txt"; grep -E "error" "$R/build.log" | head
if has worldchange; then
  stamp "world change: eval --mode world-change ${WC_ARGS:---traces 64 --resample-pool 2048 --resample-nearest 8}"
  (nice -n 15 timeout "${WC_TIMEOUT:-480}" $B/app/cli/kvworld-cli eval --backend cpu --model "$INIT" --mode world-change \
    ${WC_ARGS:---traces 64 --resample-pool 2048 --resample-nearest 8} --out "$R/world_change" > "$R/world_change.txt" 2>&1
   echo "world change rc=$?" >> "$R/world_change.txt") &
  wc_pid=$!
fi
if has tests; then
  stamp "GPU tests"
  $B/tests/test_cuda_ops > "$R/gpu_tests.log" 2>&1; grep -E "^\[  (PASSED|FAILED)" "$R/gpu_tests.log" | tee -a "$R/timeline.txt"
  F1='Formats/CudaAttention.MatchesCpuOnDequantizedKV/9:Formats/CudaAttention.MatchesCpuOnDequantizedKV/13:Formats/CudaAttention.MatchesCpuOnDequantizedKV/3:Formats/CudaQuantize.BytesIdenticalToCpu/5'
  for tool in ${SANITIZER_TOOLS-memcheck racecheck}; do
    timeout 120 compute-sanitizer --tool $tool $B/tests/test_cuda_ops --gtest_filter="$F1" > "$R/sanitizer_$tool.log" 2>&1
    echo "compute-sanitizer $tool rc=$?: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$R/sanitizer_$tool.log" | tail -1)" | tee -a "$R/timeline.txt"
  done
  pack
fi
if has gui && [[ -x $B/app/gui/kvworld ]]; then
  stamp "GUI offscreen, CUDA backend"
  timeout 40 $B/app/gui/kvworld --offscreen --backend cuda --model "$INIT" --world-seed 901 --frames 48 --shot-every 24 --out "$R/gui_main" > "$R/gui_main.log" 2>&1; echo "gui main rc=$?"
  timeout 40 $B/app/gui/kvworld --offscreen --backend cuda --model "$INIT" --world-seed 902 --frames 32 --shot-every 32 --ab --out "$R/gui_ab" > "$R/gui_ab.log" 2>&1; echo "gui ab rc=$?"
  timeout 40 $B/app/gui/kvworld --offscreen --backend cuda --model "$INIT" --world-seed 903 --frames 32 --shot-every 32 --memory --out "$R/gui_memory" > "$R/gui_memory.log" 2>&1; echo "gui memory rc=$?"
  grep -h -E '"presentation"|fps' "$R"/gui_*/summary.json | tee -a "$R/timeline.txt"
  pack
fi
if has bench; then
  if [[ "${BENCH_ATTENTION:-1}" == 1 ]]; then
    stamp "attention benchmark + SDPA baseline"
    for qb in ${BLOCK_SHAPES:--1}; do  # -1: the kernel's own choice; 0, 1, 2 force a block shape
      timeout 120 $B/app/cli/kvworld-cli bench-attention --iters 20 --block-shape "$qb" --json "$R/bench_attention_shape$qb.json" >> "$R/bench_attention.txt" 2>&1
    done
    timeout 60 python3 tools/bench/sdpa_baseline.py --json "$R/sdpa_baseline.json" >> "$R/bench_attention.txt" 2>&1
    tail -40 "$R/bench_attention.txt"
  fi
  stamp "end-to-end benchmark"
  timeout 60 $B/app/cli/kvworld-cli bench --backend cuda --model "$INIT" --chunks 20 --json "$R/bench_e2e.json" > "$R/bench_e2e.txt" 2>&1
  tail -25 "$R/bench_e2e.txt"
  pack
fi
if has train && [[ -n "${SWEEP_EARLY:-}" ]]; then
  run_sweep "$SWEEP_EARLY"  # beside the training: the evaluation is light on the GPU
fi
if [[ -n "${FILM_EARLY:-}" ]]; then
  run_film "$INIT" "$FILM_EARLY" film_init  # the starting model's rollouts, beside the training
  pack
fi
if has train; then
  stamp "waiting for training"
  wait $train_pid; echo "train rc=$?"; tail -3 "$R/train.log"
  mkdir -p "$OUT/model" && cp /tmp/kvw/model/* "$OUT/model/" 2>/dev/null && MODEL=/tmp/kvw/model
  pack
fi
if has quality; then
  stamp "evaluation: quality bar ($MODEL)"
  timeout "${QUALITY_TIMEOUT:-150}" $B/app/cli/kvworld-cli eval --backend cuda --model "$MODEL" --mode quality --traces "${QUALITY_TRACES:-4}" \
    ${QUALITY_ARGS:-} --out "$R/eval_quality" > "$R/eval_quality.txt" 2>&1; tail -12 "$R/eval_quality.txt"
  pack
fi
if has grid; then
  # GRIDS="name|eval args;..." runs several grids (e.g. the cheap corrections in full, the exact one on a subset)
  IFS=';' read -ra grids <<< "${GRIDS:-grid|${GRID_ARGS:---traces 2 --frames 32}}"
  for g in "${grids[@]}"; do
    IFS='|' read -r name gargs <<< "$g"
    stamp "evaluation: $name ($MODEL) $gargs"
    timeout "${GRID_TIMEOUT:-240}" $B/app/cli/kvworld-cli eval --backend cuda --model "$MODEL" --mode grid $gargs \
      --out "$R/eval_$name" > "$R/eval_$name.txt" 2>&1; tail -5 "$R/eval_$name.txt"
    pack
  done
fi
if has film; then
  run_film "$MODEL" "${FILM_WORLDS:-1600000:4242}" film
  pack
fi
if has sweep; then
  run_sweep "${SWEEP:-}"
fi
if has worldchange; then
  stamp "waiting for world change"
  wait $wc_pid; grep -v -E "screened|rendered " "$R/world_change.txt" | tail -6 | tee -a "$R/timeline.txt"
fi
stamp "done"
pack
