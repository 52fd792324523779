#!/usr/bin/env bash
# train_gpt: a run saved at step 3 and resumed to step 6 prints bitwise the losses of a run
# that went to step 6 without stopping; a resumed run keeps its checkpoint's seed; a checkpoint
# directory keeps the last --keep checkpoints and falls back past a corrupt one.
set -euo pipefail
trap 'echo "FAIL: line $LINENO: $BASH_COMMAND"' ERR
exe="$1"; dir="$2"; shift 2
rm -rf "$dir"; mkdir -p "$dir"
"$exe" "$@" --steps 6 --log-json "$dir/straight.jsonl" > "$dir/straight.log"
"$exe" "$@" --steps 3 --save "$dir/step3.safetensors" > "$dir/first.log"
"$exe" "$@" --steps 6 --load "$dir/step3.safetensors" --log-json "$dir/resumed.jsonl" > "$dir/resumed.log"
grep -q "resumed from $dir/step3.safetensors at step 3" "$dir/resumed.log"
losses() { sed -E 's/.*"step":([0-9]+),"loss":([^,]+),.*/\1 \2/' "$1"; }
expected=$(losses "$dir/straight.jsonl" | awk '$1 > 3')
actual=$(losses "$dir/resumed.jsonl")
echo "straight: $(echo $expected)"; echo "resumed:  $(echo $actual)"
[ "$(echo "$actual" | wc -l)" -eq 3 ] && [ "$expected" = "$actual" ] || { echo "FAIL: resumed losses differ"; exit 1; }

# A resumed run takes its checkpoint's seed (the synthetic language is the seed's): saved with
# --seed 7 and resumed without --seed, it continues bitwise as the --seed 7 run that never
# stopped. Another explicit --seed is refused unless --reseed, which then sticks.
"$exe" "$@" --seed 7 --steps 6 --log-json "$dir/seed7.jsonl" > /dev/null
"$exe" "$@" --seed 7 --steps 3 --save "$dir/seed7.safetensors" > /dev/null
"$exe" "$@" --steps 6 --load "$dir/seed7.safetensors" --log-json "$dir/seed7_resumed.jsonl" > "$dir/seed7_resumed.log"
grep -q "at step 3 (seed 7, the checkpoint's)" "$dir/seed7_resumed.log"
[ "$(losses "$dir/seed7.jsonl" | awk '$1 > 3')" = "$(losses "$dir/seed7_resumed.jsonl")" ]
"$exe" "$@" --steps 6 --seed 7 --load "$dir/seed7.safetensors" > /dev/null  # the same seed, given: fine
status=0; "$exe" "$@" --steps 6 --seed 8 --load "$dir/seed7.safetensors" > /dev/null 2> "$dir/seed8.err" || status=$?
[ "$status" -eq 2 ] && grep -q -- "--seed 8 differs from the seed 7 of checkpoint" "$dir/seed8.err" ||
  { echo "FAIL: --seed 8 on a seed-7 checkpoint: status $status"; cat "$dir/seed8.err"; exit 1; }
"$exe" "$@" --steps 4 --seed 8 --reseed --load "$dir/seed7.safetensors" --save "$dir/seed8.safetensors" > "$dir/seed8.log"
grep -q "at step 3 (seed 8, --reseed)" "$dir/seed8.log"
"$exe" "$@" --steps 5 --load "$dir/seed8.safetensors" > "$dir/seed8_resumed.log"
grep -q "at step 4 (seed 8, the checkpoint's)" "$dir/seed8_resumed.log"
echo "ok: seeds"

# A checkpoint directory: --save-every 2 keeps the last --keep 2 as step-<n>.safetensors and
# 'latest' names the newest; --resume falls back past a corrupt newest one, saying so; stale
# temporaries of a killed run go at start, a live process's stay.
"$exe" "$@" --steps 8 --save-every 2 --checkpoint-dir "$dir/ck" > "$dir/ck.log"
[ "$(LC_ALL=C ls "$dir/ck" | tr '\n' ' ')" = "latest step-6.safetensors step-8.safetensors " ] || { ls -la "$dir/ck"; exit 1; }
[ "$(cat "$dir/ck/latest")" = step-8.safetensors ]
size=$(stat -c %s "$dir/ck/step-8.safetensors")
printf '\x7f' | dd of="$dir/ck/step-8.safetensors" bs=1 seek=$((size - 5)) conv=notrunc status=none
touch -d '1 hour ago' "$dir/ck/step-10.safetensors.tmp.999999999.0" "$dir/ck/latest.tmp.999999999.3"
touch "$dir/ck/step-12.safetensors.tmp.$$.0"  # this shell's: a live process
"$exe" "$@" --steps 10 --resume "$dir/ck" --save-every 2 --log-json "$dir/fallback.jsonl" > "$dir/fallback.log" 2>&1
grep -q "step-8.safetensors failed verification (.*is corrupt.*); falling back to $dir/ck/step-6.safetensors" \
  "$dir/fallback.log"
grep -q "resumed from $dir/ck/step-6.safetensors at step 6" "$dir/fallback.log"
grep -q "removed 2 stale temporary file(s) of killed runs from $dir/ck" "$dir/fallback.log"
[ "$(LC_ALL=C ls "$dir/ck" | tr '\n' ' ')" = "latest step-10.safetensors step-12.safetensors.tmp.$$.0 step-8.safetensors " ] ||
  { ls -la "$dir/ck"; exit 1; }
[ "$(cat "$dir/ck/latest")" = step-10.safetensors ]
"$exe" "$@" --steps 8 --log-json "$dir/straight8.jsonl" > /dev/null
[ "$(losses "$dir/straight8.jsonl" | awk '$1 > 6')" = "$(losses "$dir/fallback.jsonl" | awk '$1 <= 8')" ]
# Not one checkpoint that verifies: an error naming each, not a fresh start.
printf '\x7f' | dd of="$dir/ck/step-10.safetensors" bs=1 seek=$((size - 5)) conv=notrunc status=none
rm "$dir/ck/step-8.safetensors"
if "$exe" "$@" --steps 12 --resume "$dir/ck" > "$dir/none.log" 2>&1; then echo "FAIL: resumed from a corrupt checkpoint"; exit 1; fi
grep -q "no checkpoint there verifies" "$dir/none.log"
echo "ok: checkpoint directory"
