#!/usr/bin/env bash
# The run's evaluation call (the run page's "The rules"), on the GPU machine still warm from the session's legs, which
# left the run's export in /tmp/kvw/v2model. Carries .debs, .keep/cli and .v2/kvworld-sim (the CUDA CLI built here:
# no build on the device). In one call:
#   1. the engine's eval of the export in int8 beside the shipped model (64 one-chunk worlds, 8 two-minute rollouts,
#      the same noise) -> $OUT/eval/{quality,baseline}.txt and $OUT/eval/{quality,baseline}/eval.{json,md}, in
#      $OUT/results.tgz;
#   2. the PyTorch probe of the same int8 export: one chunk at lags 0 and 4 (512 worlds), 30-s rollouts at lag 4
#      (32 worlds), the worlds and noise of the shipped model's committed probe -> $OUT/probe_run*.json.
# The probe's datasets are made while the eval runs. About 7.5 min on an H100. v2_run.sh packs what it wrote into
# $OUT/results.tgz when it ends; the probe's four files come back beside it.
#   bash docs/experiments/2026-12-07-run-across-sessions/eval_call.sh
set -uo pipefail
HERE=docs/experiments/2026-12-07-run-across-sessions
P=docs/experiments/2026-12-07-staggered-frames/staggered_probe.py
S=.v2/kvworld-sim
OUT=${OUT:-/tmp/out}
chmod +x "$S"
bash .debs/unpack-debs.sh .debs > /dev/null
export LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-pthread:${LD_LIBRARY_PATH:-}
mkdir -p /tmp/b/app/cli /tmp/kvw && cp .keep/cli/kvworld-cli /tmp/b/app/cli/
# A machine that is not the legs' (released while idle, or past its 30 minutes) has no export: the eval would read
# the committed model against itself.
[[ -f /tmp/kvw/v2model/model.json ]] || { echo "no run export on this machine (/tmp/kvw/v2model): not the legs' machine"; exit 1; }
(
  "$S" dataset --out /dev/shm/probe --episodes 512 --frames 16 --seed-base 140000 --width 256 --height 256 \
    --threads 8 && "$S" dataset --out /dev/shm/roll --episodes 32 --frames 480 --seed-base 141000 --width 256 \
    --height 256 --threads 8
) > /tmp/kvw/probe_datasets.txt 2>&1 &
datasets=$!
# EVAL_TIMEOUT: each eval at most 300 s (about 200 s expected), so that the probe keeps its time within the 600 s
EVAL_TIMEOUT=300 PHASES=eval EVAL_INT8=1 EVAL_BASELINE=assets/models/v2 EVAL_ARGS="--traces 16 --concurrent 8" tools/gpu/v2_run.sh
wait "$datasets" || { echo "probe datasets failed:"; tail -5 /tmp/kvw/probe_datasets.txt; exit 1; }
M=/tmp/kvw/v2model-int8
[[ -f $M/model.json ]] || { echo "no int8 export in $M"; exit 1; }
date
python3 "$P" --model "$M" --data /dev/shm/probe --lags 0,4 --out "$OUT/probe_run.json" > "$OUT/probe_run.txt" 2>&1
echo "probe one chunk rc=$?"; tail -8 "$OUT/probe_run.txt"
python3 "$P" --model "$M" --data /dev/shm/roll --lags 4 --rollout --batch 32 --out "$OUT/probe_run_rollouts.json" \
  > "$OUT/probe_run_rollouts.txt" 2>&1
echo "probe rollouts rc=$?"; tail -8 "$OUT/probe_run_rollouts.txt"
date
echo "here: python3 $HERE/port_rule.py probe_run.json probe_run_rollouts.json"
