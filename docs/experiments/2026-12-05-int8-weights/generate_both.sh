#!/usr/bin/env bash
# int8 vs bf16 weights of the shipped model on held-out worlds (CPU backend, BF16 cache, the model's defaults).
set -euo pipefail
# Run from the repository root after building kvworld-cli and kvworld-sim into build/, and
#   build/app/cli/kvworld-cli convert-weights --model assets/models/default --out /tmp/kvw-int8-default --dtype int8
CLI=build/app/cli/kvworld-cli
SIM=build/sim/kvworld-sim
G=/tmp/kvw-int8-gen
mkdir -p $G
for i in 0 1 2 3; do
  w=$((900000 + 7919 * i))
  $SIM trace --world-seed $w --policy-seed $((i + 1)) --frames 12 --out $G/trace_$w.json
  for m in bf16:assets/models/default int8:/tmp/kvw-int8-default; do
    name=${m%%:*}; dir=${m#*:}
    gt=""; [ $name = bf16 ] && gt=--ground-truth
    nice $CLI generate --model $dir --trace $G/trace_$w.json --out $G/${name}_$w --frames 12 --no-video $gt
  done
done
echo ALL_DONE
