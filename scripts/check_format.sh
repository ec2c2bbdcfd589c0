#!/usr/bin/env bash
# Fails when a tracked C++/CUDA file differs from .clang-format's layout (clang-format 14).
set -euo pipefail
cd "$(dirname "$0")/.."
files=$(git ls-files '*.cpp' '*.h' '*.cu' '*.cuh')
if ! clang-format --dry-run --Werror $files; then
  echo "format check failed: run clang-format -i on the files above" >&2
  exit 1
fi
echo "format check: $(echo "$files" | wc -w) files ok"
