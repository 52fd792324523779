#!/usr/bin/env bash
# The full layout matrix (not run in CI; tests/examples/check_3d.sh runs a representative
# part): every dp x tp x pp with factors in {1, 2, 4} and product RANKS, every pipeline
# schedule when pp > 1, every ZeRO stage (0-3) when dp > 1, with and without
# sequence parallelism when tp > 1; 10 steps each, losses within 1e-4 relative of one rank.
# Usage: scripts/layout_matrix.sh [RANKS (default 8)] [OUT_DIR (default build/layout_matrix)]
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
ranks="${1:-8}"
dir="${2:-$TRIDENT_BUILD/layout_matrix}"
exe="$TRIDENT_BUILD/examples/train_gpt/train_gpt"
mpiexec=mpiexec
[ -x "$exe" ] || { echo "build first: $exe is missing"; exit 1; }
source "$TRIDENT_ROOT/tests/examples/common.sh"
mkdir -p "$dir"
model=(--layers 8 --heads 4 --hidden 32 --seq 16 --vocab 61 --batch 16 --micro-batch 1 --peak-gflops 100 --warmup 2
       --steps 10)
run 1 "${model[@]}" --log-json "$dir/one.jsonl" > "$dir/one.log"
passed=0 failed=0
for dp in 1 2 4 8; do for tp in 1 2 4; do for pp in 1 2 4; do
  [ $((dp * tp * pp)) -eq "$ranks" ] || continue
  schedules=(1f1b); [ "$pp" -gt 1 ] && schedules=(gpipe 1f1b interleaved zb)
  zeros=(0); [ "$dp" -gt 1 ] && zeros=(0 1 2 3)
  sps=(""); [ "$tp" -gt 1 ] && sps=("" --sequence-parallel)
  for schedule in "${schedules[@]}"; do for zero in "${zeros[@]}"; do for sp in "${sps[@]}"; do
    extra=(); [ "$schedule" = interleaved ] && extra=(--virtual-stages 2)
    [ -n "$sp" ] && extra+=("$sp")
    name="dp${dp}_tp${tp}_pp${pp}_${schedule}_zero${zero}${sp:+_sp}"
    if run "$ranks" "${model[@]}" --dp "$dp" --tp "$tp" --pp "$pp" --schedule "$schedule" --zero "$zero" \
           "${extra[@]}" --log-json "$dir/$name.jsonl" > "$dir/$name.log" 2>&1 &&
       compare "$dir/one.jsonl" "$dir/$name.jsonl" > "$dir/$name.compare"; then
      passed=$((passed + 1)); echo "ok   $name"
    else
      failed=$((failed + 1)); echo "FAIL $name (see $dir/$name.log)"
    fi
  done; done; done
done; done; done
echo "$passed layouts passed, $failed failed"
[ "$failed" -eq 0 ]
