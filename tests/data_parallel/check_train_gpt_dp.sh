#!/usr/bin/env bash
# train_gpt on 2 ranks with --dp 2, at every ZeRO stage, prints the losses of the one-rank run
# (to 1e-4 relative) and its MFU against both ranks' peak; a checkpoint saved at dp=2 ZeRO-2 resumes
# on one rank; only rank 0 prints.
set -euo pipefail
exe="$1"; mpiexec="$2"; mpiflags="$3"; dir="$4"
rm -rf "$dir"; mkdir -p "$dir"
small=(--layers 2 --heads 2 --hidden 32 --seq 16 --vocab 61 --batch 8 --micro-batch 2 --peak-gflops 100)
run2() { "$mpiexec" -n 2 $mpiflags "$exe" "${small[@]}" --dp 2 "$@"; }
losses() { sed -E 's/.*"step":([0-9]+),"loss":([^,]+),.*/\1 \2/' "$1"; }
# Every step's loss within 1e-4 relative of the reference, and the same steps.
same_losses() {
  paste -d' ' <(losses "$1") <(losses "$2") | awk -v name="$3" '
    { n++; if ($1 != $3) bad = 1; d = $2 - $4; if (d < 0) d = -d; s = $4 < 0 ? -$4 : $4; if (d > 1e-4 * s) bad = 1 }
    END { if (bad || n == 0) { print "FAIL: " name; exit 1 } print "ok: " name " (" n " steps)" }'
}

"$exe" "${small[@]}" --steps 6 --log-json "$dir/one.jsonl" > "$dir/one.log"
for zero in 0 1 2 3; do
  run2 --zero "$zero" --bucket-mb 0.02 --steps 6 --log-json "$dir/dp2_zero$zero.jsonl" > "$dir/dp2_zero$zero.log"
  same_losses "$dir/dp2_zero$zero.jsonl" "$dir/one.jsonl" "dp=2 ZeRO-$zero"
  [ "$(grep -c '^step ' "$dir/dp2_zero$zero.log")" -eq 6 ] || { echo "FAIL: not one line per step"; exit 1; }
  grep -q "dp 2 x tp 1 x pp 1, ZeRO-$zero" "$dir/dp2_zero$zero.log"
done

# MFU is the job's model FLOP/s over the peak of all its ranks (--peak-gflops is one rank's): per
# token per second, 2 ranks count half what one rank does.
mfu_per_token() {
  sed -E 's/.*"tokens_per_s":([^,]+),"mfu":([^}]+)}.*/\2 \1/' "$1" | awk '{ s += $1 / $2; n++ } END { printf "%.9g", s / n }'
}
awk -v one="$(mfu_per_token "$dir/one.jsonl")" -v two="$(mfu_per_token "$dir/dp2_zero0.jsonl")" 'BEGIN {
  r = two / one; if (r < 0.495 || r > 0.505) { print "FAIL: MFU per token on 2 ranks is " r " of one rank'"'"'s, not 0.5"; exit 1 }
  print "ok: MFU against the peak of both ranks" }'

run2 --zero 2 --steps 3 --save "$dir/step3.safetensors" > "$dir/save.log"
"$exe" "${small[@]}" --steps 6 --load "$dir/step3.safetensors" --log-json "$dir/resumed.jsonl" > "$dir/resumed.log"
grep -E '"step":[4-6],' "$dir/one.jsonl" > "$dir/one_after3.jsonl"
same_losses "$dir/resumed.jsonl" "$dir/one_after3.jsonl" "saved at dp=2 ZeRO-2, resumed on one rank"

if run2 --micro-batch 3 --steps 1 > "$dir/bad.log" 2> "$dir/bad.err"; then echo "FAIL: a batch of 8 in micro-batches of 3 on 2 ranks ran"; exit 1; fi
grep -q "not a whole number of micro-batches of 3" "$dir/bad.err"
if "$mpiexec" -n 2 $mpiflags "$exe" "${small[@]}" --steps 1 > "$dir/nodp.log" 2> "$dir/nodp.err"; then echo "FAIL: 2 ranks without --dp ran"; exit 1; fi
grep -q "started on 2 rank(s) but --dp 1 x --tp 1 = 1" "$dir/nodp.err"
echo "ok: errors"
