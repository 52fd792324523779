#!/usr/bin/env bash
# Runs bench_comm at 2 and 4 ranks. Prints one JSON line per (op, size, layout) and keeps them
# in OUTPUT_DIR/bench_comm_np2.jsonl and OUTPUT_DIR/bench_comm_np4.jsonl.
# Usage: bench/comm/run.sh [BUILD_DIR (default build)] [OUTPUT_DIR (default $TMPDIR or /tmp)] [-- bench_comm flags]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common/run_args.sh"
bench_setup comm bench_comm "$@"
for ranks in 2 4; do
  bench_run "$ranks" ${bench_flags[@]+"${bench_flags[@]}"} | tee "$output_dir/bench_comm_np$ranks.jsonl"
done
