#!/usr/bin/env bash
# Two emulated hosts of two ranks each, links limited to 1 Gbit/s (tests/cluster/emulated_hosts.sh;
# needs root), in one run:
#  1. bench_two_level: the two-level gradient all-reduce against the flat ring, beside the
#     alpha-beta model's prediction from the links measured in the same run;
#  2. train_gpt at dp 2 x tp 2, tensor-parallel groups inside a host (the default placement)
#     against tensor-parallel groups across the hosts (--mesh-order dp,tp,pp), median step times,
#     for two GPT-2 shapes: many tokens per step for their parameters (tp's per-layer
#     all-reduces of activations outweigh dp's one of gradients) and the reverse.
# Prints JSON lines and keeps them in OUTPUT_DIR/bench_cluster.jsonl.
# Usage: bench/cluster/run.sh [BUILD_DIR (default build)] [OUTPUT_DIR (default $TMPDIR or /tmp)]
#        [-- train_gpt model flags (instead of the two shapes)]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../common/run_args.sh"
bench_setup cluster bench_two_level "$@"
train_gpt="$(dirname "$bench")/../../examples/train_gpt/train_gpt"
[ -x "$train_gpt" ] || { echo "no $train_gpt: build it first" >&2; exit 1; }
models=("--layers 2 --heads 4 --hidden 128 --seq 256 --vocab 512 --batch 16 --micro-batch 8"
        "--layers 2 --heads 6 --hidden 384 --seq 32 --vocab 512 --batch 4 --micro-batch 2")
[ ${#bench_flags[@]} -eq 0 ] || models=("${bench_flags[*]}")
source "$here/../../tests/cluster/emulated_hosts.sh"
emulated_hosts_up 2 1gbit
out="$output_dir/bench_cluster.jsonl"
: > "$out"
# Open MPI's ring all-reduce (algorithm 4), the flat collective the model describes; then Open
# MPI's own choice of algorithm, beside the same two-level runs.
ring=(--mca coll_tuned_use_dynamic_rules 1 --mca coll_tuned_allreduce_algorithm 4)
emulated_mpiexec 4 "${ring[@]}" "$bench" --flat ring | tee -a "$out"
emulated_mpiexec 4 "$bench" --flat default | tee -a "$out"

step_ms() {  # the median step time of a --log-json file, warm-up steps left out
  sed -E 's/.*"step":([0-9]+),.*"ms":([^,]+),.*/\1 \2/' "$1" | awk '$1 > 2 { print $2 }' | sort -g |
    awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}
scratch="$(mktemp -d)"
for model in "${models[@]}"; do
  read -r -a flags <<< "$model"
  for placement in inside across; do
    order=tp,pp,dp; [ "$placement" = across ] && order=dp,tp,pp
    emulated_mpiexec 4 "$train_gpt" "${flags[@]}" --steps 8 --warmup 2 --peak-gflops 100 --dp 2 --tp 2 \
      --mesh-order "$order" --log-json "$scratch/$placement.jsonl" > "$scratch/$placement.log" 2>&1
  done
  inside=$(step_ms "$scratch/inside.jsonl") across=$(step_ms "$scratch/across.jsonl")
  printf '{"bench":"tp_placement","layout":"dp 2 x tp 2 on 2 hosts x 2 ranks","model":"%s","tp_inside_host_ms":%s,"tp_across_hosts_ms":%s,"across_over_inside":%.3f}\n' \
    "$model" "$inside" "$across" "$(awk -v a="$across" -v b="$inside" 'BEGIN { print a / b }')" | tee -a "$out"
  rm -f "$scratch"/*.jsonl
done
rm -rf "$scratch"
