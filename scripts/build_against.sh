#!/usr/bin/env bash
# Builds trident against another Kokkos install (e.g. a Spack or source build of Kokkos 4.x
# with OpenMP, CUDA or HIP) into its own folder, runs the test suite, and prints the
# portability benchmark (the one-rank training step as a fraction of the GEMM rate, with the
# backend's name) for 1 and 2 OpenMP threads.
# Usage: scripts/build_against.sh KOKKOS_ROOT [KOKKOSKERNELS_ROOT] [CXX_COMPILER]
#   e.g. scripts/build_against.sh /opt/kokkos-openmp
#        scripts/build_against.sh /opt/kokkos-cuda /opt/kokkos-cuda /opt/kokkos-cuda/bin/nvcc_wrapper
set -euo pipefail
[ $# -ge 1 ] || { sed -n 2,9p "$0"; exit 2; }
kokkos_root=$(cd "$1" && pwd)
kernels_root=$(cd "${2:-$1}" && pwd)
compiler=${3:-}
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$root/build-$(basename "$kokkos_root")"
args=(-DKokkos_ROOT="$kokkos_root" -DKokkosKernels_ROOT="$kernels_root" -DCMAKE_BUILD_TYPE=Release)
[ -n "$compiler" ] && args+=(-DCMAKE_CXX_COMPILER="$compiler")
cmake -S "$root" -B "$build" "${args[@]}"
cmake --build "$build" -j "$(nproc)"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1 OMP_PROC_BIND=false
(cd "$build" && ctest --output-on-failure -j "$(nproc)")
cd "$root"
bench/portability/run.sh "$build" "$build/portability.jsonl" 1 2
python3 "$root/bench/portability/table.py" "$build/portability.jsonl"
