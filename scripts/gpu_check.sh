#!/usr/bin/env bash
# On a Hopper machine (H100/H200): build for sm_90a (or take prebuilt binaries), run every GPU
# test (test_ops: the ops and the GPU model tests) and the op benchmarks, and print a short
# summary last. Logs go to $OUT (default /tmp/dsv4-gpu-check).
# Usage: scripts/gpu_check.sh [--quick]   (--quick: fewer bench cases)
# Environment: BIN=DIR takes dsv4 and test_ops (and dsv4_tests, if there) from DIR instead of
#   building (binaries built elsewhere with static cudart run as they are); DSV4_FIXTURES defaults
#   to this checkout's tests/fixtures.
# The whole model and its HF transformers peer take minutes more: scripts/bench_model.sh.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/dsv4-gpu-check}
mkdir -p "$OUT"
export DSV4_FIXTURES=${DSV4_FIXTURES:-$PWD/tests/fixtures}
if [ -n "${BIN:-}" ]; then
  DSV4=$BIN/dsv4 TEST_OPS=$BIN/test_ops CPU_TESTS=$BIN/dsv4_tests
else
  BUILD=${BUILD:-build-gpu}
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a > "$OUT/cmake.log" 2>&1 \
    || { tail -20 "$OUT/cmake.log"; exit 1; }
  ninja -C "$BUILD" dsv4_cli test_ops dsv4_tests > "$OUT/build.log" 2>&1 || { grep -E "error|FAILED" "$OUT/build.log" | head -20; exit 1; }
  DSV4=$BUILD/dsv4 TEST_OPS=$BUILD/tests/test_ops CPU_TESTS=$BUILD/tests/dsv4_tests
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"

"$TEST_OPS" --gtest_brief=1 > "$OUT/test_ops.log" 2>&1
ops_rc=$?
# The CPU-side model tests that the GPU path relies on (fixtures vs HF), run here too.
cpu_rc=0
if [ -x "$CPU_TESTS" ]; then
  "$CPU_TESTS" --gtest_brief=1 --gtest_filter='Fixtures/*:CpuOps.*:Generator*' > "$OUT/cpu_model.log" 2>&1
  cpu_rc=$?
fi

tokens=1,8,64
[ "${1:-}" = "--quick" ] && tokens=1,64
"$DSV4" bench linear --format nvfp4,mxfp4,fp8 --shape flash --tokens "$tokens" > "$OUT/bench_linear.txt" 2>&1
"$DSV4" bench moe --shape flash --tokens "$tokens,512,4096" > "$OUT/bench_moe.txt" 2>&1 || true
"$DSV4" bench attention --shape flash --batch 1,64 --prefill 4096 > "$OUT/bench_attention.txt" 2>&1 || true

echo "== bench linear"; cat "$OUT/bench_linear.txt"
echo "== bench moe"; cat "$OUT/bench_moe.txt"
echo "== bench attention"; cat "$OUT/bench_attention.txt"
echo "== test_ops (rc=$ops_rc)"; grep -E "^\[  (PASSED|FAILED)|tests? from .* ran|FAILED  \]" "$OUT/test_ops.log" | tail -25
[ -x "$CPU_TESTS" ] && { echo "== CPU model tests on this machine (rc=$cpu_rc)"; grep -E "^\[  (PASSED|FAILED)|FAILED  \]" "$OUT/cpu_model.log" | tail -4; }
exit $(( ops_rc || cpu_rc ))
