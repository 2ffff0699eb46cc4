#!/usr/bin/env bash
# Training the latent model (config/model-v2.json) on the GPU machine, one device command a call, resumable in
# pieces across calls and sessions. Needs no build there: the simulator binary travels prebuilt (it links only
# the C and C++ runtimes) in the carried folder .v2/ (kept out of git by .git/info/exclude):
#   .v2/kvworld-sim      build/sim/kvworld-sim from this machine
#   .v2/init/ae, .v2/init/dit   (optional) where to continue from instead of the committed model: an --export (ae)
#                        or --export-fp32 (dit) folder of an earlier call
# The committed model assets/models/v2 (int8, with train_state.json and train_ae_state.json) is where both phases
# continue from by default, and its autoencoder is the one the transformer trains on (AE_DIR). What a call trains
# comes back under $OUT in fp32 and is committed as int8 (kvworld-cli convert-weights --dtype int8): a model that
# only lives on a machine is lost with it (2026-12-05: step 3154 was).
# Phases (PHASES, space-separated):
#   ae    simulator frames at 256x256 (AE_EPISODES x 8 frames, worlds AE_SEED_BASE..), then train_ae.py for
#         AE_MINUTES (continues from .v2/init/ae when it holds an earlier export, else from AE_INIT); the fp32 EMA
#         weights, the log and a strip of held-out reconstructions come back under $OUT/ae. AE_ARGS: more
#         train_ae.py flags. With AE_ARGS=--decoder-only (a sharper decoder for the trained transformer: the
#         encoder and the latent statistics stay), the transformer (/tmp/kvw/v2model, else the committed one) is
#         also written with the new decoder as /tmp/kvw/v2model-dec (tools/train/swap_autoencoder.py), for the
#         eval's MODEL_DIR
#   dit   simulator episodes at 256x256 (EPISODES x EPISODE_FRAMES, worlds SEED_BASE..), encoded once with
#         AE_DIR, then train.py for DIT_MINUTES from INIT (default: the committed assets/models/v2, whose
#         train_state.json continues the schedule and the log; assets/models/default starts again from the pixel
#         model's transformer) or from .v2/init/dit (an earlier --export-fp32); fp32 EMA weights and the log come
#         back under $OUT/dit (at most RETURN_MB of them a call; `rest`, in the next call on the warm machine,
#         returns what is left: return_shards). BATCH (16; auto: 16 on a card of more than 100 GB, else 8).
#         TRAIN_ARGS: more train.py flags. REVISIT_EPISODES > 0: that many revisit episodes
#         (kvworld-sim dataset --revisit, worlds REVISIT_SEED_BASE..) make REVISIT_FRACTION (0.25) of the batches;
#         REVISIT_SIM_ARGS: more dataset flags, e.g. --revisit-synthetic 0.25 (the retrieval curriculum: the
#         earlier view is the returning chunk seen again from nearby). DIT_CONFIG: the model config the trainer
#         takes its sampler from and its export writes (default config/model-v2.json; a copy with another
#         sampler.source_sigma trains that flow source).
#   build (in the background, beside the phases above) kvworld-cli for CUDA sm_90 in /tmp/b (GPU_TESTS=1: also
#         test_cuda_ops, run after the training phases, its log $OUT/test_cuda_ops.log); needs the Debian
#         packages carried in .debs (tools/gpu/device-debs.sh: 9.8 MB, which travels beside the tree and .v2);
#         the log comes back as $OUT/build.log
#   eval  kvworld-cli eval --backend cuda --mode quality (EVAL_ARGS, default --traces 32: 128 one-chunk worlds and
#         16 two-minute rollouts) of the latent model the dit phase exported (/tmp/kvw/v2model, converted to int8
#         first with EVAL_INT8=1, as it would be committed; else the committed one) or of MODEL_DIR, and with
#         EVAL_BASELINE=DIR the same evaluation of DIR at the same time (the column compared with, on this card);
#         then the revisit score (REVISIT=1: --mode revisit, REVISIT_ARGS, default 8 traces at BF16, INT4 and INT2 +
#         taylor), the memory probe (MEMORY=1: --mode memory, MEMORY_ARGS, default 64 revisit episodes at BF16, INT4 and
#         INT2 + taylor) and the paired evaluation of the caches (PAIRED_ARGS) when PAIRED=1; results under $OUT/eval
#   film  2-minute rollouts of FILM_WORLDS ("world:policy ...", eval's rollouts) beside the simulator: a strip and
#         per-second statistics each under $OUT/film (FILM_ARGS: more generate flags, e.g. --guidance 2)
#   bench kvworld-cli bench --backend cuda on the same model: frames/s at the app's settings ($OUT/bench)
#   gui   the app itself on the same model, offscreen (EGL), CUDA backend and CUDA-GL interop: built in /tmp/bg with
#         the GL packages carried in .debs-gl (../shared/device/fetch-debs.sh --gl --dir .debs-gl, less what .debs
#         holds: 6.1 MB), then screenshots of a walk, of A/B and of the memory overlay ($OUT/gui). The two models,
#         .debs and .debs-gl do not fit together in what travels: for this call move assets/models/default out of
#         the working tree (mv it aside here, put it back after) and carry [".debs", ".debs-gl"]
# A warm machine keeps /tmp/kvw (checkpoints with the optimizer state) and /dev/shm (datasets) between calls.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}
PHASES=" ${PHASES:-ae} "
has() { [[ "$PHASES" == *" $1 "* ]]; }
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
SIM=.v2/kvworld-sim
chmod +x "$SIM"
mkdir -p /tmp/kvw "$OUT"
# At most 8 files come back from $OUT: on exit, everything but the weight shards goes into one archive,
# $OUT/results.tgz (tar xzf it here; a call killed at its limit returns what it had, unpacked).
pack_results() {
  ( cd "$OUT" && find . -type f ! -name '*.safetensors' ! -name results.tgz | sort > /tmp/kvw/pack.list &&
    [[ -s /tmp/kvw/pack.list ]] && tar czf /tmp/kvw/results.tgz -T /tmp/kvw/pack.list &&
    xargs rm -f < /tmp/kvw/pack.list && mv /tmp/kvw/results.tgz . && find . -type d -empty -delete )
  ls -R "$OUT" | head -30
}
trap pack_results EXIT
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
# the host CPU too: host-side float results (OpenBLAS, libm) can depend on its family
echo "host CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) threads"
export PYTHONUNBUFFERED=1

