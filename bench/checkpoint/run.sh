#!/usr/bin/env bash
# Saves and loads a GPT-2 checkpoint (L=8, C=512, V=8192 by default: 29.5M parameters, a 355 MB
# file with the AdamW moments) on one rank and in several layouts of 2 and 4 ranks, each beside
# one rank writing the same file alone. One JSON line per layout, also kept in
# OUTPUT_DIR/bench_checkpoint.jsonl.
# Usage: bench/checkpoint/run.sh [BUILD_DIR (default build)] [OUTPUT_DIR (default $TMPDIR or /tmp)] [-- flags]
set -euo pipefail
build_dir=build
output_dir=${TMPDIR:-/tmp}
if [ $# -gt 0 ] && [ "$1" != "--" ]; then build_dir=$1; shift; fi
if [ $# -gt 0 ] && [ "$1" != "--" ]; then output_dir=$1; shift; fi
if [ $# -gt 0 ] && [ "$1" = "--" ]; then shift; fi
bench="$build_dir/bench/checkpoint/bench_checkpoint"
if [ ! -x "$bench" ]; then
  echo "no $bench: build it first (cmake --build $build_dir --target bench_checkpoint)" >&2
  exit 1
fi
mkdir -p "$output_dir"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
model=(--layers 8 --hidden 512 --heads 8 --seq 256 --vocab 8192 --reps 5 --dir "$output_dir")
out="$output_dir/bench_checkpoint.jsonl"
: > "$out"
#            ranks dp tp pp zero
for layout in "1 1 1 1 0" "2 2 1 1 1" "2 2 1 1 3" "2 1 2 1 0" "2 1 1 2 0" "4 4 1 1 1" "4 2 2 1 3" "4 1 2 2 0"; do
  read -r ranks dp tp pp zero <<< "$layout"
  mpiexec -n "$ranks" --oversubscribe --allow-run-as-root --mca mpi_yield_when_idle 1 "$bench" "${model[@]}" \
    --dp "$dp" --tp "$tp" --pp "$pp" --zero "$zero" "$@" | tee -a "$out"
done
