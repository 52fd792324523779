#!/usr/bin/env bash
# Builds trident and runs the main example.
# Usage: scripts/demo.sh [ranks]   (default 1)
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
trident_install_packages
trident_build
ranks="${1:-1}"
if [ -x "$TRIDENT_BUILD/examples/train_gpt" ]; then
  OPENBLAS_NUM_THREADS=1 trident_mpiexec "$ranks" "$TRIDENT_BUILD/examples/train_gpt"
else
  trident_mpiexec "${1:-8}" "$TRIDENT_BUILD/examples/mesh_tour"
fi
