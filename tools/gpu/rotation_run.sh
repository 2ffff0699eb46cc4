#!/usr/bin/env bash
# Rotated codes on CUDA (issue 20), on the GPU machine, in phases (PHASES, space-separated) over one or two
# device commands on a warm machine (/tmp/b and /tmp/kvw persist between them):
#   check   the sm_90a attention kernel alone (kernels/hopper_attention.cu), built with nvcc beside its device check
#           (docs/experiments/2026-12-06-hopper-attention/hopper_check.cu) and run: correct or not, and its time, in
#           about a minute before the build ($OUT/hopper_check.txt); HOPPER_VARIANTS="a.patch KVW_A=1,KVW_B=0 ..." also
#           builds and runs the kernel patched, or with macros defined, per word ($OUT/hopper_check_1.txt, ...)
#   build   kvworld-cli and test_cuda_ops for sm_90 in /tmp/b (the Debian packages carried in .debs:
#           ../shared/device/fetch-debs.sh nlohmann-json3-dev libopenblas-dev libcli11-dev libstb-dev libgtest-dev)
#   tests   the whole GPU suite ($OUT/test_cuda_ops.log); the rotated cases are CudaQuantize/Rotated.*,
#           CudaAttention.*_rotated and two rows of CudaBackend.ForwardAndRolloutMatchCpu
#   lift    only when every GPU test passed: kvworld-cli rebuilt without the engine's refusals of rotated codes and
#           of the measured correction on CUDA (engine/src/session.cpp, validate_params), the refusals the tests
#           exist to lift; the commit that lifts them in the tree follows the tests' log
#   bench   tools/bench/sdpa_baseline.py (PyTorch SDPA cuDNN and flash), then bench-attention against it (its
#           rotated, measured and exact rows beside the same formats plain, $OUT/bench_attention.json)
#   paired  the bars' scale: 64 held-out worlds, 8 chunks, K2/V2 g128 keys per token, rotated or not, off/taylor/measured,
#           t <= 1 and 0.75 ($OUT/paired)
#   e2e     kvworld-cli bench --backend cuda on the shipped model (E2E_MODEL, default assets/models/default) with the
#           fused kernel, the composition path (KVW_ATTENTION=composition) and its rows through the sm_90a wgmma
#           kernel (=hopper): issue 21's end-to-end gain ($OUT/bench_e2e_{fused,composition,hopper}.txt)
#   sanitize compute-sanitizer memcheck over the attention, composition and cache kernels' tests, racecheck over
#           a subset (issue 21 item 4; $OUT/sanitize_{memcheck,racecheck}.txt)
#   ncu_hopper Nsight Compute on the sm_90a wgmma kernel at HY's shape ($OUT/ncu_hopper.txt: tensor pipe, stalls;
#           the stalls per SASS instruction $OUT/ncu_hopper_sass.csv, summed into $OUT/ncu_hopper_stalls.txt); of
#           the i-th variant of the check instead with NCU_VARIANT=i; rows of NCU_COLS columns (default 128; 136:
#           the Taylor build, 2 of its 8 folded columns nonzero as the engine writes them)
#   ncu_pass Nsight Compute on the context pass (one kernel: keys, values and queries) at HY's shape, K2/V2 g128
#           off and taylor ($OUT/ncu_pass.txt; needs build)
#   ncu     Nsight Compute on the fused kernel at HY's shape, BF16 and K2/V2 g128 taylor (issue 21's note: what
#           limits it; speed of light, compute and memory workload, occupancy; $OUT/ncu_attention.txt)
#   grid    the whole grid (bits 8/4/2 x groups 32/64/128 x both layouts), rotated or not, at 16 worlds and 2
#           chunks ($OUT/grid)
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}
PHASES=" ${PHASES:-build tests lift bench} "
has() { [[ "$PHASES" == *" $1 "* ]]; }
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
mkdir -p /tmp/kvw "$OUT"
# At most 8 files come back from $OUT: beyond 8, on exit, all of them go into one archive, $OUT/results.tgz
# (tar xzf it here). On 2026-12-06 a run of 13 files lost the ncu report and the test logs.
pack_results() {
  ( cd "$OUT" && [[ $(find . -type f | wc -l) -gt 8 ]] && find . -type f ! -name results.tgz | sort > /tmp/kvw/pack.list &&
    tar czf /tmp/kvw/results.tgz -T /tmp/kvw/pack.list && xargs rm -f < /tmp/kvw/pack.list &&
    mv /tmp/kvw/results.tgz . && find . -type d -empty -delete )
  return 0
}
trap pack_results EXIT
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
# the host CPU too: host-side float results (OpenBLAS, libm) can depend on its family
echo "host CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) threads"
CLI=/tmp/b/app/cli/kvworld-cli

