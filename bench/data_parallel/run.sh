#!/usr/bin/env bash
# Runs bench_data_parallel on 2 ranks. Prints one JSON line per (ZeRO stage, overlap) and one
# summary line per stage, and keeps them in OUTPUT_DIR/bench_data_parallel_np2.jsonl.
# Usage: bench/data_parallel/run.sh [BUILD_DIR (default build)] [OUTPUT_DIR (default $TMPDIR or /tmp)] [-- flags]
set -euo pipefail
build_dir=build
output_dir=${TMPDIR:-/tmp}
if [ $# -gt 0 ] && [ "$1" != "--" ]; then build_dir=$1; shift; fi
if [ $# -gt 0 ] && [ "$1" != "--" ]; then output_dir=$1; shift; fi
if [ $# -gt 0 ] && [ "$1" = "--" ]; then shift; fi
bench="$build_dir/bench/data_parallel/bench_data_parallel"
if [ ! -x "$bench" ]; then
  echo "no $bench: build it first (cmake --build $build_dir --target bench_data_parallel)" >&2
  exit 1
fi
mkdir -p "$output_dir"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
mpiexec -n 2 --oversubscribe --allow-run-as-root --mca mpi_yield_when_idle 1 "$bench" "$@" |
  tee "$output_dir/bench_data_parallel_np2.jsonl"
