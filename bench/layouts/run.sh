#!/usr/bin/env bash
# Tokens per second of GPT-2 training in every layout of 2 ranks (data parallel at each ZeRO
# stage, tensor parallel with and without sequence parallelism, pipeline parallel with each
# schedule) beside one rank, in one run, with the weak-scaling efficiency of each from 1 to 2
# ranks (2 ranks on twice the global batch against one rank on the batch). One JSON line per
# layout, then a table. Times are medians over the steps after the first two.
# Usage: bench/layouts/run.sh BUILD_DIR [OUT.jsonl] [-- extra train_gpt flags]
set -euo pipefail
build="${1:?usage: bench/layouts/run.sh BUILD_DIR [OUT.jsonl] [-- train_gpt flags]}"
out="${2:-/tmp/trident_layouts.jsonl}"
shift $(( $# >= 2 ? 2 : 1 ))
[ "${1:-}" = "--" ] && shift
exe="$build/examples/train_gpt/train_gpt"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 \
       OMP_WAIT_POLICY=passive
model=(--layers 4 --heads 4 --hidden 128 --seq 64 --vocab 512 --micro-batch 2 --steps 12 --peak-gflops 100
       --warmup 2 "$@")
batch=8
tmp=$(mktemp -d)
: > "$out"
# median tokens/s of steps 3.. of a --log-json file
median_tps() {
  python3 - "$1" "$2" <<'PY'
import json, sys
tokens = float(sys.argv[2])
ms = sorted(json.loads(l)["ms"] for l in open(sys.argv[1]) if json.loads(l)["step"] > 2)
print(tokens / (ms[len(ms) // 2] / 1000.0))
PY
}
measure() {  # name ranks batch flags...
  local name="$1" ranks="$2" b="$3"; shift 3
  rm -f "$tmp/$name.jsonl"
  mpiexec -n "$ranks" --oversubscribe --mca mpi_yield_when_idle 1 "$exe" "${model[@]}" --batch "$b" "$@" \
    --log-json "$tmp/$name.jsonl" > "$tmp/$name.log" 2>&1
  median_tps "$tmp/$name.jsonl" $((b * 64))
}
one=$(measure one 1 $batch)
layouts=("dp2_zero0:--dp 2" "dp2_zero1:--dp 2 --zero 1" "dp2_zero2:--dp 2 --zero 2" "dp2_zero3:--dp 2 --zero 3"
         "tp2:--tp 2" "tp2_sp:--tp 2 --sequence-parallel"
         "pp2_gpipe:--pp 2 --schedule gpipe" "pp2_1f1b:--pp 2 --schedule 1f1b" "pp2_zb:--pp 2 --schedule zb"
         "pp2_interleaved:--pp 2 --schedule interleaved --virtual-stages 2")
printf '{"layout":"one rank","ranks":1,"batch":%d,"tokens_per_s":%.0f}\n' $batch "$one" | tee -a "$out"
for entry in "${layouts[@]}"; do
  name="${entry%%:*}"; read -r -a flags <<< "${entry#*:}"
  strong=$(measure "$name" 2 $batch "${flags[@]}")
  weak=$(measure "${name}_2x" 2 $((2 * batch)) "${flags[@]}")
  # weak scaling: 2 ranks on twice the batch against twice one rank's throughput on the batch
  python3 -c "import sys; one,s,w=map(float,sys.argv[2:]); print('{\"layout\":\"%s\",\"ranks\":2,\"batch\":%d,\"tokens_per_s\":%.0f,\"speedup\":%.3f,\"weak_scaling_efficiency\":%.3f}' % (sys.argv[1], $batch, s, s/one, w/(2*one)))" \
    "$name" "$one" "$strong" "$weak" | tee -a "$out"
done
rm -rf "$tmp"
python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("\n| layout (2 ranks) | tokens/s | vs one rank, same batch | weak-scaling efficiency |\n|---|---|---|---|")
for r in rows:
    if r["ranks"] == 1:
        print("| one rank | %d | 1.00 | 1.00 |" % r["tokens_per_s"])
    else:
        print("| %s | %d | %.2f | %.2f |" % (r["layout"], r["tokens_per_s"], r["speedup"], r["weak_scaling_efficiency"]))
PY
