#!/usr/bin/env bash
# On a GPU machine with Nsight Compute: every kernel's duration for one command, then a summary.
# Usage: scripts/profile_kernels.sh OUT.csv COMMAND [ARGS...]
#   e.g. scripts/profile_kernels.sh /tmp/decode.csv build-gpu/dsv4 bench model --layers 4 --batch 1 --steps 1 --eager
# Then: scripts/ncu_summary.py OUT.csv [--from-last embedding_kernel --count 2]
# Kernels run one at a time under ncu, so time figures printed by the command itself are not valid.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 OUT.csv COMMAND [ARGS...]" >&2; exit 2; }
out=$1
shift
NCU=${NCU:-$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)}
[ -n "$NCU" ] || { echo "$0: ncu not found; set NCU" >&2; exit 1; }
# --clock-control none: leave the GPU's clocks as they are (the device's rules).
"$NCU" --clock-control none --metrics gpu__time_duration.sum --csv --log-file "$out" "$@"
python3 "$(dirname "$0")/ncu_summary.py" "$out"
