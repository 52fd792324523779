#!/usr/bin/env bash
# Builds trident and runs the main example: GPT-2 trained on a synthetic language.
# Usage: scripts/demo.sh [ranks (default 1)] [more train_gpt flags, e.g. --dp 2]
# TRIDENT_DEMO_STEPS=N trains N steps instead of the example's default (CI runs a short demo).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
trident_install_packages
trident_build
ranks="${1:-1}"
shift || true
exe="$TRIDENT_BUILD/examples/train_gpt/train_gpt"
[ -x "$exe" ] || { echo "demo: $exe was not built" >&2; exit 1; }
steps=()
[ -n "${TRIDENT_DEMO_STEPS:-}" ] && steps=(--steps "$TRIDENT_DEMO_STEPS")
# N ranks without flags: data parallelism, every rank on the one-rank batch of 16 sequences.
[ "$ranks" -gt 1 ] && [ $# -eq 0 ] && set -- --dp "$ranks" --batch $((16 * ranks))
OPENBLAS_NUM_THREADS=1 trident_mpiexec "$ranks" "$exe" "${steps[@]}" "$@"
