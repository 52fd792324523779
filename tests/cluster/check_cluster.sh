#!/usr/bin/env bash
# Two emulated hosts of two ranks each, their links limited to 1 Gbit/s (emulated_hosts.sh):
#  1. the cluster tests: nodes as MPI finds them, tensor-parallel groups inside a host judged
#     by the ranks' hostnames, the two-level all-reduce over TCP; with the ranks in host order
#     and dealt round-robin by the launcher;
#  2. train_gpt at dp 2 x tp 2 (gradients all-reduced by a ring between the hosts), tp 2 x pp 2
#     and dp 4 (in two levels) gives the one-rank losses within 1e-4;
#  3. a checkpoint saved across the hosts loads on one host and continues with the one-rank
#     losses.
# Exits 77 (skipped) where network namespaces cannot be made.
set -euo pipefail
test_exe="$1"; exe="$2"; mpiexec="$3"; dir="$4"; shift 4
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/emulated_hosts.sh"
source "$here/../examples/common.sh"  # run (one host), losses, compare
rm -rf "$dir"; mkdir -p "$dir"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
emulated_hosts_up 2 1gbit

echo "--- cluster tests, ranks in host order, then dealt round-robin"
emulated_mpiexec 4 "$test_exe"
emulated_mpiexec 4 --map-by node "$test_exe"

echo "--- train_gpt across the hosts against one rank"
run 1 "$@" --steps 6 --log-json "$dir/one.jsonl" > "$dir/one.log"
across() { local name="$1"; shift; emulated_mpiexec 4 "$exe" "$@" --log-json "$dir/$name.jsonl" > "$dir/$name.log"; }
across dp2_tp2 "$@" --steps 6 --dp 2 --tp 2
across tp2_pp2 "$@" --steps 6 --tp 2 --pp 2
across dp4 "$@" --steps 6 --dp 4
for name in dp2_tp2 tp2_pp2 dp4; do compare "$dir/one.jsonl" "$dir/$name.jsonl"; done
grep -q "^layout: 4 rank(s) = dp 2 x tp 2 x pp 1 on 2 nodes: trident-host0 ranks 0-1, trident-host1 ranks 2-3; " \
  "$dir/dp2_tp2.log"
grep -qE "rank 3 on trident-host1: dp 1, tp 1, pp 0: " "$dir/dp2_tp2.log"
grep -q "^gradient all-reduce across nodes (2 nodes x 2 ranks): reduce-scatter in the node, a ring" "$dir/dp4.log"
grep -q "^gradient all-reduce across nodes (2 nodes x 1 rank): a ring between nodes" "$dir/dp2_tp2.log"

echo "--- a checkpoint saved across the hosts, loaded on one"
across saved "$@" --steps 3 --dp 2 --tp 2 --save "$dir/step3.safetensors"
run 1 "$@" --steps 6 --load "$dir/step3.safetensors" --log-json "$dir/resumed.jsonl" > "$dir/resumed.log"
grep '"step":[456],' "$dir/one.jsonl" > "$dir/one_tail.jsonl"
compare "$dir/one_tail.jsonl" "$dir/resumed.jsonl"
echo "ok: two emulated hosts"
