#!/usr/bin/env bash
# On a Hopper machine: `dsv4 bench model` (random weights at real widths, the first LAYERS layers)
# and its HF transformers peer (scripts/bench_hf_model.py) on the same config.json, one after the
# other in separate processes (the GPU holds one model at a time), then both side by side.
# Usage: scripts/bench_model.sh [path/to/dsv4]        (default: build-gpu/dsv4)
# Environment: SHAPE (flash), LAYERS (4), BATCH (1,8,32,64), CONTEXT (4096), STEPS (10),
#   PYTHON (python3, with torch and transformers), OUT (/tmp/dsv4-bench-model: logs and config.json).
set -uo pipefail
cd "$(dirname "$0")/.."
DSV4=${1:-build-gpu/dsv4}
SHAPE=${SHAPE:-flash} LAYERS=${LAYERS:-4} BATCH=${BATCH:-1,8,32,64} CONTEXT=${CONTEXT:-4096} STEPS=${STEPS:-10}
PYTHON=${PYTHON:-python3}
OUT=${OUT:-/tmp/dsv4-bench-model}
mkdir -p "$OUT"
# The checkpoint is kept only long enough to hand its config.json to the peer.
CKPT=/dev/shm/dsv4-bench-model-$$
[ -w /dev/shm ] || CKPT="$OUT/checkpoint"

"$DSV4" bench model --shape "$SHAPE" --layers "$LAYERS" --batch "$BATCH" --context "$CONTEXT" --steps "$STEPS" \
  --keep "$CKPT" 2>&1 | tee "$OUT/dsv4.txt"
ours_rc=${PIPESTATUS[0]}
cp "$CKPT/config.json" "$OUT/config.json" 2>/dev/null
rm -rf "$CKPT"
[ -f "$OUT/config.json" ] || { echo "bench_model.sh: dsv4 bench model wrote no config.json (rc=$ours_rc)"; exit 1; }

PYTHONUNBUFFERED=1 "$PYTHON" scripts/bench_hf_model.py --config "$OUT/config.json" --batch "$BATCH" \
  --context "$CONTEXT" --steps "$STEPS" --compare "$OUT/dsv4.txt" 2>&1 | grep -v "RoPE scaling factor" \
  | tee "$OUT/hf.txt"
hf_rc=${PIPESTATUS[0]}
exit $(( ours_rc || hf_rc ))
