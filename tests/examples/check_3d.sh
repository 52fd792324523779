#!/usr/bin/env bash
# train_gpt on 8 ranks in every dp x tp x pp factorisation with factors in {1, 2, 4} (each
# schedule and ZeRO stage at least once, ZeRO-3 with and without a pipeline, sequence
# parallelism three times): 10 steps each, every loss within 1e-4 relative of the one-rank
# run. Then a checkpoint saved at (dp, tp, pp) = (2, 2, 1) continues at (1, 1, 4) and at
# (4, 1, 1) with the losses of the uninterrupted run, and loaded and saved again in other
# layouts it is the same file, byte for byte (every rank writes its own shards).
# scripts/layout_matrix.sh runs the full matrix (every schedule x ZeRO stage x layout).
set -euo pipefail
exe="$1"; mpiexec="$2"; dir="$3"; shift 3
rm -rf "$dir"; mkdir -p "$dir"
source "$(dirname "$0")/common.sh"
run 1 "$@" --steps 10 --log-json "$dir/one.jsonl" > "$dir/one.log"
#        dp tp pp schedule     zero  extra
layouts=("2  2  2  zb          2     --sequence-parallel"
         "2  4  1  1f1b        3     --sequence-parallel"
         "4  2  1  1f1b        1"
         "2  1  4  gpipe       3"
         "2  2  2  interleaved 3     --virtual-stages 2"
         "4  1  2  interleaved 0     --virtual-stages 2"
         "1  2  4  1f1b        0"
         "1  4  2  zb          0     --sequence-parallel"
         "8  1  1  1f1b        2")
for layout in "${layouts[@]}"; do
  read -r dp tp pp schedule zero extra <<< "$layout"
  name="dp${dp}_tp${tp}_pp${pp}_${schedule}_zero${zero}"
  # shellcheck disable=SC2086
  run 8 "$@" --steps 10 --dp "$dp" --tp "$tp" --pp "$pp" --schedule "$schedule" --zero "$zero" $extra \
      --log-json "$dir/$name.jsonl" > "$dir/$name.log"
  grep -q "^layout: 8 rank(s) = dp $dp x tp $tp x pp $pp on 1 node: " "$dir/$name.log"
  compare "$dir/one.jsonl" "$dir/$name.jsonl"
done
# Saved in one layout at step 6 (of the same 10-step learning-rate schedule), continued in two others.
run 4 "$@" --steps 10 --dp 2 --tp 2 --zero 1 --save-every 6 --checkpoint-dir "$dir/ck" > "$dir/save.log"
grep -q "saved $dir/ck/step-6.safetensors at step 6" "$dir/save.log"
[ "$(cat "$dir/ck/latest")" = step-6.safetensors ]
grep '"step":\([7-9]\|10\),' "$dir/one.jsonl" > "$dir/one_tail.jsonl"
run 4 "$@" --steps 10 --pp 4 --resume "$dir/ck" --log-json "$dir/pp4.jsonl" > "$dir/pp4.log"
compare "$dir/one_tail.jsonl" "$dir/pp4.jsonl"
run 4 "$@" --steps 10 --dp 4 --zero 2 --resume "$dir/ck" --log-json "$dir/dp4.jsonl" > "$dir/dp4.log"
compare "$dir/one_tail.jsonl" "$dir/dp4.jsonl"
# Every rank writes its own part: loaded and saved again at once, in layouts that cut the
# tensors differently, the checkpoint is the same file.
for layout in "8:--dp 2 --tp 2 --pp 2 --zero 3 --schedule interleaved --virtual-stages 2" "4:--tp 4" \
              "4:--dp 2 --pp 2 --zero 2" "2:--dp 2 --zero 0" "1:--pp 1"; do
  ranks="${layout%%:*}"
  # shellcheck disable=SC2086
  run "$ranks" "$@" --steps 6 ${layout#*:} --load "$dir/ck/step-6.safetensors" --save "$dir/again.safetensors" \
      > "$dir/again.log"
  cmp "$dir/ck/step-6.safetensors" "$dir/again.safetensors"
done
# A checkpoint of another model, and a corrupt one: one error each, printed once, by rank 0.
if run 4 "$@" --hidden 64 --steps 7 --dp 2 --pp 2 --load "$dir/ck/step-6.safetensors" > "$dir/other.log" 2>&1; then
  echo "loaded another model's checkpoint"; exit 1
fi
[ "$(grep -c "holds a model with" "$dir/other.log")" -eq 1 ]
cp "$dir/ck/step-6.safetensors" "$dir/corrupt.safetensors"
size=$(stat -c %s "$dir/corrupt.safetensors")
printf '\x7f' | dd of="$dir/corrupt.safetensors" bs=1 seek=$((size - 5)) conv=notrunc status=none
if run 4 "$@" --steps 7 --dp 2 --tp 2 --load "$dir/corrupt.safetensors" > "$dir/corrupt.log" 2>&1; then
  echo "loaded a corrupt checkpoint"; exit 1
fi
[ "$(grep -c "is corrupt" "$dir/corrupt.log")" -eq 1 ]
# A world that is not dp x tp x pp: one clear error, no hang.
if run 4 "$@" --steps 1 --dp 2 --tp 2 --pp 2 > "$dir/bad.log" 2>&1; then echo "8 ranks' layout ran on 4"; exit 1; fi
[ "$(grep -c "started on 4 rank(s) but --dp 2 x --tp 2 x --pp 2 = 8" "$dir/bad.log")" -eq 1 ]  # once, by rank 0
echo "ok: 3D layouts"
