#!/usr/bin/env bash
# assets/models/v2 from the fp32 shards a tools/gpu/v2_run.sh call brought back, as int8, at once (a model that
# only lives on a machine is lost with it):
#   tools/gpu/commit_v2.sh DIT_DIR [AE_DIR]
# DIT_DIR: dit-*.safetensors and train_state.json ($OUT/dit); AE_DIR: a decoder-only run's autoencoder shards and
# train_ae_state.json ($OUT/ae), else the committed autoencoder stays. The model card (README.md) is kept; its
# figures are for the caller to update. MODEL=DIR writes elsewhere than assets/models/v2 (the config and the
# autoencoder still come from assets/models/v2). CONFIG=FILE: the config the transformer was trained with (v2_run.sh's
# DIT_CONFIG) where it is not the committed one's, e.g. a deeper stack.
set -euo pipefail
cd "$(dirname "$0")/../.."
CLI=${CLI:-build/app/cli/kvworld-cli}
MODEL=${MODEL:-assets/models/v2}
[[ -x $CLI ]] || { echo "commit_v2: $CLI not built (cmake --build build --target kvworld-cli)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 tools/gpu/stage_v2.py --base assets/models/v2 --dit "$1" ${2:+--ae "$2"} ${CONFIG:+--config "$CONFIG"} --out "$work/stage"
"$CLI" convert-weights --model "$work/stage" --out "$work/int8" --dtype int8
cp "$work/stage/train_state.json" "$work/int8/"
[[ -f $work/stage/train_ae_state.json ]] && cp "$work/stage/train_ae_state.json" "$work/int8/"
[[ -f assets/models/v2/README.md ]] && cp assets/models/v2/README.md "$work/int8/"
mkdir -p "$MODEL"
rm -f "$MODEL"/*.safetensors "$MODEL"/cache_calibration.json  # a calibration belongs to the weights it was made on
cp "$work/int8/"* "$MODEL/"  # its model.json names no calibration (stage_v2.py)
du -sh "$MODEL"; ls -la "$MODEL"