# The check's binaries: /tmp/kvw/hopper_check (the kernel as committed) and, for the i-th word of
# HOPPER_VARIANTS, hopper_check_i built from a variant of it: a word ending in .patch is a patch (-p1, from the
# repository root) applied to a copy of kernels/ (an experiment kept beside its page, not in the product), any
# other word comma-separated macro definitions ("KVW_A=1,KVW_B=0"). All build in parallel beside one build of
# attention.cu and common.cu.
build_hopper_checks() {
  local nvcc=/usr/local/cuda/bin/nvcc flags=(-std=c++17 -O2 --expt-relaxed-constexpr -gencode=arch=compute_90a,code=sm_90a
    -lineinfo -I engine/include -I engine/backend/include -I kernels)
  # built once per set of variants on a warm machine (another HOPPER_VARIANTS rebuilds them all)
  [[ -x /tmp/kvw/hopper_check && "$(cat /tmp/kvw/hopper_variants.id 2>/dev/null)" == "${HOPPER_VARIANTS:-}" ]] && return 0
  rm -f /tmp/kvw/hopper_check /tmp/kvw/hopper_variants.id
  ( "$nvcc" "${flags[@]}" -c kernels/attention.cu -o /tmp/kvw/attention.o &&
    "$nvcc" "${flags[@]}" -c kernels/common.cu -o /tmp/kvw/common.o ) > "$OUT/hopper_check_build.txt" 2>&1 &
  "$nvcc" "${flags[@]}" -c docs/experiments/2026-12-06-hopper-attention/hopper_check.cu -o /tmp/kvw/hopper_check.o \
    >> "$OUT/hopper_check_build.txt" 2>&1 &
  local i=0 v defs patches=()
  "$nvcc" "${flags[@]}" -c kernels/hopper_attention.cu -o /tmp/kvw/hopper_0.o >> "$OUT/hopper_check_build.txt" 2>&1 &
  for v in ${HOPPER_VARIANTS:-}; do
    i=$((i + 1)); defs=(); local src=kernels
    if [[ $v == *.patch ]]; then
      patches[i]=1; src=/tmp/kvw/variant_$i/kernels; rm -rf "/tmp/kvw/variant_$i"; mkdir -p "$src"; cp -r kernels/. "$src"
      if command -v patch > /dev/null; then patch -p1 -d "/tmp/kvw/variant_$i" < "$v"
      else git apply --unsafe-paths --directory="/tmp/kvw/variant_$i" "$v"; fi >> "$OUT/hopper_check_build.txt" 2>&1 ||
        { echo "variant $i: $v does not apply" >> "$OUT/hopper_check_build.txt"; return 1; }
    else
      IFS=, read -ra defs <<< "$v"
    fi
    # a patched copy's own headers come first: quoted includes search the source's folder before -I
    "$nvcc" "${flags[@]}" "${defs[@]/#/-D}" -c "$src/hopper_attention.cu" \
      -o /tmp/kvw/hopper_$i.o >> "$OUT/hopper_check_build.txt" 2>&1 &
    # a patch may change the kernel's parameters (hopper_attention.h): the check is built against its headers
    rm -f /tmp/kvw/hopper_check_$i.o
    [[ $src != kernels ]] && "$nvcc" -I "$src" "${flags[@]}" -c docs/experiments/2026-12-06-hopper-attention/hopper_check.cu \
      -o /tmp/kvw/hopper_check_$i.o >> "$OUT/hopper_check_build.txt" 2>&1 &
  done
  wait
  for ((v = 0; v <= i; ++v)); do
    local exe=/tmp/kvw/hopper_check_$v check_o=/tmp/kvw/hopper_check_$v.o; [[ $v == 0 ]] && exe=/tmp/kvw/hopper_check
    if [[ -n "${patches[v]:-}" ]]; then  # a patch's check must be its own: the parameters may differ
      [[ -f $check_o ]] || { echo "variant $v: its check did not build" >> "$OUT/hopper_check_build.txt"; return 1; }
    else
      check_o=/tmp/kvw/hopper_check.o
    fi
    "$nvcc" -gencode=arch=compute_90a,code=sm_90a "$check_o" /tmp/kvw/hopper_$v.o /tmp/kvw/attention.o \
      /tmp/kvw/common.o -o "$exe" >> "$OUT/hopper_check_build.txt" 2>&1 || return 1
  done
  echo "${HOPPER_VARIANTS:-}" > /tmp/kvw/hopper_variants.id
}

