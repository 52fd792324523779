#!/usr/bin/env bash
# train_gpt --tp: the losses of a tensor-parallel run equal the one-rank run's (1e-4
# relative), and a checkpoint saved at tp = 2 continues at tp = 1 and at tp = 4 (with
# sequence parallelism) with the losses of the run that never stopped.
set -euo pipefail
exe="$1"; mpiexec="$2"; dir="$3"; shift 3
rm -rf "$dir"; mkdir -p "$dir"
run() { local ranks="$1"; shift; "$mpiexec" -n "$ranks" --oversubscribe --mca mpi_yield_when_idle 1 "$exe" "$@"; }
losses() { sed -E 's/.*"step":([0-9]+),"loss":([^,]+),.*/\1 \2/' "$1"; }
# compare A B: same steps, every loss within 1e-4 relative.
compare() {
  paste <(losses "$1") <(losses "$2") | awk -v a="$1" -v b="$2" '
    { if ($1 != $3) { print "step mismatch " $1 " vs " $3; bad = 1 }
      d = $2 - $4; if (d < 0) d = -d; s = ($2 < 0 ? -$2 : $2);
      if (d > 1e-4 * s) { print "step " $1 ": " $2 " vs " $4; bad = 1 }; n++ }
    END { if (n == 0) { print "no steps"; bad = 1 }; if (bad) exit 1; print "ok: " a " ~ " b " (" n " steps)" }'
}
run 1 "$@" --steps 6 --log-json "$dir/one.jsonl" > "$dir/one.log"
run 2 "$@" --steps 6 --tp 2 --log-json "$dir/tp2.jsonl" > "$dir/tp2.log"
compare "$dir/one.jsonl" "$dir/tp2.jsonl"
run 2 "$@" --steps 3 --tp 2 --save "$dir/tp2_step3.safetensors" > "$dir/save.log"
run 1 "$@" --steps 6 --load "$dir/tp2_step3.safetensors" --log-json "$dir/tp1_resumed.jsonl" > "$dir/tp1.log"
run 4 "$@" --steps 6 --tp 4 --sequence-parallel --load "$dir/tp2_step3.safetensors" \
    --log-json "$dir/tp4_resumed.jsonl" > "$dir/tp4.log"
grep '"step":[456],' "$dir/tp2.jsonl" > "$dir/tp2_tail.jsonl"
compare "$dir/tp2_tail.jsonl" "$dir/tp1_resumed.jsonl"
compare "$dir/tp2_tail.jsonl" "$dir/tp4_resumed.jsonl"
# Bad layouts: one clear error on every rank, non-zero exit, no hang.
if run 2 "$@" --steps 1 --tp 2 --heads 3 --hidden 24 > "$dir/bad.log" 2>&1; then echo "tp 2 with 3 heads ran"; exit 1; fi
grep -q "3 heads do not divide over 2 tensor-parallel ranks" "$dir/bad.log"
if run 2 "$@" --steps 1 --tp 3 > "$dir/bad2.log" 2>&1; then echo "--tp 3 on 2 ranks ran"; exit 1; fi
grep -q "started on 2 rank(s) but --dp 1 x --tp 3 = 3" "$dir/bad2.log"
echo "ok: bad layouts refused"
