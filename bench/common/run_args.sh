# Sourced by the benchmarks' run.sh: `bench_setup AREA NAME "$@"` reads
# [BUILD_DIR (default build)] [OUTPUT_DIR (default $TMPDIR or /tmp)] [-- flags], checks that
# BUILD_DIR/bench/AREA/NAME is built, and sets $bench, $output_dir and $bench_flags (the flags
# after --, an array). Ranks run single-threaded, so oversubscribed runs stay fair.
bench_setup() {
  local area=$1 name=$2 build_dir=build
  shift 2
  output_dir=${TMPDIR:-/tmp}
  if [ $# -gt 0 ] && [ "$1" != "--" ]; then build_dir=$1; shift; fi
  if [ $# -gt 0 ] && [ "$1" != "--" ]; then output_dir=$1; shift; fi
  if [ $# -gt 0 ] && [ "$1" = "--" ]; then shift; fi
  bench_flags=("$@")
  bench="$build_dir/bench/$area/$name"
  if [ ! -x "$bench" ]; then
    echo "no $bench: build it first (cmake --build $build_dir --target $name)" >&2
    exit 1
  fi
  mkdir -p "$output_dir"
  export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
}

# bench_run RANKS ARGS...: the benchmark on RANKS oversubscribed ranks.
bench_run() {
  local ranks=$1
  shift
  mpiexec -n "$ranks" --oversubscribe --allow-run-as-root --mca mpi_yield_when_idle 1 "$bench" "$@"
}