if has check; then
  # the sm_90a attention alone, before the long build: its device check (correctness against double on small
  # shapes, then its time at the default and HY shapes), built with nvcc in about a minute, no packages needed
  stamp "hopper check"
  build_hopper_checks && timeout "${CHECK_TIMEOUT:-120}" /tmp/kvw/hopper_check > "$OUT/hopper_check.txt" 2>&1
  echo "hopper check rc=$?"; tail -12 "$OUT/hopper_check.txt" "$OUT/hopper_check_build.txt" 2>/dev/null | grep -v '^$'
  i=0
  for v in ${HOPPER_VARIANTS:-}; do
    i=$((i + 1)); timeout 60 /tmp/kvw/hopper_check_$i > "$OUT/hopper_check_$i.txt" 2>&1
    echo "variant $i ($v) rc=$?"; grep -E 'FAIL|time' "$OUT/hopper_check_$i.txt"
  done
fi
if has ncu_hopper; then
  # Nsight Compute on the sm_90a kernel at HY's shape (the check's binary, built by the check phase or here)
  build_hopper_checks || { echo "the check did not build"; tail -20 "$OUT/hopper_check_build.txt"; }
  check_bin=/tmp/kvw/hopper_check; [[ -n "${NCU_VARIANT:-}" ]] && check_bin=/tmp/kvw/hopper_check_$NCU_VARIANT
  stamp "ncu of the wgmma kernel ($check_bin)"
  NCU=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
  timeout "${NCU_TIMEOUT:-300}" "$NCU" --kernel-name regex:hopper_attention_kernel --launch-skip 3 --launch-count 1 \
    --section SpeedOfLight --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis --section Occupancy \
    --section LaunchStats --section WarpStateStats --section SchedulerStats --section InstructionStats \
    --section SourceCounters "$check_bin" hy ${NCU_COLS:-} > "$OUT/ncu_hopper.txt" 2>&1
  echo "ncu rc=$?"; grep -E 'Compute \(SM\) Throughput|Memory Throughput|Issue Slots Busy|Registers Per|Stall' \
    "$OUT/ncu_hopper.txt" | head -20
  # the stall reasons per SASS instruction (the source page of a saved report, as CSV; -lineinfo maps them to
  # lines of hopper_attention.cu)
  timeout "${NCU_TIMEOUT:-300}" "$NCU" --kernel-name regex:hopper_attention_kernel --launch-skip 3 --launch-count 1 \
    --section SourceCounters --section WarpStateStats --import-source yes -o /tmp/kvw/ncu_hopper -f \
    "$check_bin" hy ${NCU_COLS:-} > /dev/null 2>&1 &&
    "$NCU" --import /tmp/kvw/ncu_hopper.ncu-rep --page source --print-source sass --csv > "$OUT/ncu_hopper_sass.csv" 2>&1
  echo "ncu source page rc=$? ($(wc -l < "$OUT/ncu_hopper_sass.csv" 2>/dev/null) lines)"
  python3 docs/experiments/2026-12-06-hopper-attention/ncu_stalls.py "$OUT/ncu_hopper_sass.csv" > "$OUT/ncu_hopper_stalls.txt" 2>&1
  head -14 "$OUT/ncu_hopper_stalls.txt"
fi
if has build; then
  stamp "build"
  bash .debs/unpack-debs.sh .debs > /dev/null 2>&1
  cmake -S . -B /tmp/b -G Ninja -DCMAKE_BUILD_TYPE=Release -DKVW_GUI=OFF -DKVW_TESTS=ON \
    -DCMAKE_CUDA_ARCHITECTURES=90 > /tmp/kvw/build.log 2>&1 &&
    ninja -C /tmp/b -j "$(nproc)" kvworld-cli test_cuda_ops >> /tmp/kvw/build.log 2>&1
  rc=$?; stamp "build rc=$rc"; cp /tmp/kvw/build.log "$OUT/"
  [[ $rc == 0 ]] || { tail -30 /tmp/kvw/build.log; exit 1; }
