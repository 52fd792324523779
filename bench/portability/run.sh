#!/usr/bin/env bash
# The portability benchmark of one build: the one-rank GPT-2 training step and every operator,
# each as a fraction of the SGEMM rate measured in the same run, tagged with the backend and
# its thread count, at each thread count given (host backends; a GPU build runs once).
# Usage: bench/portability/run.sh BUILD_DIR OUT.jsonl [THREADS...]   (default threads: 1 2)
#   then: python3 bench/portability/table.py OUT.jsonl [MORE.jsonl...]
set -euo pipefail
[ $# -ge 2 ] || { sed -n 2,6p "$0"; exit 2; }
build=$1
out=$2
shift 2
threads=("$@")
[ ${#threads[@]} -gt 0 ] || threads=(1 2)
for binary in bench/train/bench_train_step bench/ops/bench_ops; do
  [ -x "$build/$binary" ] || { echo "missing $build/$binary: build with -DTRIDENT_ENABLE_BENCH=ON" >&2; exit 1; }
done
# Short waits on both sides: OpenMP threads spinning between kernels would starve a pthreads
# BLAS's own threads, and its threads spinning after each GEMM the kernels between the GEMMs
# (core/runtime_info.hpp, threading_advice).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_PROC_BIND=false OMP_WAIT_POLICY=passive \
       OPENBLAS_THREAD_TIMEOUT=${OPENBLAS_THREAD_TIMEOUT:-20}
: >"$out.partial"
seen=""
for t in "${threads[@]}"; do
  # The BLAS gets the same threads as Kokkos, so the GEMM rate is the machine's at that count.
  export OMP_NUM_THREADS=$t OPENBLAS_NUM_THREADS=$t
  first=$("$build/bench/ops/bench_ops" --repeats 1 --batch 1 --seq 8 --channels 8 --heads 1 --layers 1 --vocab 8 |
    sed -n '1s/.*"backend":"\([^"]*\)","concurrency":\([0-9]*\).*/\1 x\2/p')  # reads it all: no SIGPIPE
  case " $seen " in *" $first "*) continue ;; esac  # Serial or a GPU: one run is enough
  seen="$seen $first"
  echo "running on $first" >&2
  "$build/bench/train/bench_train_step" --steps 5 >>"$out.partial"
  "$build/bench/ops/bench_ops" --repeats 5 >>"$out.partial"
done
mv "$out.partial" "$out"
echo "wrote $out" >&2
