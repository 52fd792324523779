#!/usr/bin/env bash
# train_gpt --pp: every schedule (and pp x tp, and recomputation) gives the one-rank losses
# (1e-4 relative); a one-rank checkpoint resumes at pp = 2, a pipeline's checkpoint on one
# rank and at pp = 4; bad pipelines are refused.
set -euo pipefail
exe="$1"; mpiexec="$2"; dir="$3"; shift 3
rm -rf "$dir"; mkdir -p "$dir"
source "$(dirname "$0")/common.sh"
run 1 "$@" --steps 5 --log-json "$dir/one.jsonl" > "$dir/one.log"
for schedule in gpipe 1f1b zb; do
  run 2 "$@" --steps 5 --pp 2 --schedule "$schedule" --log-json "$dir/pp2_$schedule.jsonl" > "$dir/pp2_$schedule.log"
  compare "$dir/one.jsonl" "$dir/pp2_$schedule.jsonl"
done
run 2 "$@" --steps 5 --pp 2 --schedule interleaved --virtual-stages 2 --trace "$dir/trace.json" \
    --log-json "$dir/pp2_interleaved.jsonl" > "$dir/pp2_interleaved.log"
compare "$dir/one.jsonl" "$dir/pp2_interleaved.jsonl"
grep -q '"traceEvents"' "$dir/trace.json"
run 4 "$@" --steps 5 --pp 2 --tp 2 --recompute --log-json "$dir/pp2_tp2.jsonl" > "$dir/pp2_tp2.log"
compare "$dir/one.jsonl" "$dir/pp2_tp2.jsonl"
# Rank 0 prints the layout: sizes, every rank's coordinates and blocks, backend, MPI, BLAS.
grep -q "^layout: 4 rank(s) = dp 1 x tp 2 x pp 2 on 1 node: " "$dir/pp2_tp2.log"
grep -q "; BLAS: " "$dir/pp2_tp2.log"
grep -qE "rank 3 on [^:]+: dp 0, tp 1, pp 1: stage 1: blocks \[[1-3], 4\) \+head" "$dir/pp2_tp2.log"
run 4 "$@" --steps 5 --pp 4 --stage-layers 1,1,1,1 --log-json "$dir/pp4.jsonl" > "$dir/pp4.log"
compare "$dir/one.jsonl" "$dir/pp4.jsonl"
run 1 "$@" --steps 2 --save "$dir/step2.safetensors" > "$dir/save.log"
run 2 "$@" --steps 5 --pp 2 --load "$dir/step2.safetensors" --log-json "$dir/pp2_resumed.jsonl" > "$dir/resumed.log"
grep '"step":[345],' "$dir/one.jsonl" > "$dir/one_tail.jsonl"
compare "$dir/one_tail.jsonl" "$dir/pp2_resumed.jsonl"
# Saved by a pipeline (with tensor parallelism inside), resumed on one rank and at pp = 4.
run 4 "$@" --steps 2 --pp 2 --tp 2 --schedule zb --save "$dir/pp2_step2.safetensors" > "$dir/pp_save.log"
run 1 "$@" --steps 5 --load "$dir/pp2_step2.safetensors" --log-json "$dir/one_from_pp.jsonl" > "$dir/one_from_pp.log"
compare "$dir/one_tail.jsonl" "$dir/one_from_pp.jsonl"
run 4 "$@" --steps 5 --pp 4 --stage-layers 1,1,1,1 --load "$dir/pp2_step2.safetensors" \
    --log-json "$dir/pp4_from_pp.jsonl" > "$dir/pp4_from_pp.log"
compare "$dir/one_tail.jsonl" "$dir/pp4_from_pp.jsonl"
if run 2 "$@" --steps 1 --pp 2 --stage-layers 1,2 > "$dir/bad.log" 2>&1; then echo "a bad split ran"; exit 1; fi
grep -q "stage" "$dir/bad.log" && echo "ok: bad split refused: $(grep -m1 error "$dir/bad.log")"
if run 2 "$@" --steps 1 --pp 2 --schedule interleaved --virtual-stages 2 --micro-batch 8 > "$dir/bad2.log" 2>&1; then
  echo "interleaved with m=1 ran"; exit 1
fi
echo "ok: $(grep -m1 error "$dir/bad2.log")"
