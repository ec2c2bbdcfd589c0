#!/usr/bin/env bash
# The main job on a fresh machine, no download: build dsv4, write a small random-weight
# DeepSeek-V4 checkpoint in NVIDIA's NVFP4 layout, and inspect it.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build "$BUILD" -j "$(nproc)" --target dsv4_cli
MODEL=${MODEL:-$BUILD/models/tiny-nvfp4}
"$BUILD/dsv4" make-model --preset tiny --layout nvfp4 --out "$MODEL"
"$BUILD/dsv4" inspect "$MODEL"