fi
if has tests; then
  stamp "test_cuda_ops"
  timeout "${GPU_TESTS_TIMEOUT:-240}" /tmp/b/tests/test_cuda_ops > "$OUT/test_cuda_ops.log" 2>&1
  echo "test_cuda_ops rc=$?" | tee /tmp/kvw/tests_rc
  grep -E '^\[  (PASSED|FAILED) |tests? (ran|FAILED)|^\[  FAILED' "$OUT/test_cuda_ops.log" | tail -25
  grep -E 'rotated' "$OUT/test_cuda_ops.log" | grep -E 'tolerance|quantization' | head -20
fi
if has lift; then
  # Each refusal goes only when the tests that exercise it passed (a failure elsewhere, e.g. in a kernel of
  # another issue, does not keep it): rotated codes -> no failed test naming rotated codes or the rollout rows;
  # the measured correction -> none naming it or the rollout rows.
  failed=$(grep -E '^\[  FAILED  \] ' "$OUT/test_cuda_ops.log" 2>/dev/null | sort -u)
  ran=$(grep -cE '^\[       OK \] ' "$OUT/test_cuda_ops.log" 2>/dev/null)
  lift_rot=0; lift_meas=0
  if [[ "${ran:-0}" -gt 0 ]]; then
    echo "$failed" | grep -qiE 'rotated|ForwardAndRollout' || lift_rot=1
    echo "$failed" | grep -qiE 'measured|ForwardAndRollout' || lift_meas=1
  fi
  LIFT_ROT=$lift_rot LIFT_MEAS=$lift_meas python3 - <<'EOF2'
import os, re
p = "engine/src/session.cpp"
s = open(p).read()
if os.environ["LIFT_ROT"] == "1":
    n = len(s)
    s = re.sub(r'\n    if \(model\.backend\(\) == BackendKind::Cuda &&\s*\(key_format\(p\.cache\)\.rotated \|\| '
               r'value_format\(p\.cache\)\.rotated\)\)\s*throw Error\("rotated codes run on the CPU backend only so far[^;]*;',
               '', s)
    assert len(s) < n, "the rotated refusal was not found"
    print("lifted the CUDA refusal of rotated codes")
if os.environ["LIFT_MEAS"] == "1":
    n = len(s)
    s = re.sub(r'\n    if \(model\.backend\(\) == BackendKind::Cuda && p\.cache\.correction == Correction::Measured\)\s*'
               r'throw Error\("the measured correction runs on the CPU backend only so far[^;]*;', '', s)
    assert len(s) < n, "the measured refusal was not found"
    print("lifted the CUDA refusal of the measured correction")
open(p, "w").write(s)
EOF2
  if [[ $lift_rot == 1 || $lift_meas == 1 ]]; then
    ninja -C /tmp/b -j "$(nproc)" kvworld-cli >> /tmp/kvw/build.log 2>&1; stamp "kvworld-cli rebuilt rc=$?"
  else
    stamp "the tests of rotated codes and of the measured correction did not pass: both refusals stay"
  fi
fi
if has bench; then
  stamp "SDPA baseline, then bench-attention against it"
  python3 tools/bench/sdpa_baseline.py --json "$OUT/sdpa_baseline.json" 2>&1 | tail -6
  base=(); [[ -s "$OUT/sdpa_baseline.json" ]] && base=(--baseline "$OUT/sdpa_baseline.json")
  "$CLI" bench-attention --json "$OUT/bench_attention.json" "${base[@]}" 2>&1 | tee "$OUT/bench_attention.txt" | tail -40
fi
if has e2e; then
  for path in fused composition hopper; do
    stamp "end to end, $path attention"
    KVW_ATTENTION=$path timeout 200 "$CLI" bench --backend cuda --model "${E2E_MODEL:-assets/models/default}" --chunks 20 \
      --json "$OUT/bench_e2e_$path.json" > "$OUT/bench_e2e_$path.txt" 2>&1
    echo "bench ($path) rc=$?"; tail -12 "$OUT/bench_e2e_$path.txt"
  done
