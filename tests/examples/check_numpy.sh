#!/usr/bin/env bash
# A checkpoint written by train_gpt, read back by numpy alone.
set -euo pipefail
exe="$1"; python="$2"; reader="$3"; dir="$4"; shift 4
rm -rf "$dir"; mkdir -p "$dir"
"$exe" "$@" --steps 2 --save "$dir/c.safetensors" > "$dir/log"
"$python" "$reader" "$dir/c.safetensors" 2 2 32 16 61
