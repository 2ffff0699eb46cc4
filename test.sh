#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test:
#   1. the release build, configured and built by the two commands users type first
#      (`cmake -S . -B build && cmake --build build`: default generator, no options; CUDA too when nvcc is
#      present, GPU tests report "skipped" without a device), all CTest tests, including the GUI smoke test
#      under Xvfb + Mesa;
#   2. `cmake --install` of that build into a temporary prefix, checked with the build tree moved away
#      (scripts/check-install.sh);
#   3. an ASan + UBSan build of the CPU tests;
#   4. libFuzzer targets for the safetensors, config and trace parsers, a model folder (config, weights index,
#      weights) and the memory planner's arguments, each for a bounded time.
# Environment: KVW_JOBS (parallel jobs), KVW_FUZZ_SECONDS (per target, default 30),
#              KVW_CUDA_ARCH (CUDA architectures for this build, default 90 to keep CI fast).
set -euo pipefail
cd "$(dirname "$0")"
jobs=${KVW_JOBS:-$(nproc)}
fuzz_seconds=${KVW_FUZZ_SECONDS:-30}
cuda_arch=${KVW_CUDA_ARCH:-90}

scripts/install-deps.sh

echo "== release build: cmake -S . -B build && cmake --build build"
# Exactly what a user types (Release is the default build type): the release build is also the check that the
# plain commands work, at no extra build time. CUDAARCHS (CMake's own variable) only matters where nvcc is.
CUDAARCHS="$cuda_arch" cmake -S . -B build >/dev/null
cmake --build build -j "$jobs"
echo "== tests"
ctest --test-dir build --output-on-failure -j "$jobs" --timeout 900

echo "== install: cmake --install build --prefix <temporary>, run from there without the build tree"
scripts/check-install.sh build

echo "== ASan + UBSan build of the CPU tests"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DKVW_SANITIZE=ON -DKVW_CUDA=OFF -DKVW_GUI=OFF \
      -DCMAKE_CXX_FLAGS="-O1" >/dev/null
ninja -C build-asan -j "$jobs"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j "$jobs" -L cpu -LE slow --timeout 1800

echo "== fuzzing the parsers (${fuzz_seconds}s each)"
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKVW_FUZZ=ON -DKVW_CUDA=OFF \
      -DKVW_GUI=OFF -DKVW_TESTS=OFF >/dev/null
fuzz_targets="fuzz_safetensors fuzz_config fuzz_trace fuzz_model fuzz_planner"
ninja -C build-fuzz -j "$jobs" $fuzz_targets
for target in $fuzz_targets; do
  corpus=build-fuzz/corpus_$target
  mkdir -p "$corpus"
  cp -n tests/fuzz/seeds/$target/* "$corpus"/ 2>/dev/null || true
  # halt_on_error: undefined behaviour (an overflow in the planner) fails the run instead of being printed.
  UBSAN_OPTIONS=halt_on_error=1 build-fuzz/tests/fuzz/$target -max_total_time="$fuzz_seconds" -rss_limit_mb=2048 -timeout=10 "$corpus" 2>&1 | tail -2
done
echo "== all tests passed"
