#!/usr/bin/env bash
# Builds trident and runs its whole test suite (all rank counts) through ctest.
# Usage: scripts/test.sh [extra ctest arguments, e.g. -R comm or -L np2]
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
trident_install_packages
trident_build
cd "$TRIDENT_BUILD"
ctest --output-on-failure -j "$TRIDENT_JOBS" "$@"
