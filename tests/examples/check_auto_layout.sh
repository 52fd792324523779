#!/usr/bin/env bash
# train_gpt --layout auto at 2 and 4 ranks: the planner's report (its ranking, the winner's
# predicted step time and memory, why it wins), a layout it chose and ran, and the one-rank
# losses (1e-4 relative). The calibration is cached and read back by a second run; a flag that
# also sets the layout, and a negative calibration window, are refused.
set -euo pipefail
exe="$1"; mpiexec="$2"; dir="$3"; shift 3
rm -rf "$dir"; mkdir -p "$dir"
source "$(dirname "$0")/common.sh"
run 1 "$@" --steps 4 --micro-batch 2 --log-json "$dir/one.jsonl" > "$dir/one.log"
for ranks in 2 4; do
  run $ranks "$@" --steps 4 --layout auto --plan-cache "$dir/machine$ranks.json" \
    --log-json "$dir/auto$ranks.jsonl" > "$dir/auto$ranks.log"
  compare "$dir/one.jsonl" "$dir/auto$ranks.jsonl"
  grep -qE "^layout auto: planned [0-9]+ layouts" "$dir/auto$ranks.log"
  grep -qE "^  1\. dp [0-9]+ x tp [0-9]+ x pp [0-9]+.* step +[0-9.]+ ms  memory/rank [0-9.]+ MiB" "$dir/auto$ranks.log"
  grep -qE "^  the first (saves|pays)" "$dir/auto$ranks.log"
  chosen=$(sed -nE 's/^  1\. (dp [0-9]+ x tp [0-9]+ x pp [0-9]+).*/\1/p' "$dir/auto$ranks.log")
  grep -q "^layout: $ranks rank(s) = $chosen on 1 node" "$dir/auto$ranks.log" || {
    echo "the run's layout is not the planner's first choice ($chosen)"; exit 1; }
  grep -qE "\"name\": \"[A-Za-z]+ x $ranks ranks, " "$dir/machine$ranks.json"  # the calibration, kept
done
# The cache is read back: the second run plans from it and trains alike, timing the collectives
# again over the longer window it asks for, which the cache then keeps.
run 2 "$@" --steps 4 --layout auto --plan-cache "$dir/machine2.json" --plan-communication-seconds 0.5 \
  --log-json "$dir/again.jsonl" > "$dir/again.log"
compare "$dir/one.jsonl" "$dir/again.jsonl"
grep -qE '"communication_seconds": 0\.5' "$dir/machine2.json"
if run 2 "$@" --steps 1 --layout auto --plan-communication-seconds -1 > "$dir/window.log" 2>&1; then
  echo "a negative --plan-communication-seconds was accepted"; exit 1
fi
grep -q -- "--plan-communication-seconds" "$dir/window.log"
if run 2 "$@" --steps 1 --layout auto --tp 2 > "$dir/both.log" 2>&1; then
  echo "--tp with --layout auto was accepted"; exit 1
fi
grep -q -- "--tp and --layout auto both choose the layout" "$dir/both.log"
echo "ok: layout auto"
