#!/usr/bin/env bash
# train_gpt reads a text file as bytes and an llm.c token file (written here byte by byte,
# independently of trident's writer), and trains a few steps on each.
set -euo pipefail
exe="$1"; dir="$2"; shift 2
rm -rf "$dir"; mkdir -p "$dir"

le32() { printf "\\x$(printf %02x $(($1 & 255)))\\x$(printf %02x $((($1 >> 8) & 255)))\\x$(printf %02x $((($1 >> 16) & 255)))\\x$(printf %02x $((($1 >> 24) & 255)))"; }
le16() { printf "\\x$(printf %02x $(($1 & 255)))\\x$(printf %02x $((($1 >> 8) & 255)))"; }
count=300
{
  le32 20240520; le32 1; le32 $count
  for ((i = 3; i < 256; i++)); do le32 0; done
  for ((i = 0; i < count; i++)); do le16 $(((i * 7 + i / 5) % 61)); done
} > "$dir/tokens.bin"
"$exe" "$@" --vocab 61 --steps 3 --data "$dir/tokens.bin" | tee "$dir/tokens.log"
grep -q "data: $dir/tokens.bin, $count tokens" "$dir/tokens.log"

for i in $(seq 1 40); do echo "the quick brown fox jumps over the lazy dog $i"; done > "$dir/text.txt"
"$exe" "$@" --vocab 256 --steps 3 --data "$dir/text.txt" | tee "$dir/text.log"
grep -q "data: $dir/text.txt, $(stat -c %s "$dir/text.txt") tokens" "$dir/text.log"
# A byte-level model starts near ln 256 = 5.545.
awk '/^step +1\//{ if ($5 < 5.3 || $5 > 5.8) exit 1 }' "$dir/text.log"
