#!/usr/bin/env bash
# train_gpt --dp 2 --tp 2: data parallelism over tensor-parallel replicas gives the one-rank
# losses and gradient norms (1e-4 relative) at every ZeRO stage; a checkpoint it saves loads
# on one rank and at --tp 2 and continues with the uninterrupted losses.
set -euo pipefail
exe="$1"; mpiexec="$2"; dir="$3"; shift 3
rm -rf "$dir"; mkdir -p "$dir"
source "$(dirname "$0")/common.sh"
norms() { sed -E 's/.*"step":([0-9]+),.*"grad_norm":([^,]+),.*/\1 0 \2/' "$1" | awk '{ print "{\"step\":" $1 ",\"loss\":" $3 ",}" }'; }
run 1 "$@" --steps 6 --log-json "$dir/one.jsonl" > "$dir/one.log"
for zero in 0 1 2 3; do
  run 4 "$@" --steps 6 --dp 2 --tp 2 --zero $zero --log-json "$dir/dp2_tp2_zero$zero.jsonl" > "$dir/dp2_tp2_zero$zero.log"
  compare "$dir/one.jsonl" "$dir/dp2_tp2_zero$zero.jsonl"
  compare <(norms "$dir/one.jsonl") <(norms "$dir/dp2_tp2_zero$zero.jsonl") > /dev/null || {
    echo "gradient norms differ at ZeRO-$zero"; exit 1; }
done
grep -q "^layout: 4 rank(s) = dp 2 x tp 2 x pp 1 on 1 node: " "$dir/dp2_tp2_zero0.log"
grep -qE "rank 3 on [^:]+: dp 1, tp 1, pp 0: " "$dir/dp2_tp2_zero0.log"
run 4 "$@" --steps 3 --dp 2 --tp 2 --zero 2 --save "$dir/step3.safetensors" > "$dir/save.log"
run 1 "$@" --steps 6 --load "$dir/step3.safetensors" --log-json "$dir/one_resumed.jsonl" > "$dir/r1.log"
run 2 "$@" --steps 6 --tp 2 --load "$dir/step3.safetensors" --log-json "$dir/tp2_resumed.jsonl" > "$dir/r2.log"
grep '"step":[456],' "$dir/one.jsonl" > "$dir/one_tail.jsonl"
compare "$dir/one_tail.jsonl" "$dir/one_resumed.jsonl"
compare "$dir/one_tail.jsonl" "$dir/tp2_resumed.jsonl"
echo "ok: dp x tp"
