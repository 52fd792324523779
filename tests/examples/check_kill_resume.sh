#!/usr/bin/env bash
# A rank killed with SIGKILL mid-training: the job ends, the latest complete checkpoint that
# --save-every kept loads with --resume, and the resumed run's losses equal the uninterrupted
# run's bitwise (the same layout: data-parallel ZeRO-1 on 2 ranks) and within 1e-4 relative in
# another layout (tensor parallel on 2 ranks).
set -uo pipefail
exe="$1"; mpiexec="$2"; dir="$3"; shift 3
rm -rf "$dir"; mkdir -p "$dir"
source "$(dirname "$0")/common.sh"
steps=120
layout=(--dp 2 --zero 1)
run 2 "$@" "${layout[@]}" --steps $steps --log-json "$dir/straight.jsonl" > "$dir/straight.log" || exit 1

# The run to kill: once it has saved at step 8, SIGKILL its last rank.
run 2 "$@" "${layout[@]}" --steps $steps --save-every 4 --checkpoint-dir "$dir/ck" \
    --log-json "$dir/killed.jsonl" > "$dir/killed.log" 2>&1 &
job=$!
for _ in $(seq 600); do
  grep -q "at step 8$" "$dir/killed.log" 2>/dev/null && break
  sleep 0.05
done
victim=$(pgrep -f "^$exe .*$dir/killed.jsonl" | tail -1)
[ -n "$victim" ] || { echo "FAIL: no rank to kill (the run ended first?)"; cat "$dir/killed.log"; exit 1; }
kill -9 "$victim"
if wait $job; then echo "FAIL: the job survived a killed rank"; exit 1; fi
# 'latest' names the newest checkpoint whose save completed and verified; the log may lag it by
# one save (killed between the rename and the print), never lead it.
saved=$(sed -nE 's/^step-([0-9]+)\.safetensors$/\1/p' "$dir/ck/latest")
logged=$(grep -o "at step [0-9]*" "$dir/killed.log" | tail -1 | grep -o "[0-9]*$")
[ -n "$saved" ] && [ -f "$dir/ck/step-$saved.safetensors" ] && [ "${logged:-0}" -le "$saved" ] ||
  { echo "FAIL: latest is '$(cat "$dir/ck/latest")', the log's last save step ${logged:-none}"; exit 1; }
last=$(sed -E 's/.*"step":([0-9]+),.*/\1/' "$dir/killed.jsonl" | tail -1)
[ "$saved" -lt "$steps" ] || { echo "FAIL: the run finished before the kill"; exit 1; }
echo "killed rank (pid $victim) after step ${last:-?}; latest complete checkpoint: step $saved"

run 2 "$@" "${layout[@]}" --steps $steps --resume "$dir/ck" --log-json "$dir/resumed.jsonl" > "$dir/resumed.log" || exit 1
grep -q "resumed from $dir/ck/step-$saved.safetensors at step $saved" "$dir/resumed.log" || { cat "$dir/resumed.log"; exit 1; }
# Bitwise: the loss of every resumed step, printed with 17 significant digits, as uninterrupted.
expected=$(losses "$dir/straight.jsonl" | awk -v from="$saved" '$1 > from')
actual=$(losses "$dir/resumed.jsonl")
if [ "$expected" != "$actual" ]; then
  echo "FAIL: resumed losses differ"; diff <(echo "$expected") <(echo "$actual") | head; exit 1
fi
echo "ok: resumed at step $saved, $(echo "$actual" | wc -l) steps bitwise equal"

# Another layout: the same checkpoint on 2 tensor-parallel ranks.
run 2 "$@" --tp 2 --steps $steps --load "$dir/ck/step-$saved.safetensors" --log-json "$dir/tp.jsonl" > "$dir/tp.log" || exit 1
awk -v from="$saved" -F'"step":' '{ split($2, a, ","); if (a[1] + 0 > from) print }' "$dir/straight.jsonl" > "$dir/tail.jsonl"
compare "$dir/tail.jsonl" "$dir/tp.jsonl" || exit 1

# A checkpoint directory without a checkpoint is an error, not a fresh start.
if run 1 "$@" --steps 2 --resume "$dir/empty" > "$dir/bad.log" 2>&1; then echo "FAIL: resumed from nothing"; exit 1; fi
grep -q "no checkpoint there" "$dir/bad.log" || { cat "$dir/bad.log"; exit 1; }
echo "ok: kill and resume"
