#!/usr/bin/env bash
# Saves and loads a GPT-2 checkpoint (L=8, C=512, V=8192 by default: 29.5M parameters, a 355 MB
# file with the AdamW moments) on one rank and in several layouts of 2 and 4 ranks, each beside
# one rank writing the same file alone. One JSON line per layout, also kept in
# OUTPUT_DIR/bench_checkpoint.jsonl.
# Usage: bench/checkpoint/run.sh [BUILD_DIR (default build)] [OUTPUT_DIR (default $TMPDIR or /tmp)] [-- flags]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common/run_args.sh"
bench_setup checkpoint bench_checkpoint "$@"
model=(--layers 8 --hidden 512 --heads 8 --seq 256 --vocab 8192 --reps 5 --dir "$output_dir")
out="$output_dir/bench_checkpoint.jsonl"
: > "$out"
#            ranks dp tp pp zero
for layout in "1 1 1 1 0" "2 2 1 1 1" "2 2 1 1 3" "2 1 2 1 0" "2 1 1 2 0" "4 4 1 1 1" "4 2 2 1 3" "4 1 2 2 0"; do
  read -r ranks dp tp pp zero <<< "$layout"
  bench_run "$ranks" "${model[@]}" --dp "$dp" --tp "$tp" --pp "$pp" --zero "$zero" ${bench_flags[@]+"${bench_flags[@]}"} |
    tee -a "$out"
done
