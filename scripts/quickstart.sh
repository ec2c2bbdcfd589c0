#!/usr/bin/env bash
# The main job on a fresh machine, no download: build dsv4, write a small DeepSeek-V4 checkpoint
# with RANDOM weights (real architecture and NVIDIA NVFP4 layout at small widths, DeepSeek-V4's
# real tokenizer), inspect it, and generate from a chat prompt on the CPU. The weights are random,
# so the text is too: this exercises every stage (load, tokenize, chat format, forward, sample,
# detokenize), not language ability.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build "$BUILD" -j "$(nproc)" --target dsv4_cli
MODEL=${MODEL:-$BUILD/models/tiny-nvfp4}
"$BUILD/dsv4" make-model --preset tiny --layout nvfp4 --tokenizer tests/data/tokenizer/deepseek-v4 --out "$MODEL"
"$BUILD/dsv4" inspect "$MODEL"
"$BUILD/dsv4" generate --model "$MODEL" --prompt "The capital of France is" --max-tokens 24 --seed 1
