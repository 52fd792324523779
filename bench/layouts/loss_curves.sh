#!/usr/bin/env bash
# train_gpt for 150 steps on one rank and in four parallel layouts, then the loss curves and
# their differences from one rank as a PNG.
# Usage: bench/layouts/loss_curves.sh BUILD_DIR OUT.png
set -euo pipefail
build="${1:?usage: loss_curves.sh BUILD_DIR OUT.png}"; out="${2:?usage: loss_curves.sh BUILD_DIR OUT.png}"
exe="$build/examples/train_gpt/train_gpt"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 \
       OMP_WAIT_POLICY=passive
model=(--layers 4 --heads 4 --hidden 64 --seq 32 --vocab 256 --batch 16 --micro-batch 2 --steps 150 --lr 3e-3
       --peak-gflops 100)
tmp=$(mktemp -d)
run() { local ranks="$1" name="$2"; shift 2
  mpiexec -n "$ranks" --oversubscribe --mca mpi_yield_when_idle 1 "$exe" "${model[@]}" "$@" \
    --log-json "$tmp/$name.jsonl" > "$tmp/$name.log"; }
run 1 one
run 8 dp2_tp2_pp2 --dp 2 --tp 2 --pp 2 --schedule zb --zero 1 --sequence-parallel
run 4 pp4 --pp 4 --schedule 1f1b
run 4 dp4_zero3 --dp 4 --zero 3
run 4 tp2_pp2 --tp 2 --pp 2 --schedule interleaved --virtual-stages 2
/usr/bin/python3 "$(dirname "$0")/plot_losses.py" "$out" "1 rank=$tmp/one.jsonl" \
  "dp2 x tp2 x pp2, ZB-H1, ZeRO-1, seq. parallel=$tmp/dp2_tp2_pp2.jsonl" "pp4, 1F1B=$tmp/pp4.jsonl" \
  "dp4, ZeRO-3=$tmp/dp4_zero3.jsonl" "tp2 x pp2, interleaved=$tmp/tp2_pp2.jsonl"
rm -rf "$tmp"
echo "wrote $out"
