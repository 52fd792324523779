# Shared by demo.sh and test.sh: install what is missing on a fresh Debian 12 machine, then
# configure and build trident into build/ at the repository root.
set -euo pipefail

TRIDENT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TRIDENT_BUILD="${TRIDENT_BUILD:-$TRIDENT_ROOT/build}"
TRIDENT_JOBS="${TRIDENT_JOBS:-$(nproc)}"

# OpenBLAS, not the reference BLAS: the reference BLAS is about 16x slower on these GEMMs.
TRIDENT_PACKAGES=(cmake g++ make libtrilinos-kokkos-dev libtrilinos-kokkos-kernels-dev libopenmpi-dev openmpi-bin
                  catch2 libopenblas0-pthread libopenblas-dev nlohmann-json3-dev libcli11-dev python3 python3-numpy
                  iproute2)

trident_install_packages() {
  local missing=()
  for package in "${TRIDENT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "-- installing: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

trident_build() {
  cmake -S "$TRIDENT_ROOT" -B "$TRIDENT_BUILD" -DCMAKE_BUILD_TYPE="${CMAKE_BUILD_TYPE:-Release}" "$@"
  cmake --build "$TRIDENT_BUILD" -j "$TRIDENT_JOBS"
}

# Open MPI refuses to run as root unless told, and needs --oversubscribe for more ranks than cores.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
trident_mpiexec() {
  local ranks="$1"; shift
  mpiexec -n "$ranks" --oversubscribe --mca mpi_yield_when_idle 1 "$@"
}
