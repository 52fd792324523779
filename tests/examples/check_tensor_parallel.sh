#!/usr/bin/env bash
# train_gpt --tp: the losses of a tensor-parallel run equal the one-rank run's (1e-4
# relative), and a checkpoint saved at tp = 2 continues at tp = 1 and at tp = 4 (with
# sequence parallelism) with the losses of the run that never stopped. The flash attention
# kernel gives the blocked kernel's losses: split over tp with sequence parallelism, over a
# zero-bubble pipeline with recomputation, and from a checkpoint the blocked run saved.
set -euo pipefail
exe="$1"; mpiexec="$2"; dir="$3"; shift 3
rm -rf "$dir"; mkdir -p "$dir"
source "$(dirname "$0")/common.sh"
run 1 "$@" --steps 6 --log-json "$dir/one.jsonl" > "$dir/one.log"
run 2 "$@" --steps 6 --tp 2 --log-json "$dir/tp2.jsonl" > "$dir/tp2.log"
compare "$dir/one.jsonl" "$dir/tp2.jsonl"
grep -q "^layout: 2 rank(s) = dp 1 x tp 2 x pp 1 on 1 node: " "$dir/tp2.log"
grep -qE "rank 1 on [^:]+: dp 0, tp 1, pp 0: blocks \[0, 2\) \+embedding \+head, its tensor-parallel shard" "$dir/tp2.log"
run 2 "$@" --steps 3 --tp 2 --save "$dir/tp2_step3.safetensors" > "$dir/save.log"
run 1 "$@" --steps 6 --load "$dir/tp2_step3.safetensors" --log-json "$dir/tp1_resumed.jsonl" > "$dir/tp1.log"
run 4 "$@" --steps 6 --tp 4 --sequence-parallel --load "$dir/tp2_step3.safetensors" \
    --log-json "$dir/tp4_resumed.jsonl" > "$dir/tp4.log"
grep '"step":[456],' "$dir/tp2.jsonl" > "$dir/tp2_tail.jsonl"
compare "$dir/tp2_tail.jsonl" "$dir/tp1_resumed.jsonl"
compare "$dir/tp2_tail.jsonl" "$dir/tp4_resumed.jsonl"
run 2 "$@" --steps 6 --tp 2 --sequence-parallel --attention flash --log-json "$dir/tp2_flash.jsonl" > /dev/null
compare "$dir/one.jsonl" "$dir/tp2_flash.jsonl"
run 2 "$@" --steps 6 --pp 2 --schedule zb --recompute --attention flash --log-json "$dir/pp2_flash.jsonl" > /dev/null
compare "$dir/one.jsonl" "$dir/pp2_flash.jsonl"
run 1 "$@" --steps 6 --attention flash --load "$dir/tp2_step3.safetensors" --log-json "$dir/flash_resumed.jsonl" \
    > /dev/null
compare "$dir/tp2_tail.jsonl" "$dir/flash_resumed.jsonl"
# Bad layouts: one clear error on every rank, non-zero exit, no hang.
if run 2 "$@" --steps 1 --tp 2 --heads 3 --hidden 24 > "$dir/bad.log" 2>&1; then echo "tp 2 with 3 heads ran"; exit 1; fi
grep -q "3 heads do not divide over 2 tensor-parallel ranks" "$dir/bad.log"
if run 2 "$@" --steps 1 --tp 3 > "$dir/bad2.log" 2>&1; then echo "--tp 3 on 2 ranks ran"; exit 1; fi
grep -q "started on 2 rank(s) but --dp 1 x --tp 3 = 3" "$dir/bad2.log"
echo "ok: bad layouts refused"
