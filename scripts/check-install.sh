#!/usr/bin/env bash
# Checks that a build installs and that the installation stands on its own:
#   scripts/check-install.sh BUILD_DIR
# installs BUILD_DIR into a temporary prefix, moves that prefix (the binaries must find their data relative to
# themselves, not through a path compiled in), hides the build tree, and from an unrelated working directory
# generates a short clip with the installed kvworld-sim and kvworld-cli on the CPU backend; then, when the GUI
# was built, plays a few frames in the installed kvworld offscreen. The model and configs must come from
# <prefix>/share/kvworld. The build tree is put back on exit, whatever happens.
set -euo pipefail
if [[ $# != 1 || ! -f $1/CMakeCache.txt ]]; then
  echo "usage: $0 BUILD_DIR (a configured and built CMake tree)" >&2
  exit 2
fi
build=$(realpath "$1")
hidden="$build.hidden-by-check-install"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kvworld-check-install.XXXXXX")
cleanup() {
  if [[ -d $hidden ]]; then mv "$hidden" "$build"; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "check-install: FAILED: $*" >&2; exit 1; }

cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
mv "$tmp/prefix" "$tmp/moved-prefix"
prefix=$tmp/moved-prefix
data=$prefix/share/kvworld
for f in bin/kvworld-cli bin/kvworld-sim share/kvworld/assets/models/v2/model.json \
         share/kvworld/assets/models/default/model.json \
         share/kvworld/config/keymap.json share/kvworld/config/models; do
  [[ -e $prefix/$f ]] || fail "$f is not installed"
done
gui=0
if [[ -x $build/app/gui/kvworld ]]; then
  gui=1
  [[ -x $prefix/bin/kvworld ]] || fail "bin/kvworld is not installed although the GUI was built"
fi
echo "check-install: installed $(find "$prefix" -type f | wc -l) files ($(du -sh "$prefix" | cut -f1))"

mv "$build" "$hidden"
mkdir "$tmp/elsewhere"
cd "$tmp/elsewhere"
unset KVWORLD_DATA_DIR
"$prefix/bin/kvworld-sim" trace --world-seed 901 --policy-seed 7 --frames 4 --out trace.json >/dev/null
# One denoising step: the point is where the data comes from, and it keeps this to seconds.
"$prefix/bin/kvworld-cli" generate --backend cpu --steps 1 --trace trace.json --out clip --frames 4 \
  --no-video 2>cli.log || { cat cli.log >&2; fail "the installed kvworld-cli generate failed"; }
grep -qF "model: the trained default model ($data/assets/models/v2)" cli.log ||
  { cat cli.log >&2; fail "kvworld-cli did not take the installed default model"; }
frames=$(find clip/frames -name '*.png' | wc -l)
(( frames >= 4 )) && [[ -s clip/metrics.json ]] || fail "the clip has $frames frames or no metrics.json"
echo "check-install: kvworld-cli generated $frames frames from $data"

if (( gui )); then
  timeout 300 "$prefix/bin/kvworld" --offscreen --backend cpu --frames 4 --out gui >gui.log 2>&1 ||
    { cat gui.log >&2; fail "the installed kvworld --offscreen failed"; }
  # A missing keymap or model is reported as an error notice, not a failed run.
  if grep -q "error" gui.log; then cat gui.log >&2; fail "the installed kvworld reported an error"; fi
  grep -qF "\"model_dir\": \"$data/assets/models/v2\"" gui/summary.json ||
    { cat gui/summary.json >&2; fail "kvworld did not take the installed default model"; }
  echo "check-install: kvworld played 4 frames offscreen"
fi
echo "check-install: the installation works from $prefix with the build tree out of the way"
