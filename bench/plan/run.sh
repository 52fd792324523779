#!/usr/bin/env bash
# The planner's predictions against measured runs on this machine: for a GPT-2 and the surrogate's
# MLP, every dp x tp x pp layout of 2 and of 4 ranks with its ZeRO, recomputation, sequence-
# parallel, schedule and micro-batch variants, each run beside its predicted step time and peak
# memory per rank (bench_plan). Each run calibrates the machine first, inside the run, and keeps
# the calibration in OUTPUT_DIR/plan-machine-<ranks>-<model>.json (a second run reuses it).
# Prints JSON lines and keeps them in OUTPUT_DIR/bench_plan.jsonl; the summary lines hold the rank
# correlation, the first choice against the measured best and the largest memory error.
# The ranks are bound to cores round-robin (rank r on core r mod cores), so that 4 ranks on 2
# cores stay where they started and the planner, which reads the binding, replays them there.
# Usage: bench/plan/run.sh [BUILD_DIR (default build)] [OUTPUT_DIR (default $TMPDIR or /tmp)]
#        [-- bench_plan flags: e.g. -- --communication-seconds 60 to time the calibration's
#        collectives over a minute instead of three passes]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../common/run_args.sh"
bench_setup plan bench_plan "$@"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
out="$output_dir/bench_plan.jsonl"
: > "$out"
for ranks in 2 4; do
  for model in gpt2 mlp; do
    mpiexec -n $ranks --oversubscribe --mca mpi_yield_when_idle 1 --bind-to core:overload-allowed --map-by core \
      "$bench" ${bench_flags[@]+"${bench_flags[@]}"} --model $model \
      --cache "$output_dir/plan-machine-$ranks-$model.json" | tee -a "$out"
  done
done
