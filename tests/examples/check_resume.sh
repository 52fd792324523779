#!/usr/bin/env bash
# train_gpt: a run saved at step 3 and resumed to step 6 prints bitwise the losses of a run
# that went to step 6 without stopping.
set -euo pipefail
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
[ "$(echo "$actual" | wc -l)" -eq 3 ] && [ "$expected" = "$actual" ]