fi
if has sanitize; then
  SAN=/usr/local/cuda/bin/compute-sanitizer
  stamp "compute-sanitizer memcheck"
  timeout "${MEMCHECK_TIMEOUT:-300}" "$SAN" --tool memcheck --error-exitcode 9 /tmp/b/tests/test_cuda_ops \
    --gtest_filter='*CudaAttention*:*CudaComposition*:*CudaQuantize*:Hopper.*:CudaBackend.ForwardAndRolloutMatchCpu' \
    > "$OUT/sanitize_memcheck.txt" 2>&1
  echo "memcheck rc=$?"; grep -E 'ERROR SUMMARY|PASSED|FAILED' "$OUT/sanitize_memcheck.txt" | tail -4
  stamp "compute-sanitizer racecheck"
  # cuDNN's own SDPA kernels are left out: racecheck reports hazards inside them (12 on 2026-12-06, within one
  # generated sm90 flash kernel, a vendor kernel racecheck may not model; memcheck still covers them)
  timeout "${RACECHECK_TIMEOUT:-240}" "$SAN" --tool racecheck --kernel-name-exclude kns=cudnn --error-exitcode 9 /tmp/b/tests/test_cuda_ops \
    --gtest_filter='*CudaAttention*K2V2_g128_tok_taylor_ctx3*:*CudaComposition*K2V2_g128_tok_taylor_ctx3*:Hopper.ScratchAttentionMatchesCpu' \
    > "$OUT/sanitize_racecheck.txt" 2>&1
  echo "racecheck rc=$?"; grep -E 'RACECHECK SUMMARY|ERROR SUMMARY|PASSED|FAILED' "$OUT/sanitize_racecheck.txt" | tail -4
fi
if has ncu; then
  stamp "ncu of the fused kernel"
  NCU=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
  timeout "${NCU_TIMEOUT:-300}" "$NCU" --kernel-name regex:attention_kernel --launch-count 4 \
    --section SpeedOfLight --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
    --section Occupancy --section LaunchStats --section WarpStateStats \
    "$CLI" bench-attention --shapes hy-worldplay-8b --iters 1 --formats "K2/V2 g128 taylor" \
    > "$OUT/ncu_attention.txt" 2>&1
  echo "ncu rc=$?"; grep -E 'Compute \(SM\) Throughput|Memory Throughput|Achieved Occupancy|Registers Per|Shared Memory Configuration Size' "$OUT/ncu_attention.txt" | head -16
fi
if has ncu_pass; then
  # the context pass with and without Taylor's columns (2026-12-06: 0.445 against 0.294 ms at HY's shape for 6%
  # more bytes): its keys-and-values kernel, 9 launches a format in bench-attention's order (3 before the wgmma
  # kernel, 3 timed alone, 3 before cuDNN): BF16 (which always runs) 1-9, off 10-18, taylor 19-27
  stamp "ncu of the context pass"
  NCU=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
  timeout "${NCU_TIMEOUT:-300}" "$NCU" --kernel-name regex:context_pass --launch-count 27 \
    --section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy --section LaunchStats \
    --section WarpStateStats --section SchedulerStats \
    "$CLI" bench-attention --shapes hy-worldplay-8b --iters 1 --formats "K2/V2 g128 off,K2/V2 g128 taylor" \
    > "$OUT/ncu_pass.txt" 2>&1
  echo "ncu rc=$?"; grep -E 'Duration|DRAM Throughput' "$OUT/ncu_pass.txt" | head -60
fi
if has paired; then
  stamp "paired, 64 worlds x 8 chunks"
  timeout "${PAIRED_TIMEOUT:-420}" "$CLI" eval --backend cuda --mode paired --traces 64 --world-base 2000000 --bits 2 \
    --groups 128 --layouts token --corrections off,taylor,measured --correction-below-ts ${PAIRED_TS:-1,0.75} --rotations none,hadamard \
    --paired-chunks 8 --concurrent ${CONCURRENT:-8} --out "$OUT/paired" > "$OUT/paired.txt" 2>&1
  echo "paired rc=$?"; tail -25 "$OUT/paired.txt"
fi
if has grid; then
  stamp "paired grid, 16 worlds x 2 chunks"
  timeout "${GRID_TIMEOUT:-480}" "$CLI" eval --backend cuda --mode paired --traces 16 --world-base 2000000 --bits 8,4,2 \
    --groups 32,64,128 --layouts token,channel --corrections off,taylor --correction-below-ts 1,0.75 \
    --rotations none,hadamard --paired-chunks 2 --concurrent ${CONCURRENT:-8} --out "$OUT/grid" > "$OUT/grid.txt" 2>&1
  echo "grid rc=$?"; tail -40 "$OUT/grid.txt"
fi
stamp "done"