# dataset NAME EPISODES FRAMES SEED_BASE [FLAGS...]: a 256x256 simulator dataset in /dev/shm (kept while the
# machine is warm)
dataset() {
  local id="$2x$3@$4${5:+ ${*:5}}"
  if [[ "$(cat /dev/shm/$1.id 2>/dev/null)" != "$id" ]]; then
    stamp "dataset $1: $id"
    rm -rf "/dev/shm/$1"
    "$SIM" dataset --out "/dev/shm/$1" --episodes "$2" --frames "$3" --seed-base "$4" --width 256 --height 256 \
      --threads "$(nproc)" "${@:5}" > "/tmp/kvw/$1.log" 2>&1 && echo "$id" > "/dev/shm/$1.id" || { tail -5 "/tmp/kvw/$1.log"; exit 1; }
  fi
}

# The dit phase's fp32 export (/tmp/kvw/dit_fp32: train_state.json and dit-NN.safetensors shards of at most 15 MiB)
# into $OUT/dit, at most RETURN_MB (56) of it a call, as what comes back is at most 64 MiB in all: a 12-block
# transformer's 78 MB come back over two calls. What is left stays on the warm machine for the next call's `rest`
# phase (listed in $OUT/dit/LEFT); copy both calls' files into one folder for commit_v2.sh.
return_shards() {
  local from=/tmp/kvw/dit_fp32 budget=$(( ${RETURN_MB:-56} << 20 )) used=0 left=() f name size
  [[ -d $from ]] || { echo "no fp32 export on this machine (/tmp/kvw/dit_fp32)"; return 0; }
  mkdir -p "$OUT/dit" "$from/.returned"
  for f in "$from/train_state.json" "$from"/dit-*.safetensors; do
    name=$(basename "$f")
    [[ -f $f && ! -e $from/.returned/$name ]] || continue
    size=$(stat -c %s "$f")
    if (( used + size <= budget )); then
      cp "$f" "$OUT/dit/" && touch "$from/.returned/$name" && used=$(( used + size ))
    else
      left+=("$name")
    fi
  done
  if (( ${#left[@]} )); then
    printf '%s\n' "${left[@]}" > "$OUT/dit/LEFT"
    echo "fp32 export: ${#left[@]} file(s) left for the next call's rest phase: ${left[*]}"
  fi
}
if has rest; then return_shards; fi  # what an earlier call's dit phase could not return

if has build && [[ ! -x /tmp/b/app/cli/kvworld-cli ]]; then
  stamp "build kvworld-cli (background)"
  ( bash .debs/unpack-debs.sh .debs > /dev/null 2>&1
    tests=OFF; targets=kvworld-cli; [[ "${GPU_TESTS:-0}" == 1 ]] && { tests=ON; targets="kvworld-cli test_cuda_ops"; }
    cmake -S . -B /tmp/b -G Ninja -DCMAKE_BUILD_TYPE=Release -DKVW_GUI=OFF -DKVW_TESTS=$tests \
      -DCMAKE_CUDA_ARCHITECTURES=90 > /tmp/kvw/build.log 2>&1 &&
    nice ninja -C /tmp/b -j "$(( $(nproc) / 2 ))" $targets >> /tmp/kvw/build.log 2>&1
    echo "build rc=$?" >> /tmp/kvw/build.log ) &
  build_pid=$!
fi

if has ae; then
  dataset ae_data "${AE_EPISODES:-4000}" 8 "${AE_SEED_BASE:-200000}"
  init=(); [[ -n "${AE_INIT:-}" ]] && init=(--init "$AE_INIT")  # e.g. assets/models/v2 (int8, with its state)
  [[ -d .v2/init/ae ]] && init=(--init .v2/init/ae)
  ae_ckpt=/tmp/kvw/ae.pt; [[ "${AE_ARGS:-}" == *--decoder-only* ]] && ae_ckpt=/tmp/kvw/ae_decoder.pt  # another run
  [[ "${AE_ARGS:-}" == *--adv-weight* ]] && ae_ckpt=${ae_ckpt%.pt}_adv.pt  # with the critic: not a plain run's
  [[ -f $ae_ckpt ]] && init=()
  stamp "autoencoder ${AE_MINUTES:-6} min ${init[*]}"
  python3 tools/train/train_ae.py --data /dev/shm/ae_data --config config/model-v2.json --ckpt "$ae_ckpt" \
    "${init[@]}" --export "$OUT/ae" --log "$OUT/ae/train_ae_log.json" --minutes "${AE_MINUTES:-6}" \
    --batch "${AE_BATCH:-32}" --grad-weight "${AE_GRAD_WEIGHT:-1.0}" --total-steps "${AE_TOTAL_STEPS:-20000}" \
    ${AE_ARGS:-} > /tmp/kvw/train_ae.txt 2>&1
  echo "train_ae rc=$?"; grep -E '"step"|eval_before' /tmp/kvw/train_ae.txt | tail -4; tail -3 /tmp/kvw/train_ae.txt
  cp /tmp/kvw/train_ae.txt "$OUT/ae/"
  if [[ "${AE_ARGS:-}" == *--decoder-only* ]]; then  # the transformer this call trained, else the committed one
    trained=assets/models/v2; [[ -f /tmp/kvw/v2model/model.json ]] && trained=/tmp/kvw/v2model
    rm -rf /tmp/kvw/v2model-dec
    python3 tools/train/swap_autoencoder.py "$trained" "$OUT/ae" /tmp/kvw/v2model-dec
  fi
  # Held-out reconstructions beside the simulator's frames (top: simulator, bottom: autoencoder).
  python3 - <<'EOF'
import glob, json, os, sys
import numpy as np, torch
sys.path.insert(0, "tools/train")
import autoencoder as A, model as M
cfg = M.ModelConfig.from_json(open("config/model-v2.json").read())
ae = A.Autoencoder(cfg.autoencoder).cuda().eval()
sd = {}
for f in sorted(glob.glob(os.path.join(os.environ["OUT"], "ae", "*.safetensors"))):
    sd.update({k[len("autoencoder."):]: v.float() for k, v in M.load_safetensors(f).items()})
ae.load_state_dict(sd)
meta = json.load(open("/dev/shm/ae_data/meta.json"))
n = meta["episodes"] * meta["frames"]
fr = np.memmap("/dev/shm/ae_data/frames.u8", dtype=np.uint8, mode="r", shape=(n, 256, 256, 3))
sel = np.array(fr[[n - 1, n - 60, n - 120, n - 200]])
with torch.no_grad():
    x = torch.from_numpy(sel).cuda().float() / 127.5 - 1
    rec = ((ae.decode_raw(ae.encode_raw(x)).clamp(-1, 1) + 1) * 127.5).round().byte().cpu().numpy()
strip = np.concatenate([np.concatenate(list(sel), 1), np.concatenate(list(rec), 1)], 0)
import matplotlib.image
matplotlib.image.imsave(os.path.join(os.environ["OUT"], "ae", "reconstructions.png"), strip)
print("reconstructions.png written")
EOF
fi

if has dit; then
  rm -rf /tmp/kvw/dit_fp32  # this call's export only (and its return from the start)
  dataset dit_data "${EPISODES:-4000}" "${EPISODE_FRAMES:-32}" "${SEED_BASE:-100000}"
  init=(--init "${INIT:-assets/models/v2}")  # assets/models/default: start again from the pixel model's transformer
  [[ -d .v2/init/dit ]] && init=(--init .v2/init/dit)
  [[ -f /tmp/kvw/dit.pt ]] && init=()
  revisit=()  # REVISIT_EPISODES > 0: revisit episodes (memory of places) mixed into REVISIT_FRACTION of the steps
  if (( ${REVISIT_EPISODES:-0} > 0 )); then
    dataset rv_data "$REVISIT_EPISODES" 24 "${REVISIT_SEED_BASE:-300000}" --revisit ${REVISIT_SIM_ARGS:-}
    grep -o '"found": [0-9]*' /dev/shm/rv_data/meta.json
    revisit=(--revisit-data /dev/shm/rv_data --revisit-fraction "${REVISIT_FRACTION:-0.25}")
  fi
  # train_dit MINUTES BATCH EXTRA_ARGS...: one trainer run into /tmp/kvw/dit.pt (resumed there when it exists)
  train_dit() {
    local minutes=$1 batch=$2; shift 2
    python3 tools/train/train.py --data /dev/shm/dit_data --config "${DIT_CONFIG:-config/model-v2.json}" --autoencoder "${AE_DIR:-assets/models/v2}" \
      --ckpt /tmp/kvw/dit.pt "${init[@]}" --export /tmp/kvw/v2model --export-fp32 /tmp/kvw/dit_fp32 \
      --log /tmp/kvw/train_log.json --minutes "$minutes" --batch "$batch" --lr "${LR:-2e-4}" \
      --warmup "${WARMUP:-100}" --ema "${EMA:-0.995}" --total-steps "${TOTAL_STEPS:-4000}" --eval-episodes 16 \
      "${revisit[@]}" "$@" > /tmp/kvw/train_dit.txt 2>&1
  }
  BATCH=${BATCH:-16}
  if [[ $BATCH == auto ]]; then
    # 16 where the card holds it (an H200's 139 GiB), else 8: the 12-block model at 16 ran out of an H100's 80 GiB
    # (peak 44.9 GiB at 8 with self-context), and finding that out cost the call 2 of its minutes (2026-12-07)
    gpu_mib=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits | head -1)
    BATCH=$(( ${gpu_mib:-0} > 100000 ? 16 : 8 ))
  fi
  stamp "latent model ${DIT_MINUTES:-6} min, batch $BATCH ${init[*]}"
  train_dit "${DIT_MINUTES:-6}" "$BATCH" ${TRAIN_ARGS:-}
  rc=$?; echo "train rc=$rc"
  if [[ $rc != 0 && ! -f /tmp/kvw/dit.pt ]] && grep -q "out of memory" /tmp/kvw/train_dit.txt; then
    # the batch did not fit this card (the peak grows with --self-context): half of it, for the minutes left
    cp /tmp/kvw/train_dit.txt "$OUT/dit_oom.txt"; BATCH=$(( BATCH / 2 ))
    stamp "out of memory: again at batch $BATCH, ${DIT_RETRY_MINUTES:-4} min"
    train_dit "${DIT_RETRY_MINUTES:-4}" "$BATCH" ${TRAIN_ARGS:-}
    rc=$?; echo "train rc=$rc"
  fi
  if [[ $rc != 0 && ${#revisit[@]} -gt 0 && ! -f /tmp/kvw/dit.pt ]]; then
    # the revisit batches are new to this trainer: a failure of them must not cost the call's training
    tail -12 /tmp/kvw/train_dit.txt; cp /tmp/kvw/train_dit.txt "$OUT/dit_revisit_failed.txt"; revisit=()
    stamp "again without revisit episodes, ${DIT_RETRY_MINUTES:-4} min"
    train_dit "${DIT_RETRY_MINUTES:-4}" "$BATCH" ${TRAIN_ARGS:-}
    rc=$?; echo "train rc=$rc"
  fi
  if [[ $rc != 0 && "${TRAIN_ARGS:-}" == *--compile* && ! -f /tmp/kvw/dit.pt ]]; then
    # torch.compile is new to this trainer: a failure of it must not cost the call's training
    tail -12 /tmp/kvw/train_dit.txt; cp /tmp/kvw/train_dit.txt "$OUT/dit_compile_failed.txt"
    stamp "again without --compile, ${DIT_RETRY_MINUTES:-4} min"
    train_dit "${DIT_RETRY_MINUTES:-4}" "$BATCH" ${TRAIN_ARGS//--compile/}
    echo "train rc=$?"
  fi
  grep -E '"step"' /tmp/kvw/train_dit.txt | tail -3; tail -4 /tmp/kvw/train_dit.txt
  mkdir -p "$OUT/dit" && cp /tmp/kvw/train_dit.txt "$OUT/dit/"
  return_shards
fi
if [[ -n "${build_pid:-}" ]]; then wait "$build_pid"; stamp "$(tail -1 /tmp/kvw/build.log)"; cp /tmp/kvw/build.log "$OUT/"; fi
if [[ "${GPU_TESTS:-0}" == 1 && -x /tmp/b/tests/test_cuda_ops ]]; then
  stamp "test_cuda_ops"
  timeout "${GPU_TESTS_TIMEOUT:-120}" /tmp/b/tests/test_cuda_ops > "$OUT/test_cuda_ops.log" 2>&1
  echo "test_cuda_ops rc=$?"; grep -E '^\[  (PASSED|FAILED|SKIPPED) ' "$OUT/test_cuda_ops.log" | tail -20
fi
CLI=/tmp/b/app/cli/kvworld-cli
V2=${MODEL_DIR:-/tmp/kvw/v2model}  # what this machine's dit phase exported, else the committed model
[[ -z "${MODEL_DIR:-}" && ! -f $V2/model.json ]] && V2=assets/models/v2
if has eval && [[ "${EVAL_INT8:-0}" == 1 && -z "${MODEL_DIR:-}" && $V2 == /tmp/kvw/v2model ]]; then
  # the export in int8, as it would be committed (the shipped column is int8: compare like with like)
  rm -rf /tmp/kvw/v2model-int8
  "$CLI" convert-weights --model "$V2" --out /tmp/kvw/v2model-int8 --dtype int8 > /tmp/kvw/convert.txt 2>&1 &&
    V2=/tmp/kvw/v2model-int8 || { echo "convert-weights failed:"; tail -3 /tmp/kvw/convert.txt; }
fi
if has eval; then
  stamp "eval quality of $V2"
  mkdir -p "$OUT/eval"
  if [[ -n "${EVAL_BASELINE:-}" ]]; then  # the column compared with, on this card, beside it (two evals share the
    # GPU well: two of --traces 24 took 305 s together on an H200; one took about 4 min on an H100)
    timeout "${EVAL_TIMEOUT:-560}" "$CLI" eval --backend cuda --model "$EVAL_BASELINE" --mode quality \
      ${EVAL_ARGS:---traces 32} --out "$OUT/eval/baseline" > "$OUT/eval/baseline.txt" 2>&1 &
    baseline_pid=$!
  fi
  timeout "${EVAL_TIMEOUT:-560}" "$CLI" eval --backend cuda --model "$V2" --mode quality ${EVAL_ARGS:---traces 32} \
    --out "$OUT/eval/quality" > "$OUT/eval/quality.txt" 2>&1; echo "eval rc=$?"; tail -25 "$OUT/eval/quality.txt"
  if [[ -n "${baseline_pid:-}" ]]; then
    wait "$baseline_pid"; echo "baseline eval of $EVAL_BASELINE rc=$?"; tail -4 "$OUT/eval/baseline.txt"
  fi
  if [[ "${REVISIT:-0}" == 1 ]]; then  # issue 19 item 5: memory of places at BF16, INT4 and INT2 + taylor
    stamp "revisit of $V2"
    timeout "${REVISIT_TIMEOUT:-420}" "$CLI" eval --backend cuda --model "$V2" --mode revisit \
      ${REVISIT_ARGS:---traces 8 --revisit-bits 16,4,2} --out "$OUT/eval/revisit" > "$OUT/eval/revisit.txt" 2>&1
    echo "revisit rc=$?"; tail -12 "$OUT/eval/revisit.txt"
  fi
  if [[ "${MEMORY:-0}" == 1 ]]; then  # memory of places one chunk at a time (revisit episodes, with and without the view)
    stamp "memory of $V2"
    timeout "${MEMORY_TIMEOUT:-240}" "$CLI" eval --backend cuda --model "$V2" --mode memory \
      ${MEMORY_ARGS:---traces 16 --revisit-bits 16,4,2} --out "$OUT/eval/memory" > "$OUT/eval/memory.txt" 2>&1
    echo "memory rc=$?"; tail -6 "$OUT/eval/memory.txt"
  fi
  if [[ "${PAIRED:-0}" == 1 ]]; then
    stamp "paired caches of $V2"
    timeout "${PAIRED_TIMEOUT:-240}" "$CLI" eval --backend cuda --model "$V2" --mode paired \
      ${PAIRED_ARGS:---traces 64 --bits 8,4,2 --groups 64,128 --layouts token --corrections off,taylor --correction-below-ts 1,0.5} \
      --out "$OUT/eval/paired" > "$OUT/eval/paired.txt" 2>&1; echo "paired rc=$?"; tail -20 "$OUT/eval/paired.txt"
  fi
fi
if has film; then  # 2-minute rollouts of eval's worlds (FILM_WORLDS "world:policy ..."; eval's i-th rollout is world
  # 1600000 + 7919 i under policy 4242 + i, the same noise), every 15 s beside the simulator: one strip each
  # (tools/plot/plot_film.py) and per-second frame statistics (tools/plot/film_stats.py) under $OUT/film
  mkdir -p "$OUT/film"
  for ws in ${FILM_WORLDS:-1600000:4242 1631676:4246}; do
    w=${ws%%:*}; ps=${ws#*:}; d=/tmp/kvw/film_$w
    stamp "film: world $w policy $ps ($V2${FILM_ARGS:+ $FILM_ARGS})"
    "$SIM" trace --world-seed "$w" --policy-seed "$ps" --frames 1920 --context-frames 4 --out "$d.json" > /dev/null
    rm -rf "$d" "$d.sel"
    timeout 150 "$CLI" generate --backend cuda --model "$V2" --trace "$d.json" --out "$d" --ground-truth --no-video \
      ${FILM_ARGS:-} > "$OUT/film/$w.log" 2>&1; echo "film $w rc=$?"
    mkdir -p "$d.sel/frames" "$d.sel/ground_truth"
    for k in 0 1 2 3 4 5 6 7 8; do
      f=$(printf "frame_%05d.png" $(( 4 + (k * 1919) / 8 )))
      cp "$d/frames/$f" "$d.sel/frames/" && cp "$d/ground_truth/$f" "$d.sel/ground_truth/"
    done
    python3 tools/plot/plot_film.py "$d.sel" "$OUT/film/film_$w.png" && python3 tools/plot/film_stats.py "$d" "$OUT/film/stats_$w.json" > /dev/null
  done
fi
if has bench; then
  stamp "bench $V2"
  mkdir -p "$OUT/bench"
  "$CLI" bench --backend cuda --model "$V2" --chunks 20 --json "$OUT/bench/bench.json" > "$OUT/bench/bench.txt" 2>&1
  echo "bench rc=$?"; tail -20 "$OUT/bench/bench.txt"
fi
if has gui; then
  stamp "GUI build (offscreen EGL)"
  mkdir -p "$OUT/gui"
  bash .debs/unpack-debs.sh .debs > /dev/null 2>&1; bash .debs-gl/unpack-debs.sh .debs-gl > /dev/null 2>&1
  export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
  cmake -S . -B /tmp/bg -G Ninja -DCMAKE_BUILD_TYPE=Release -DKVW_GUI=ON -DKVW_TESTS=OFF \
    -DCMAKE_CUDA_ARCHITECTURES=90 > "$OUT/gui/build_gui.log" 2>&1 && nice ninja -C /tmp/bg kvworld >> "$OUT/gui/build_gui.log" 2>&1
  echo "gui build rc=$?"; tail -3 "$OUT/gui/build_gui.log"
  G=/tmp/bg/app/gui/kvworld
  if [[ -x $G ]]; then
    # the README's pictures: a walk (world 901, as run.sh's trace), A/B of three caches (902), the memory overlay (903)
    timeout 90 $G --offscreen --backend cuda --model "$V2" --world-seed 901 --frames 64 --shot-every 32 \
      --out "$OUT/gui/main" > "$OUT/gui/main.log" 2>&1; echo "gui main rc=$?"
    timeout 90 $G --offscreen --backend cuda --model "$V2" --world-seed 902 --frames 32 --shot-every 32 --ab \
      --out "$OUT/gui/ab" > "$OUT/gui/ab.log" 2>&1; echo "gui ab rc=$?"
    timeout 60 $G --offscreen --backend cuda --model "$V2" --world-seed 903 --frames 16 --shot-every 16 --memory \
      --out "$OUT/gui/memory" > "$OUT/gui/memory.log" 2>&1; echo "gui memory rc=$?"
  fi
fi
stamp "done"
