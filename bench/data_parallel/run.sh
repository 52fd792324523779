#!/usr/bin/env bash
# Runs bench_data_parallel on 2 ranks. Prints one JSON line per (ZeRO stage, overlap) and one
# summary line per stage, and keeps them in OUTPUT_DIR/bench_data_parallel_np2.jsonl.
# Usage: bench/data_parallel/run.sh [BUILD_DIR (default build)] [OUTPUT_DIR (default $TMPDIR or /tmp)] [-- flags]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common/run_args.sh"
bench_setup data_parallel bench_data_parallel "$@"
bench_run 2 ${bench_flags[@]+"${bench_flags[@]}"} | tee "$output_dir/bench_data_parallel_np2.jsonl"
