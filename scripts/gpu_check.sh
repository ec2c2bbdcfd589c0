#!/usr/bin/env bash
# On a Hopper machine (H100/H200): build for sm_90a, run every GPU test (test_ops and the GPU
# model tests) and the benchmarks, and print a short summary last. Logs go to $OUT (default
# /tmp/dsv4-gpu-check). Usage: scripts/gpu_check.sh [--quick]   (--quick: fewer bench cases)
# The whole model and its HF transformers peer take minutes more: scripts/bench_model.sh.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/dsv4-gpu-check}
mkdir -p "$OUT"
BUILD=${BUILD:-build-gpu}
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a > "$OUT/cmake.log" 2>&1 \
  || { tail -20 "$OUT/cmake.log"; exit 1; }
ninja -C "$BUILD" dsv4_cli test_ops dsv4_tests > "$OUT/build.log" 2>&1 || { grep -E "error|FAILED" "$OUT/build.log" | head -20; exit 1; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"

./"$BUILD"/tests/test_ops --gtest_brief=1 > "$OUT/test_ops.log" 2>&1
ops_rc=$?
# The CPU-side model tests that the GPU path relies on (fixtures vs HF), run here too.
./"$BUILD"/tests/dsv4_tests --gtest_brief=1 --gtest_filter='Fixtures/*:CpuOps.*:Generator*' > "$OUT/cpu_model.log" 2>&1
cpu_rc=$?

tokens=1,8,64
[ "${1:-}" = "--quick" ] && tokens=1,64
./"$BUILD"/dsv4 bench linear --format nvfp4,mxfp4,fp8 --shape flash --tokens "$tokens" > "$OUT/bench_linear.txt" 2>&1
./"$BUILD"/dsv4 bench moe --shape flash --tokens "$tokens,512,4096" > "$OUT/bench_moe.txt" 2>&1 || true

echo "== bench linear"; cat "$OUT/bench_linear.txt"
echo "== bench moe"; cat "$OUT/bench_moe.txt"
echo "== test_ops (rc=$ops_rc)"; grep -E "^\[  (PASSED|FAILED)|tests? from .* ran|FAILED  \]" "$OUT/test_ops.log" | tail -8
echo "== CPU model tests on this machine (rc=$cpu_rc)"; grep -E "^\[  (PASSED|FAILED)|FAILED  \]" "$OUT/cpu_model.log" | tail -4
exit $(( ops_rc || cpu_rc ))
