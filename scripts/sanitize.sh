#!/usr/bin/env bash
# The whole suite under AddressSanitizer + UndefinedBehaviorSanitizer, in build-sanitize/.
# Leaks inside the MPI runtime (Open MPI, PMIx, hwloc, libevent) are suppressed by
# scripts/lsan.supp; anything of trident's, or any undefined behaviour, fails its test.
# Usage: scripts/sanitize.sh [ctest arguments, e.g. -R comm]
TRIDENT_BUILD="${TRIDENT_BUILD:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/build-sanitize}"
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
trident_install_packages
CMAKE_BUILD_TYPE=RelWithDebInfo trident_build -DTRIDENT_SANITIZE=ON
# Full stacks (the MPI and BLAS libraries have no frame pointers), and Open MPI's components kept
# loaded until exit, so that leak reports name the library they come from.
export ASAN_OPTIONS="detect_leaks=1:fast_unwind_on_malloc=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export OMPI_MCA_mca_base_component_disable_dlclose=1
export LSAN_OPTIONS="suppressions=$TRIDENT_ROOT/scripts/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
cd "$TRIDENT_BUILD"
ctest --output-on-failure -j "$TRIDENT_JOBS" "$@"
