#!/usr/bin/env bash
# Checks that every C++ file git tracks is formatted by .clang-format (clang-format 14, Debian 12's;
# installed if missing). Fix with: git ls-files '*.cpp' '*.hpp' | xargs clang-format -i
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v clang-format > /dev/null; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq clang-format > /dev/null
fi
git ls-files -z '*.cpp' '*.hpp' | xargs -0 clang-format --dry-run -Werror
echo "format: $(git ls-files '*.cpp' '*.hpp' | wc -l) files as .clang-format says"
