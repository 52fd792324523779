#!/usr/bin/env bash
# train_gpt: bad flags and inputs exit non-zero with one line naming the problem.
set -uo pipefail
exe="$1"; dir="$2"
rm -rf "$dir"; mkdir -p "$dir"
failures=0
expect_error() {  # expect_error "<text the error must contain>" args...
  local text="$1"; shift
  if "$exe" "$@" > "$dir/out" 2> "$dir/err"; then
    echo "FAIL: '$*' succeeded"; failures=$((failures + 1)); return
  fi
  if ! grep -qF -- "$text" "$dir/err"; then
    echo "FAIL: '$*' did not say '$text':"; cat "$dir/err"; failures=$((failures + 1)); return
  fi
  echo "ok: $* -> $(cat "$dir/err")"
}
expect_error "unknown flag --layer" --layer 2
expect_error "--steps expects a number, got 'ten'" --steps ten
expect_error "hidden size 30 is not divisible by the number of heads 4" --hidden 30 --steps 1
expect_error "not a whole number of micro-batches of 3" --batch 8 --micro-batch 3 --steps 1
expect_error "cannot open" --data "$dir/does-not-exist.txt" --steps 1
expect_error "--vocab must be >= 256" --data "$0" --vocab 100 --steps 1
printf 'not a checkpoint' > "$dir/bad.safetensors"
expect_error "bad.safetensors" --load "$dir/bad.safetensors" --steps 1
[ $failures -eq 0 ]
