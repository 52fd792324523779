#!/usr/bin/env bash
# Compile cost: wall time and peak memory of compiling train_gpt.cpp and examples/own_model,
# header-only and linking the float Trainer compiled once (trident::train_float), with the
# build's own flags; JSON lines, best of REPEATS runs. Run on an otherwise idle machine.
# Usage: bench/compile/run.sh [BUILD (default build)] [REPEATS (default 2)]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${1:-$root/build}"
[ -f "$build/compile_commands.json" ] || { echo "configure $build first (it writes compile_commands.json)"; exit 1; }
python3 "$root/bench/compile/measure.py" "$build" "${2:-2}"
