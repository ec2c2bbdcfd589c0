#!/usr/bin/env bash
# Builds dsv4 and runs the whole test suite (CPU tests everywhere; GPU tests skip without a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
if command -v clang-format > /dev/null; then ./scripts/check_format.sh; else echo "format check skipped: no clang-format"; fi
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build "$BUILD" -j "$(nproc)"
ctest --test-dir "$BUILD" --output-on-failure -j "$(nproc)"
