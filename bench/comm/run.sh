#!/usr/bin/env bash
# Runs bench_comm at 2 and 4 ranks. Prints one JSON line per (op, size, layout) and keeps them
# in OUTPUT_DIR/bench_comm_np2.jsonl and OUTPUT_DIR/bench_comm_np4.jsonl.
# Usage: bench/comm/run.sh [BUILD_DIR (default build)] [OUTPUT_DIR (default $TMPDIR or /tmp)] [-- bench_comm flags]
set -euo pipefail
build_dir=build
output_dir=${TMPDIR:-/tmp}
if [ $# -gt 0 ] && [ "$1" != "--" ]; then build_dir=$1; shift; fi
if [ $# -gt 0 ] && [ "$1" != "--" ]; then output_dir=$1; shift; fi
if [ $# -gt 0 ] && [ "$1" = "--" ]; then shift; fi
bench="$build_dir/bench/comm/bench_comm"
if [ ! -x "$bench" ]; then
  echo "no $bench: build it first (cmake --build $build_dir --target bench_comm)" >&2
  exit 1
fi
mkdir -p "$output_dir"
# Single-threaded ranks: oversubscribed runs stay fair.
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
for ranks in 2 4; do
  mpiexec -n "$ranks" --oversubscribe --allow-run-as-root --mca mpi_yield_when_idle 1 "$bench" "$@" |
    tee "$output_dir/bench_comm_np$ranks.jsonl"
done
